"""The kernel source tree: Debian's linux-source package (default) or a user's tree."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pvkit import debs, progress
from pvkit.errors import PvkitError
from pvkit.paths import cache_subdir
from pvkit.util import flocked, replace_dir, sha256_text, walk_stats

DEFAULT_PACKAGE = "linux-source-6.1"


@dataclass(frozen=True)
class Source:
    root: Path
    version: str  # kernel version, e.g. 6.1.192
    origin: str  # "deb:linux-source-6.1=6.1.192-2" or "tree:/path"
    managed: bool  # True when pvkit owns the tree (cache); False for a user's tree

    def to_json(self) -> dict[str, object]:
        return {"root": str(self.root), "version": self.version, "origin": self.origin}


@contextlib.contextmanager
def tree_lock(src: Source, *, exclusive: bool) -> Iterator[int]:
    """The one lock of a kernel tree: exclusive to change it (patch apply/revert), shared to
    read it (builds hold it while make runs). Yields the lock's descriptor."""
    name = sha256_text(str(src.root))[:16]

    def waiting() -> None:
        progress.step(f"waiting for another pvkit using {src.root}")

    with flocked(cache_subdir("locks") / f"tree-{name}.lock", exclusive=exclusive,
                 on_wait=waiting) as fd:
        yield fd


def kernel_version(root: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from the top-level Makefile."""
    makefile = root / "Makefile"
    if not (makefile.is_file() and (root / "Kconfig").is_file()):
        raise PvkitError(f"{root}: not a Linux kernel tree (no Makefile/Kconfig at its top)")
    fields: dict[str, str] = {}
    for line in makefile.read_text(errors="replace").splitlines()[:12]:
        m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line)
        if m:
            fields[m.group(1)] = m.group(2)
    try:
        version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"
    except KeyError as exc:
        raise PvkitError(f"{makefile}: no {exc.args[0]} line; is this a kernel tree?") from exc
    return version + fields.get("EXTRAVERSION", "")


def from_tree(path: Path) -> Source:
    root = path.expanduser().resolve()
    if not root.is_dir():
        raise PvkitError(f"--tree {path}: no such directory")
    return Source(root, kernel_version(root), f"tree:{root}", managed=False)


def _extracted(package: str) -> str | None:
    """The newest version of the package already extracted completely in the cache."""
    done = [p for p in cache_subdir("src").glob(f"{package}_*")
            if (p / ".pvkit-complete").exists()]
    if not done:
        return None
    newest = max(done, key=lambda p: p.stat().st_mtime)
    return newest.name.split("_", 1)[1].replace("%3a", ":")


def from_debian(package: str = DEFAULT_PACKAGE, version: str | None = None,
                update: bool = False) -> Source:
    """Download and extract Debian's linux-source package once into the cache.

    Without a version, a tree already extracted is used as it is (no apt query: builds stay
    fast and reproducible); `update` asks apt for its newest version instead."""
    if version is None and not update:
        version = _extracted(package)
    pkg = debs.fetch(package, version)
    dest = cache_subdir("src") / f"{package}_{pkg.version.replace(':', '%3a')}"
    if not (dest / ".pvkit-complete").exists():
        tarballs = sorted((pkg.root / "usr/src").glob("linux-source-*.tar.*"))
        if not tarballs:
            raise PvkitError(f"{pkg.deb}: no usr/src/linux-source-*.tar.* inside")
        progress.step(f"extracting {tarballs[0].name} (about a minute, once)")
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            proc = subprocess.run(["tar", "-xf", str(tarballs[0]), "-C", str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["tar failed"])[-1]
                raise PvkitError(f"cannot extract {tarballs[0]}: {last}; delete {pkg.deb} "
                                 "and re-run to download it again")
            (tmp / ".pvkit-complete").write_text(pkg.sha256 + "\n")
            replace_dir(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    trees = [p for p in dest.iterdir() if p.is_dir() and (p / "Makefile").exists()]
    if len(trees) != 1:
        raise PvkitError(f"{dest}: expected one kernel tree inside; delete it and re-run")
    root = trees[0]
    return Source(root, kernel_version(root), f"deb:{package}={pkg.version}", managed=True)


def resolve(tree: str | None = None, update: bool = False) -> Source:
    if tree:
        return from_tree(Path(tree))
    env_tree = os.environ.get("PVKIT_TREE")
    return from_tree(Path(env_tree)) if env_tree else from_debian(update=update)


_MEMO: dict[Path, str] | None = None


@contextlib.contextmanager
def fingerprints_reused() -> Iterator[None]:
    """Within the block a tree's fingerprint is computed once (a plain tree's walk costs about
    0.6 s on Linux 6.1): for work that does not change the tree, such as one scenario run."""
    global _MEMO
    outer = _MEMO
    _MEMO = {} if outer is None else outer
    try:
        yield
    finally:
        _MEMO = outer


def fingerprint(src: Source) -> str:
    memo = _MEMO
    if memo is not None and src.root in memo:
        return memo[src.root]
    value = _fingerprint(src)
    if memo is not None:
        memo[src.root] = value
    return value


def kconfig_fingerprint(src: Source) -> str:
    """What Kconfig resolution reads of a tree: every Kconfig* file, the Makefile (the
    version) and the config fragments of arch/x86/configs and kernel/configs, by size and
    modification time. (A plain tree's fingerprint walk computes it too, in the same walk.)"""
    memo = _MEMO
    key = src.root / ".pvkit-kconfig"
    if memo is not None and key in memo:
        return memo[key]
    parts = [src.origin]
    root = str(src.root)
    parts += [f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}"
              for dirpath, name, st in walk_stats(src.root) if _kconfig_input(root, dirpath, name)]
    value = sha256_text(*parts)
    if memo is not None:
        memo[key] = value
    return value


def _kconfig_input(root: str, dirpath: str, name: str) -> bool:
    return (name.startswith("Kconfig") or dirpath.endswith(("/configs", "/kernel/configs"))
            or (name == "Makefile" and dirpath == root))


def _fingerprint(src: Source) -> str:
    """A cheap content fingerprint of the tree, for build keys.

    A managed tree changes only through pvkit (the patch series records itself in
    `.pvkit-series`), so its origin and that record identify it. A git tree is identified by
    HEAD plus the diff of its working tree; a plain tree by the sizes and mtimes of its files.
    """
    series = src.root / ".pvkit-series"
    series_id = series.read_text() if series.exists() else ""
    if src.managed:
        return sha256_text(src.origin, series_id)
    if (src.root / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(src.root), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        diff = subprocess.run(
            ["git", "-C", str(src.root), "diff", "HEAD", "--binary"],
            capture_output=True, text=True,
        ).stdout
        untracked = subprocess.run(
            ["git", "-C", str(src.root), "ls-files", "--others", "--exclude-standard"],
            capture_output=True, text=True,
        ).stdout
        stats = _stat_fingerprint(src.root, untracked.split())
        return sha256_text(src.origin, head, diff, stats, series_id)
    kparts: list[str] = [src.origin]
    stats = _stat_fingerprint(src.root, None, kparts)
    if _MEMO is not None:  # the same walk saw every Kconfig input: no second walk of the tree
        _MEMO[src.root / ".pvkit-kconfig"] = sha256_text(*kparts)
    return sha256_text(src.origin, stats, series_id)


def _stat_fingerprint(root: Path, only: list[str] | None,
                      kconfig: list[str] | None = None) -> str:
    """Sizes and modification times of the files named in `only`, or of the whole tree;
    walking the whole tree, the Kconfig inputs' lines are also added to `kconfig`."""
    parts: list[str] = []
    if only is not None:
        for rel in sorted(only):
            try:
                st = (root / rel).stat()
            except OSError:
                continue
            parts.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
        return sha256_text(*parts)
    top = str(root)
    for dirpath, name, st in walk_stats(root):
        line = f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}"
        parts.append(line)
        if kconfig is not None and _kconfig_input(top, dirpath, name):
            kconfig.append(line)
    return sha256_text(*parts)
