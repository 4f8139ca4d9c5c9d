"""The pipeline files in ci/: every pvkit command they run parses with pvkit's own CLI, they
take the matrix from `pvkit matrix` (no scenario is named in them), and the pieces that must
agree (the child pipeline artifact, the job templates, the matrix outputs) agree."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvkit import cli, matrix, scenarios

ROOT = Path(__file__).resolve().parents[1]
GITLAB = ROOT / "ci" / "gitlab-ci.yml"
TEMPLATES = ROOT / matrix.GITLAB_TEMPLATES
GITHUB = ROOT / "ci" / "github" / "workflows" / "pvkit.yml"
FILES = (GITLAB, TEMPLATES, GITHUB)
SHELL_OPS = {">", ">>", "||", "&&", "|", ";"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def sample_args() -> dict[str, str]:
    m = matrix.derive(["smoke"], None, ["icount"])
    return {"build": m.builds[0].args, "boot": m.boots[0].args}


def pvkit_commands(script: str, args: str) -> list[list[str]]:
    """The pvkit invocations in a shell script; `args` stands for the cell's arguments
    ($PVKIT_ARGS, ${{ matrix.args }}), other variables for sample values."""
    text = (script.replace("${{ matrix.args }}", args).replace("$PVKIT_ARGS", args)
            .replace("$PVKIT_MATRIX_ARGS", "--scenario smoke")
            .replace("$MATRIX_ARGS", "--scenario smoke"))
    text = re.sub(r"\$\{\{[^}]*\}\}|\$[A-Z_]+", "x", text)
    out = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word == "pvkit" or word.endswith("/pvkit"):
                tail = words[i + 1:]
                end = next((j for j, w in enumerate(tail) if w in SHELL_OPS), len(tail))
                out.append(tail[:end])
    return out


def scripts() -> list[tuple[str, str, str]]:
    """(where, script, the args its cells get) for every script of every job."""
    samples = sample_args()
    found = []
    for path in (GITLAB, TEMPLATES):
        for name, job in load(path).items():
            args = samples["boot"] if "boot" in name else samples["build"]
            for key in ("before_script", "script", "after_script"):
                if isinstance(job, dict):
                    found += [(f"{path.name} {name}", line, args) for line in job.get(key, [])]
    for name, job in load(GITHUB)["jobs"].items():
        args = samples["boot"] if name == "boot" else samples["build"]
        found += [(f"{GITHUB.name} {name}", step["run"], args) for step in job["steps"]
                  if "run" in step]
    return found


def test_every_pvkit_command_parses() -> None:
    seen: set[str] = set()
    for where, script, args in scripts():
        for argv in pvkit_commands(script, args):
            try:
                cli.parser().parse_args(argv)
            except SystemExit as exc:
                pytest.fail(f"{where}: `pvkit {shlex.join(argv)}` does not parse ({exc})")
            seen.add(argv[0])
    # the pipelines drive builds, bundles, boots, the matrix and the summaries through pvkit
    assert {"build", "bundle", "boot", "matrix", "summary"} <= seen


def test_a_wrong_flag_would_be_caught() -> None:
    argv = pvkit_commands(".venv/bin/pvkit boot $PVKIT_ARGS --outdir x || true", "--icount")
    assert argv == [["boot", "--icount", "--outdir", "x"]]
    with pytest.raises(SystemExit):
        cli.parser().parse_args(argv[0])


def test_no_scenario_is_named_in_a_pipeline() -> None:
    for path in FILES:
        text = path.read_text()
        for name in scenarios.available():
            assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), \
                f"{path.name} names scenario '{name}': take it from `pvkit matrix`"


def test_gitlab_child_pipeline_comes_from_the_matrix_job() -> None:
    doc = load(GITLAB)
    assert doc["include"] == [{"local": matrix.GITLAB_TEMPLATES}]
    include = doc["boot"]["trigger"]["include"][0]
    producer = doc[include["job"]]
    assert any(f"pvkit matrix $PVKIT_MATRIX_ARGS --gitlab-pipeline {include['artifact']}" == s
               for s in producer["script"])
    assert include["artifact"] in producer["artifacts"]["paths"]
    assert doc["boot"]["trigger"]["strategy"] == "depend"


def test_generated_jobs_extend_templates_that_exist() -> None:
    templates = load(TEMPLATES)
    child = yaml.safe_load(matrix.gitlab_pipeline(matrix.derive(["smoke", "native"])))
    for name, job in child.items():
        if isinstance(job, dict):
            assert job["extends"] in templates, name
            assert templates[job["extends"]]["stage"] in child["stages"]
    boot = templates[".pvkit-boot"]
    assert boot["artifacts"]["when"] == "always"
    assert boot["artifacts"]["reports"]["junit"] in boot["artifacts"]["paths"]


def test_github_matrices_come_from_the_matrix_job() -> None:
    jobs = load(GITHUB)["jobs"]
    assert "--github-output >> \"$GITHUB_OUTPUT\"" in jobs["matrix"]["steps"][-1]["run"]
    for name in ("build", "boot"):
        expr = jobs[name]["strategy"]["matrix"]
        assert expr == f"${{{{ fromJSON(needs.matrix.outputs.{name}s) }}}}"
        assert jobs["matrix"]["outputs"][f"{name}s"] == \
            f"${{{{ steps.matrix.outputs.{name}s }}}}"
    summary = next(s for s in jobs["boot"]["steps"] if s.get("name") == "summary")
    assert summary["if"] == "always()" and "$GITHUB_STEP_SUMMARY" in summary["run"]
    assert "--github-annotations" in summary["run"]
    upload = jobs["boot"]["steps"][-1]
    assert upload["if"] == "always()" and "junit.xml" in upload["with"]["path"]
