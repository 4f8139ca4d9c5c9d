#!/usr/bin/env python3
"""Build benchmark: prints build times per profile (not a test; nothing is asserted).

  cold          make in a fresh build directory with ccache bypassed (--cold only: ~10 min)
  key hit       `pvkit build` when the content key matches: make does not run
  no-op make    make runs, nothing changed
  touch 1 file  make after touching one source file (drivers/xen/events/events_base.c)
  fresh, warm   a fresh build directory with a warm ccache

Usage: ci/build-bench.py [--profile domU] [--cold]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from pvkit import build, progress  # noqa: E402
from pvkit.paths import cache_dir  # noqa: E402
from pvkit.report import table  # noqa: E402

TOUCH = "drivers/xen/events/events_base.c"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def bench(profile: str, cold: bool) -> list[list[str]]:
    rows = []
    first = build.build(profile)
    src = Path(first.metadata["inputs"]["source"]["root"])
    if cold:
        os.environ["CCACHE_DISABLE"] = "1"
        cold_dir = cache_dir() / "build" / f"{profile}-bench-cold"
        shutil.rmtree(cold_dir, ignore_errors=True)
        rows.append([profile, "cold (no ccache)",
                     f"{timed(lambda: build.build(profile, force=True, build_dir=cold_dir)):.1f}"])
        del os.environ["CCACHE_DISABLE"]
        shutil.rmtree(cold_dir, ignore_errors=True)
    rows.append([profile, "key hit (no make)", f"{timed(lambda: build.build(profile)):.2f}"])
    rows.append([profile, "no-op make", f"{timed(lambda: build.build(profile, force=True)):.1f}"])
    (src / TOUCH).touch()
    rows.append([profile, "touch 1 file", f"{timed(lambda: build.build(profile, force=True)):.1f}"])
    fresh = cache_dir() / "build" / f"{profile}-bench-fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    rows.append([profile, "fresh dir, warm ccache",
                 f"{timed(lambda: build.build(profile, force=True, build_dir=fresh)):.1f}"])
    shutil.rmtree(fresh, ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", action="append", choices=("domU", "dom0"))
    ap.add_argument("--cold", action="store_true", help="also time a build without ccache")
    args = ap.parse_args()
    progress.set_quiet(True)
    rows = [r for p in args.profile or ["domU", "dom0"] for r in bench(p, args.cold)]
    print(table(["profile", "case", "seconds"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
