"""The CI matrix: which kernels to build and which boots to run, derived from qemu-tests/.

A boot cell is one scenario booted with the kernels of one source tree under one clock; a
build cell is one kernel profile of one tree. Boot cells name the build cells they need (a
scenario's boot kind says which profiles it boots), so a pipeline builds each kernel once and
hands it to every boot that uses it. Pipelines take this matrix from `pvkit matrix` rather than
listing scenarios themselves: GitHub as `strategy.matrix` JSON, GitLab as a generated child
pipeline.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pvkit import scenarios
from pvkit.errors import PvkitError
from pvkit.paths import REPO_ROOT, SCENARIOS_DIR

CLOCKS = ("icount", "realtime")
DEFAULT_TREE = "debian"  # Debian's linux-source, pvkit's default source
_TREE_NAME = re.compile(r"[A-Za-z0-9_.]+")
GITLAB_TEMPLATES = "ci/gitlab/templates.yml"


@dataclass(frozen=True)
class Tree:
    name: str
    path: str | None  # None: Debian's linux-source

    def args(self) -> list[str]:
        return ["--tree", self.path] if self.path else []


@dataclass(frozen=True)
class BuildCell:
    id: str
    profile: str
    tree: str
    args: str  # for `pvkit build` and `pvkit bundle export`, as words separated by spaces


@dataclass(frozen=True)
class BootCell:
    id: str
    scenario: str
    boot: str
    tree: str
    clock: str
    profiles: list[str]
    needs: list[str]  # build cell ids
    args: str  # for `pvkit boot` / `pvkit run`, as words separated by spaces


@dataclass(frozen=True)
class Matrix:
    trees: list[Tree]
    clocks: list[str]
    builds: list[BuildCell]
    boots: list[BootCell]

    def to_json(self) -> dict[str, Any]:
        return {"trees": [asdict(t) for t in self.trees], "clocks": self.clocks,
                "builds": [asdict(b) for b in self.builds],
                "boots": [asdict(b) for b in self.boots]}


def parse_tree(spec: str) -> Tree:
    """`NAME=PATH` or `PATH` (named after its last component) for a kernel tree."""
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        name = Path(spec.rstrip("/")).name.replace("-", "_")
    if not path:
        raise PvkitError(f"--tree '{spec}': give NAME=PATH or PATH")
    if re.search(r"\s", path):
        raise PvkitError(f"--tree '{spec}': the path must not contain white space (the "
                         "pipelines pass cell arguments as words); use a symlink")
    if not _TREE_NAME.fullmatch(name) or name == DEFAULT_TREE:
        raise PvkitError(f"--tree '{spec}': tree name '{name}' must be letters, digits, '_' "
                         f"or '.' and not '{DEFAULT_TREE}' (that is Debian's linux-source); "
                         "name it with NAME=PATH")
    return Tree(name, path)


def parse_clocks(specs: list[str]) -> list[str]:
    """`--clock icount,realtime` (repeatable) in the order given, without repeats."""
    clocks: list[str] = []
    for spec in specs:
        for clock in filter(None, (c.strip() for c in spec.split(","))):
            if clock not in CLOCKS:
                raise PvkitError(f"--clock '{clock}': choose from {', '.join(CLOCKS)}")
            if clock not in clocks:
                clocks.append(clock)
    return clocks or ["icount"]


def select(patterns: list[str], names: list[str]) -> list[str]:
    """Scenario names matching any of the glob patterns (all for none); a pattern matching
    nothing is an error, so a typo cannot shrink the matrix silently."""
    if not patterns:
        return list(names)
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise PvkitError(f"--scenario '{pattern}' matches no scenario in qemu-tests/ "
                             f"(known: {', '.join(names)})")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _repo_relative(path: Path) -> str:
    """A scenario's fragment as the command line of a CI job names it (jobs run at the top of
    the checkout)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def derive(patterns: list[str] | None = None, trees: list[str] | None = None,
           clocks: list[str] | None = None, directory: Path = SCENARIOS_DIR) -> Matrix:
    """The matrix for the scenarios in `directory` that match `patterns`, booted with each
    tree (Debian's linux-source when none is given) under each clock."""
    names = select(patterns or [], scenarios.available(directory))
    if not names:
        raise PvkitError(f"no scenarios in {directory}")
    tree_list = [parse_tree(t) for t in trees] if trees else [Tree(DEFAULT_TREE, None)]
    if len({t.name for t in tree_list}) != len(tree_list):
        raise PvkitError("--tree: two trees have the same name; name them with NAME=PATH")
    clock_list = parse_clocks(clocks or [])
    loaded = [scenarios.load(directory / f"{n}.toml") for n in names]
    builds: dict[str, BuildCell] = {}
    boots: list[BootCell] = []
    for tree in tree_list:
        for scn in loaded:
            profiles = scenarios.profiles(scn)
            needs = []
            for profile in profiles:
                extra = [_repo_relative(f) for f in scenarios.fragments(scn, profile)]
                cell = "-".join([profile, *(Path(f).stem for f in extra), tree.name])
                builds.setdefault(cell, BuildCell(cell, profile, tree.name, " ".join(
                    ["--profile", profile, *tree.args(),
                     *(a for f in extra for a in ("--fragment", f))])))
                needs.append(cell)
            for clock in clock_list:
                args = ["--scenario", scn.name, *tree.args()]
                args += ["--icount"] if clock == "icount" else []
                boots.append(BootCell(f"{scn.name}-{tree.name}-{clock}", scn.name, scn.boot,
                                      tree.name, clock, profiles, needs, " ".join(args)))
    order = {"domU": 0, "dom0": 1}
    build_list = sorted(builds.values(), key=lambda b: (b.tree, order.get(b.profile, 9)))
    return Matrix(tree_list, clock_list, build_list, boots)


def table(m: Matrix) -> str:
    from pvkit.report import table as format_table

    rows = [[b.id, b.scenario, b.boot, b.tree, b.clock, " ".join(b.needs)] for b in m.boots]
    text = format_table(["boot cell", "scenario", "boot", "tree", "clock", "kernels"], rows)
    return f"{text}\n{len(m.builds)} kernel builds, {len(m.boots)} boots"


def github_outputs(m: Matrix) -> str:
    """Lines for $GITHUB_OUTPUT: `builds` and `boots`, each a `strategy.matrix` object."""
    return (f"builds={json.dumps({'include': [asdict(b) for b in m.builds]})}\n"
            f"boots={json.dumps({'include': [asdict(b) for b in m.boots]})}\n")


def gitlab_pipeline(m: Matrix, templates: str = GITLAB_TEMPLATES) -> str:
    """A child pipeline: one build job per kernel, one boot job per cell needing its kernels,
    and a summary job; the job bodies are the templates in `templates`."""
    jobs: dict[str, Any] = {}
    for b in m.builds:
        jobs[f"build-{b.id}"] = {
            "extends": ".pvkit-build",
            "variables": {"PVKIT_CELL": b.id, "PVKIT_ARGS": b.args},
        }
    for c in m.boots:
        jobs[f"boot-{c.id}"] = {
            "extends": ".pvkit-boot",
            "needs": [f"build-{n}" for n in c.needs],
            "variables": {"PVKIT_CELL": c.id, "PVKIT_ARGS": c.args},
        }
    jobs["summary"] = {"extends": ".pvkit-summary", "needs": [f"boot-{c.id}" for c in m.boots]}
    doc = {"include": [{"local": templates}], "stages": ["build", "boot", "report"], **jobs}
    header = ("# Generated by `pvkit matrix --gitlab-pipeline` from qemu-tests/: do not edit.\n"
              f"# {len(m.builds)} kernel builds, {len(m.boots)} boots "
              f"(clocks: {', '.join(m.clocks)}; trees: "
              f"{', '.join(t.name for t in m.trees)})\n")
    return header + to_yaml(doc)


def to_yaml(obj: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (scalars JSON-quoted: valid YAML)."""
    pad = "  " * indent
    out: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            k = json.dumps(key) if not re.fullmatch(r"[A-Za-z0-9_.-]+", key) else key
            if isinstance(value, dict | list) and value:
                out.append(f"{pad}{k}:\n{to_yaml(value, indent + 1)}")
            else:
                out.append(f"{pad}{k}: {_scalar(value)}")
    else:
        for item in obj:
            if isinstance(item, dict | list) and item:
                body = to_yaml(item, indent + 1)
                out.append(f"{pad}- {body.lstrip()}")
            else:
                out.append(f"{pad}- {_scalar(item)}")
    return "\n".join(out) + ("\n" if indent == 0 else "")


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value)
