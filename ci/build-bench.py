#!/usr/bin/env python3
"""Build benchmark: prints build times per profile (not a test; nothing is asserted).

  cold           make in a fresh build directory with ccache bypassed (--cold only: ~10 min)
  key hit        `pvkit build` when the content key matches: make does not run
  no-op make     make runs, nothing changed
  touch 1 file   make after touching one source file (drivers/xen/events/events_base.c)
  fresh, warm    a fresh build directory with a warm ccache
  other tree     a copy of the source at another path (a user's --tree), fresh build
                 directory, warm ccache: the compiles name every tree through the profile's
                 slot, so ccache hits although the path differs

The forced makes run in a scratch build directory (the fresh one), so the profile's real
build directory and its metadata.json are left as they were.

Usage: ci/build-bench.py [--profile domU] [--cold] [--no-other-tree]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from pvkit import build, progress  # noqa: E402
from pvkit.paths import cache_dir  # noqa: E402
from pvkit.report import table  # noqa: E402

TOUCH = "drivers/xen/events/events_base.c"


def timed(fn: Callable[[], build.Build]) -> tuple[float, build.Build]:
    t0 = time.monotonic()
    b = fn()
    return time.monotonic() - t0, b


def row(profile: str, case: str, seconds: float, b: build.Build | None) -> list[str]:
    cc = b.metadata.get("ccache", {}) if b else {}
    hits = f"{cc['hits']}/{cc['misses']}" if cc else "-"
    return [profile, case, f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}", hits]


def bench(profile: str, cold: bool, other_tree: bool) -> list[list[str]]:
    rows = []
    first = build.build(profile)
    src = Path(first.metadata["inputs"]["source"]["root"])
    scratch = cache_dir() / "build" / f"{profile}-bench"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        if cold:
            os.environ["CCACHE_DISABLE"] = "1"
            s, b = timed(lambda: build.build(profile, force=True, build_dir=scratch / "cold"))
            rows.append(row(profile, "cold (no ccache)", s, None))
            del os.environ["CCACHE_DISABLE"]
        s, b = timed(lambda: build.build(profile))
        rows.append(row(profile, "key hit (no make)", s, None))
        fresh = scratch / "fresh"
        s, b = timed(lambda: build.build(profile, force=True, build_dir=fresh))
        rows.append(row(profile, "fresh dir, warm ccache", s, b))
        s, b = timed(lambda: build.build(profile, force=True, build_dir=fresh))
        rows.append(row(profile, "no-op make", s, b))
        (src / TOUCH).touch()
        s, b = timed(lambda: build.build(profile, force=True, build_dir=fresh))
        rows.append(row(profile, "touch 1 file", s, b))
        if other_tree:
            with tempfile.TemporaryDirectory(prefix="pvkit-tree-") as tmp:
                tree = Path(tmp) / "linux"
                subprocess.run(["cp", "-a", str(src), str(tree)], check=True)
                (tree / ".pvkit-series").unlink(missing_ok=True)  # a user's tree: no record
                s, b = timed(lambda: build.build(profile, tree=str(tree), force=True,
                                                 build_dir=scratch / "other-tree"))
                rows.append(row(profile, f"other tree ({tree.parent}), warm ccache", s, b))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", action="append", choices=("domU", "dom0"))
    ap.add_argument("--cold", action="store_true", help="also time a build without ccache")
    ap.add_argument("--no-other-tree", action="store_true",
                    help="skip the build of a copy of the tree at another path")
    args = ap.parse_args()
    progress.set_quiet(True)
    rows = [r for p in args.profile or ["domU", "dom0"]
            for r in bench(p, args.cold, not args.no_other_tree)]
    print(table(["profile", "case", "seconds", "ccache hits/misses"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
