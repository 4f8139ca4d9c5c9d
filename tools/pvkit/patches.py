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
from pvkit.paths import PATCHES_DIR, cache_subdir, require
from pvkit.source import Source, tree_lock
from pvkit.util import first_line, sha256_text, write_atomic

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
    series = require(directory, "the patch series (kernel-patches/)") / "series"
    if not series.exists():
        raise PvkitError(f"{series}: missing; a patch series directory holds a quilt "
                         "`series` file (one patch per line; empty for no patches)")
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


def subject(text: str) -> str:
    """The commit subject `git am` makes of a patch: its Subject without the [PATCH] tag."""
    m = re.search(r"^Subject: (.*(?:\n[ \t].*)*)", text, re.M)
    if not m:
        return ""
    line = " ".join(part.strip() for part in m.group(1).splitlines())
    return re.sub(r"^(?:\[[^]]*\]\s*)+", "", line).strip()


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
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PvkitError(f"{path}: pvkit's record of the applied series is corrupt ({exc}); "
                         "check the tree by hand, then remove the file") from exc
    if not isinstance(state, dict) or "patches" not in state:
        raise PvkitError(f"{path}: not a record of a pvkit series; check the tree by hand, then "
                         "remove the file")
    # records written before the `complete` flag existed were written only after success
    state.setdefault("complete", True)
    return state


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


def state_of(src: Source) -> str:
    """'none', 'applied' or 'half-applied' (an apply interrupted while writing the tree)."""
    state = _state(src)
    if state is None:
        return "none"
    return "applied" if state.get("complete") else "half-applied"


def applied_patches(src: Source) -> list[str]:
    """The patch names of the series completely applied to the tree ([] if none)."""
    state = _state(src)
    return list(state.get("patches", [])) if state and state.get("complete") else []


def applied_id(src: Source) -> str | None:
    """The id of the series completely applied to the tree, if any (read-only)."""
    state = _state(src)
    return state.get("id") if state and state.get("complete") else None


def check(src: Source, directory: Path = PATCHES_DIR) -> list[dict[str, str]]:
    """Dry run of the series against the tree: which patches would apply (read-only)."""
    patches = materialize(src, directory)
    state = _state(src)
    if state and not state.get("complete"):
        return [{"patch": "series", "status": "fails: half-applied (an apply was "
                 "interrupted); `pvkit patch apply` or `pvkit patch revert` restores the tree"}]
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
    with tree_lock(src, exclusive=True):
        return _apply_locked(src, directory)


def _apply_locked(src: Source, directory: Path) -> str:
    recover(src)
    patches = materialize(src, directory)
    ident = series_id(patches)
    state = _state(src)
    if state and state.get("id") == ident:
        progress.step("patch series already applied")
        return "already applied"
    if state and src.managed:
        progress.step("the series changed: reverting the old one first")
        _revert_locked(src)
    elif state:
        raise PvkitError(f"{src.root} carries another pvkit series; run `pvkit patch revert "
                         f"--tree {src.root}` first")
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
        state = {"id": ident, "patches": [p.name for p in patches], "touched": touched,
                 "created": missing, "backup": str(backup), "complete": False}
        # the record says "incomplete" while the tree is being written: an interruption here
        # (even SIGKILL) is found by the next apply, check or revert and rolled back
        _write_state(src, state)
        try:
            for rel in touched:
                result = scratch / rel
                if result.exists():
                    (src.root / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(result, src.root / rel)
                else:
                    (src.root / rel).unlink(missing_ok=True)
        except BaseException:
            _restore_files(src, state)
            raise
    state["complete"] = True
    _write_state(src, state)
    progress.step(f"applied {len(patches)} patches to {src.root}")
    return f"applied {len(patches)} patches"


def _write_state(src: Source, state: dict[str, Any]) -> None:
    write_atomic(_state_path(src), json.dumps(state))


def _restore_files(src: Source, state: dict[str, Any]) -> None:
    """Put back the pristine copies of every file the series touched; drop the record."""
    backup = Path(state["backup"])
    lost = [rel for rel in state["touched"]
            if rel not in state["created"] and not (backup / rel).is_file()]
    if lost:
        hint = ("delete the extracted source in the pvkit cache and re-run to extract it "
                "again" if src.managed else "restore those files yourself (e.g. from your VCS)")
        raise PvkitError(f"{src.root}: the backup of {lost[0]} (and {len(lost) - 1} more) is "
                         f"missing from {backup}, so the tree cannot be restored; {hint}")
    for rel in state["touched"]:
        if rel in state["created"]:
            (src.root / rel).unlink(missing_ok=True)
        else:
            (src.root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(backup / rel, src.root / rel)
    _state_path(src).unlink(missing_ok=True)


def recover(src: Source) -> bool:
    """Roll back a half-applied series (an apply interrupted while it wrote the tree);
    True if there was one."""
    state = _state(src)
    if state is None or state.get("complete"):
        return False
    progress.notice(f"{src.root}: a pvkit patch apply was interrupted; restoring the tree")
    if "git_base" in state:
        _recover_git(src, state)
    else:
        _restore_files(src, state)
    return True


def revert(src: Source) -> str:
    with tree_lock(src, exclusive=True):
        if recover(src):
            return "restored the tree from a half-applied series"
        return _revert_locked(src)


def _revert_locked(src: Source) -> str:
    state = _state(src)
    if not state:
        return "nothing applied"
    if state.get("git_base"):
        _revert_git(src, state)
    else:
        _restore_files(src, state)
    _state_path(src).unlink(missing_ok=True)
    return f"reverted {len(state['patches'])} patches"


def _git(src: Source, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(src.root), *args], capture_output=True, text=True)


def _rev(src: Source, rev: str) -> str:
    return _git(src, "rev-parse", "--verify", "--quiet", rev).stdout.strip()


def _is_ancestor(src: Source, a: str, b: str) -> bool:
    return _git(src, "merge-base", "--is-ancestor", a, b).returncode == 0


def _revert_git(src: Source, state: dict[str, Any]) -> None:
    base = state["git_base"]
    series_head = state.get("git_head") or ""
    head = _rev(src, "HEAD")
    if not series_head:  # a record from before git_head was kept: count the commits instead
        count = _git(src, "rev-list", "--count", f"{base}..HEAD").stdout.strip()
        series_head = head if count == str(len(state["patches"])) else ""
    if not series_head or not _is_ancestor(src, series_head, head):
        _state_path(src).unlink(missing_ok=True)
        raise PvkitError(f"{src.root}: the pvkit series is no longer in the history of HEAD "
                         "(rebased or reset?); nothing was reverted and the record of it is "
                         "dropped")
    if head != series_head:
        extra = _git(src, "rev-list", "--count", f"{series_head}..{head}").stdout.strip()
        raise PvkitError(
            f"{src.root}: {extra} commit(s) of yours sit on top of the pvkit series; revert "
            f"would drop them, so nothing was changed. Move them off it first: `git -C "
            f"{src.root} rebase --onto {base[:12]} {series_head[:12]}` drops the series and "
            "keeps your commits")
    proc = _git(src, "reset", "--keep", base)
    if proc.returncode != 0:
        raise PvkitError(f"git reset --keep {base[:12]} failed: {first_line(proc.stderr)}; "
                         "your changes are untouched")


def _recover_git(src: Source, state: dict[str, Any]) -> None:
    base = state["git_base"]
    git_dir = Path(_git(src, "rev-parse", "--absolute-git-dir").stdout.strip())
    if (git_dir / "rebase-apply").exists():
        _git(src, "am", "--abort")
    head = _rev(src, "HEAD")
    if head != base:
        made = _git(src, "log", "--reverse", "--format=%s", f"{base}..HEAD").stdout.splitlines()
        if not _is_ancestor(src, base, head) or made != state["subjects"][:len(made)]:
            raise PvkitError(f"{src.root}: an interrupted pvkit apply left HEAD at {head[:12]}, "
                             f"not at {base[:12]}, with commits pvkit did not make; check "
                             "`git log` and reset it yourself, then remove "
                             f"{_state_path(src)}")
        proc = _git(src, "reset", "--keep", base)
        if proc.returncode != 0:
            raise PvkitError(f"git reset --keep {base[:12]} failed: {first_line(proc.stderr)}")
    _state_path(src).unlink(missing_ok=True)


def _git_identity(src: Source) -> list[str]:
    """`-c user.name=... -c user.email=...` when the tree's git has no identity (git am
    records a committer; without one it stops)."""
    have = {k: _git(src, "config", k).stdout.strip() for k in ("user.name", "user.email")}
    return [opt for k, v in have.items() if not v
            for opt in ("-c", f"{k}={'pvkit' if k == 'user.name' else 'pvkit@localhost'}")]


def _apply_git(src: Source, patches: list[Patch], ident: str) -> str:
    touched = [f for p in patches for f in touched_files(p.text, p.entry.strip)]
    dirty = _git(src, "status", "--porcelain", "--", *touched).stdout
    if dirty.strip():
        first = dirty.splitlines()[0][3:]
        raise PvkitError(f"{src.root}: uncommitted changes in {first}, which the series "
                         "patches; commit or stash them first")
    git_dir = Path(_git(src, "rev-parse", "--absolute-git-dir").stdout.strip())
    if (git_dir / "rebase-apply").exists():
        raise PvkitError(f"{src.root}: a `git am` or `git rebase` is in progress; finish it or "
                         "abort it (`git am --abort`) first")
    base = _rev(src, "HEAD")
    if not base:
        raise PvkitError(f"{src.root}: the git repository has no commit yet; commit the tree "
                         "first")
    state: dict[str, Any] = {"id": ident, "patches": [p.name for p in patches],
                             "subjects": [subject(p.text) for p in patches],
                             "git_base": base, "complete": False}
    _write_state(src, state)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, p in enumerate(patches):
            path = Path(tmp) / f"{i:04d}-{p.name}"
            path.write_text(p.text)
            files.append(str(path))
        try:
            proc = subprocess.run(["git", *_git_identity(src), "-C", str(src.root), "am",
                                   "--3way", "--keep-cr", *files], capture_output=True,
                                  text=True)
        except BaseException:
            _recover_git(src, state)
            raise
        if proc.returncode != 0:
            _recover_git(src, state)
            failed = re.search(r"Patch failed at \d+ (.*)", proc.stdout + proc.stderr)
            where = re.search(r"error: patch failed: (\S+)", proc.stdout + proc.stderr)
            why = "" if failed or where else f" ({first_line(proc.stderr or proc.stdout)})"
            raise PvkitError(
                f"git am failed at '{failed.group(1) if failed else '?'}'"
                f"{' in ' + where.group(1) if where else ''}{why}; the tree is back at "
                f"{base[:12]}")
    state.update(git_head=_rev(src, "HEAD"), complete=True)
    _write_state(src, state)
    return f"applied {len(patches)} patches with git am"


def status(src: Source, directory: Path = PATCHES_DIR) -> list[dict[str, str]]:
    state = _state(src) or {}
    applied = set(state.get("patches", []))
    done = "applied" if state.get("complete") else "half-applied"
    return [{"patch": e.name.removesuffix(".j2"), "kind": "template" if e.template
             else "static", "status": done if e.name.removesuffix(".j2") in applied
             else "not applied"} for e in read_series(directory)]
