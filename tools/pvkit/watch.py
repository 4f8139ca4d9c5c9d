"""`pvkit run --watch`: run scenarios again whenever something they are made from changes.

What is watched: the user's kernel tree (`--tree`; pvkit's own copy of linux-source is not
edited by hand), the driver sources, the scenarios, the guest scripts, the kernel profiles,
the patch series and the user's fragments and base config. A change is a file whose size or
modification time changed, appeared or went away; it is acted on once the files have been
quiet for a moment, so an editor's several writes make one run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pvkit.paths import DRIVERS_DIR, GUEST_DIR, PATCHES_DIR, PROFILES_DIR, SCENARIOS_DIR
from pvkit.util import walk_stats

SKIP_DIRS = frozenset({".git", "__pycache__", ".pvkit-build"})


def inputs(tree: str | None, fragments: Iterable[Path], base: str) -> list[Path]:
    paths = [DRIVERS_DIR, SCENARIOS_DIR, GUEST_DIR, PROFILES_DIR, PATCHES_DIR,
             *map(Path, fragments)]
    if Path(base).is_file():
        paths.append(Path(base))
    if tree:
        paths.append(Path(tree))
    return paths


def snapshot(paths: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under `paths`."""
    seen: dict[str, tuple[int, int]] = {}
    for top in paths:
        if top.is_file():
            st = top.stat()
            seen[str(top)] = (st.st_size, st.st_mtime_ns)
            continue
        for dirpath, name, st in walk_stats(top, SKIP_DIRS):
            seen[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return seen


def changed(old: dict[str, tuple[int, int]], new: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))


def wait_for_change(paths: list[Path], interval: float = 1.0, quiet: float = 0.5,
                    sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Block until a watched file changes and the files are then quiet for `quiet` seconds;
    returns the files that changed."""
    base = snapshot(paths)
    while True:
        sleep(interval)
        now = snapshot(paths)
        if now != base:
            while True:  # let the editor finish writing
                sleep(quiet)
                later = snapshot(paths)
                if later == now:
                    return changed(base, now)
                now = later

