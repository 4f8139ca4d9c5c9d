"""The kernel patch series: quilt-style `kernel-patches/series`, applied atomically.

An entry is a static patch (`git format-patch` output) or a jinja2 template (`*.patch.j2`)
rendered against the target tree by the generator named after it (`pvkit.gen.<name>`).

On a plain or pvkit-managed tree, `apply` copies the files the series touches into a scratch
directory, applies every patch there first, and only then writes the results into the tree,
keeping the originals so `revert` restores the pristine tree. On a git tree it uses `git am
--3way` and `git am --abort` on failure; uncommitted changes elsewhere are left alone.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from pvkit import progress
from pvkit.errors import PvkitError
from pvkit.paths import PATCHES_DIR, cache_subdir
from pvkit.source import Source
from pvkit.util import sha256_text, write_atomic

STATE = ".pvkit-series"


@dataclass(frozen=True)
class Entry:
    name: str
    strip: int
    line: int
    path: Path

    @property
    def template(self) -> bool:
        return self.name.endswith(".j2")

    @property
    def generator(self) -> str:
        return re.sub(r"^\d+-", "", self.name.removesuffix(".patch.j2"))


@dataclass(frozen=True)
class Patch:
    entry: Entry
    text: str

    @property
    def name(self) -> str:
        return self.entry.name.removesuffix(".j2")


def read_series(directory: Path = PATCHES_DIR) -> list[Entry]:
    series = directory / "series"
    if not series.exists():
        return []
    entries: list[Entry] = []
    for number, raw in enumerate(series.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        strip = 1
        for opt in fields[1:]:
            if m := re.fullmatch(r"-p(\d)", opt):
                strip = int(m.group(1))
            else:
                raise PvkitError(f"{series}:{number}: unknown option '{opt}' (only -pN)")
        path = directory / fields[0]
        if not path.exists():
            raise PvkitError(f"{series}:{number}: no patch file {path}")
        entries.append(Entry(fields[0], strip, number, path))
    return entries


def pristine_reader(src: Source) -> Callable[[str], str]:
    """Read a file of the tree as it was before the pvkit series: templates are always
    rendered against the pristine tree, so an applied series renders to the same text."""
    state = _state(src) or {}

    def read(rel: str) -> str:
        if rel in state.get("created", []):
            raise FileNotFoundError(rel)
        if state.get("git_base"):
            proc = subprocess.run(["git", "-C", str(src.root), "show",
                                   f"{state['git_base']}:{rel}"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise FileNotFoundError(rel)
            return proc.stdout
        if rel in state.get("touched", []) and (Path(state["backup"]) / rel).exists():
            return (Path(state["backup"]) / rel).read_text()
        return (src.root / rel).read_text()

    return read


def render(entry: Entry, src: Source) -> str:
    if not entry.template:
        return entry.path.read_text()
    try:
        module = importlib.import_module(f"pvkit.gen.{entry.generator}")
    except ModuleNotFoundError as exc:
        raise PvkitError(f"{entry.name}: no generator pvkit.gen.{entry.generator}") from exc
    context: dict[str, Any] = module.context(src, pristine_reader(src))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(entry.path.parent),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    try:
        return env.get_template(entry.name).render(**context)
    except jinja2.TemplateError as exc:
        raise PvkitError(f"{entry.name}: template error: {exc}") from exc


def materialize(src: Source, directory: Path = PATCHES_DIR) -> list[Patch]:
    return [Patch(e, render(e, src)) for e in read_series(directory)]


def series_id(patches: list[Patch]) -> str:
    return sha256_text(*(f"{p.name}\n{p.text}" for p in patches))


def touched_files(text: str, strip: int) -> list[str]:
    files: list[str] = []
    for line in text.splitlines():
        if line.startswith(("--- ", "+++ ")):
            path = line[4:].split("\t")[0].strip()
            if path == "/dev/null":
                continue
            parts = path.split("/")[strip:]
            if parts:
                files.append("/".join(parts))
    return list(dict.fromkeys(files))


def _state(src: Source) -> dict[str, Any] | None:
    path = _state_path(src)
    return json.loads(path.read_text()) if path.exists() else None


def _state_path(src: Source) -> Path:
    git = src.root / ".git"
    return git / "pvkit-series" if git.is_dir() else src.root / STATE


def _failure(patch: Patch, output: str) -> PvkitError:
    current = "?"
    for line in output.splitlines():
        if m := re.match(r"(?:patching|checking) file '?([^']+?)'?$", line):
            current = m.group(1)
        elif m := re.match(r"Hunk #(\d+) FAILED at (\d+)", line):
            return PvkitError(f"patch {patch.name}: hunk #{m.group(1)} of {current} failed "
                              f"(at line {m.group(2)}); the tree is unchanged")
        elif "Reversed (or previously applied) patch detected" in line:
            return PvkitError(f"patch {patch.name}: {current} already has this change "
                              "(applied outside pvkit?); the tree is unchanged")
        elif m := re.match(r"can't find file to patch", line):
            return PvkitError(f"patch {patch.name}: a file it patches does not exist; the tree "
                              "is unchanged")
    last = output.strip().splitlines()[-1] if output.strip() else "patch failed"
    return PvkitError(f"patch {patch.name}: {last}; the tree is unchanged")


def _patch(patch: Patch, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["patch", f"-p{patch.entry.strip}", "--batch", "--forward", "--no-backup-if-mismatch",
         "-r", "-", "-d", str(directory), *extra], input=patch.text, capture_output=True,
        text=True)


def _scratch_apply(src: Source, patches: list[Patch], scratch: Path) -> list[str]:
    """Apply the whole series to copies of the touched files; returns the touched paths."""
    touched = list(dict.fromkeys(f for p in patches for f in touched_files(p.text,
                                                                          p.entry.strip)))
    for rel in touched:
        original = src.root / rel
        if original.exists():
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(original, scratch / rel)
    for patch in patches:
        proc = _patch(patch, scratch)
        if proc.returncode != 0:
            raise _failure(patch, proc.stdout + proc.stderr)
    return touched


def check(src: Source, directory: Path = PATCHES_DIR) -> list[dict[str, str]]:
    """Dry run of the series against the tree: which patches would apply."""
    patches = materialize(src, directory)
    state = _state(src)
    if state and state.get("id") == series_id(patches):
        return [{"patch": p.name, "status": "applied"} for p in patches]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _scratch_apply(src, patches, Path(tmp))
            out = [{"patch": p.name, "status": "applies"} for p in patches]
        except PvkitError as exc:
            out = [{"patch": "series", "status": f"fails: {exc}"}]
    return out


def apply(src: Source, directory: Path = PATCHES_DIR) -> str:
    """Apply the whole series or nothing; a series already applied is a no-op."""
    patches = materialize(src, directory)
    ident = series_id(patches)
    state = _state(src)
    if state and state.get("id") == ident:
        progress.step("patch series already applied")
        return "already applied"
    if state and src.managed:
        progress.step("the series changed: reverting the old one first")
        revert(src)
    elif state:
        raise PvkitError(f"{src.root} carries another pvkit series; run `pvkit patch revert` "
                         "first")
    if not patches:
        return "empty series"
    if (src.root / ".git").is_dir():
        return _apply_git(src, patches, ident)
    backup = cache_subdir("patches", "backup") / sha256_text(str(src.root))[:16]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        touched = _scratch_apply(src, patches, scratch)
        shutil.rmtree(backup, ignore_errors=True)
        missing = []
        for rel in touched:
            if (src.root / rel).exists():
                (backup / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src.root / rel, backup / rel)
            else:
                missing.append(rel)
        write_atomic(_state_path(src), json.dumps(
            {"id": ident, "patches": [p.name for p in patches], "touched": touched,
             "created": missing, "backup": str(backup), "complete": False}))
        for rel in touched:
            result = scratch / rel
            if result.exists():
                (src.root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(result, src.root / rel)
            else:
                (src.root / rel).unlink(missing_ok=True)
    state = _state(src) or {}
    state["complete"] = True
    write_atomic(_state_path(src), json.dumps(state))
    progress.step(f"applied {len(patches)} patches to {src.root}")
    return f"applied {len(patches)} patches"


def revert(src: Source) -> str:
    state = _state(src)
    if not state:
        return "nothing applied"
    if state.get("git_base"):
        proc = subprocess.run(["git", "-C", str(src.root), "reset", "--keep",
                               state["git_base"]], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PvkitError(f"git reset --keep {state['git_base'][:12]} failed: "
                             f"{proc.stderr.strip()}; your changes are untouched")
    else:
        backup = Path(state["backup"])
        for rel in state["touched"]:
            if rel in state["created"]:
                (src.root / rel).unlink(missing_ok=True)
            elif (backup / rel).exists():
                shutil.copy2(backup / rel, src.root / rel)
    _state_path(src).unlink()
    return f"reverted {len(state['patches'])} patches"


def _apply_git(src: Source, patches: list[Patch], ident: str) -> str:
    git = ["git", "-C", str(src.root)]
    touched = [f for p in patches for f in touched_files(p.text, p.entry.strip)]
    dirty = subprocess.run([*git, "status", "--porcelain", "--", *touched],
                           capture_output=True, text=True).stdout
    if dirty.strip():
        first = dirty.splitlines()[0][3:]
        raise PvkitError(f"{src.root}: uncommitted changes in {first}, which the series "
                         "patches; commit or stash them first")
    base = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, p in enumerate(patches):
            path = Path(tmp) / f"{i:04d}-{p.name}"
            path.write_text(p.text)
            files.append(str(path))
        proc = subprocess.run([*git, "am", "--3way", "--keep-cr", *files],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run([*git, "am", "--abort"], capture_output=True)
            failed = re.search(r"Patch failed at \d+ (.*)", proc.stdout + proc.stderr)
            where = re.search(r"error: patch failed: (\S+)", proc.stdout + proc.stderr)
            raise PvkitError(
                f"git am failed at '{failed.group(1) if failed else '?'}'"
                f"{' in ' + where.group(1) if where else ''}; the tree is back at "
                f"{base[:12]}")
    write_atomic(_state_path(src), json.dumps({"id": ident, "patches": [p.name for p in patches],
                                               "git_base": base}))
    return f"applied {len(patches)} patches with git am"


def status(src: Source) -> list[dict[str, str]]:
    state = _state(src) or {}
    applied = set(state.get("patches", []))
    return [{"patch": e.name.removesuffix(".j2"), "kind": "template" if e.template
             else "static", "status": "applied" if e.name.removesuffix(".j2") in applied
             else "not applied"} for e in read_series()]
