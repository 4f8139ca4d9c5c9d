#!/usr/bin/env python3
"""Loop benchmark: edit -> verdict, the kernel developer's loop (not a test; nothing asserted).

For each case, edit something, then `pvkit run --tree TREE --scenario S` (in-process, as the
CLI runs it) until the verdict; the time from the edit to the verdict is split into build
(kernels and drivers), packing (images and payloads) and boot. Each case is repeated and the
median printed, beside the issue's target.

  kernel    one line added to arch/x86/xen/enlighten_pv.c of the tree (a new object, a relink)
  driver    a comment added to drivers/pvblk/pvblk_front.c (restored at the end)
  scenario  the scenario's description changed (a copy of its file is run)

TREE is a copy of the kernel source at another path (a user's --tree): made once with
`cp -a` from pvkit's linux-source unless --tree names one (which gets edited!). Its first
build is done before timing starts.

Usage: ci/loop-bench.py [--case native:kernel ...] [--repeats 3] [--tree PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from pvkit import progress, run, scenarios, source  # noqa: E402
from pvkit.paths import DRIVERS_DIR  # noqa: E402
from pvkit.report import table  # noqa: E402

KERNEL_FILE = "arch/x86/xen/enlighten_pv.c"
DRIVER_FILE = DRIVERS_DIR / "pvblk" / "pvblk_front.c"
DEFAULT_CASES = ["native:kernel", "native:scenario", "smoke:kernel", "smoke:scenario",
                 "pvblk-vbd:driver"]
# the targets (seconds from edit to verdict); a pvblk scenario after a driver edit:
# its boot time + 15 s
TARGETS = {"native:kernel": 10.0, "smoke:kernel": 40.0}


def edit(kind: str, tree: Path, scenario: str, n: int, work: Path) -> str:
    """Make the edit; returns what to run (a scenario name or a path)."""
    if kind == "kernel":
        with (tree / KERNEL_FILE).open("a") as handle:
            handle.write(f'static const char pvkit_loop_bench_{n}[] __used = "{n}";\n')
        return scenario
    if kind == "driver":
        with DRIVER_FILE.open("a") as handle:
            handle.write(f"/* pvkit loop-bench {n} */\n")
        return scenario
    copy = work / f"{scenario}.toml"
    text = scenarios.find(scenario).path.read_text()
    copy.write_text(text.replace('description = """', f'description = """(edit {n}) ', 1))
    return str(copy)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", help=f"SCENARIO:EDIT (default: "
                    f"{' '.join(DEFAULT_CASES)})")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tree", help="a kernel tree to edit (default: a fresh copy)")
    args = ap.parse_args()
    cases = [c.split(":", 1) for c in args.case or DEFAULT_CASES]
    progress.set_quiet(True)
    driver_text = DRIVER_FILE.read_text()
    with tempfile.TemporaryDirectory(prefix="pvkit-loop-") as tmp:
        work = Path(tmp)
        if args.tree:
            tree = Path(args.tree).resolve()
        else:
            tree = work / "linux"
            print(f"copying the kernel source to {tree} ...", file=sys.stderr)
            subprocess.run(["cp", "-a", str(source.from_debian().root), str(tree)], check=True)
            (tree / ".pvkit-series").unlink(missing_ok=True)  # a user's tree: no record
        kernel_text = (tree / KERNEL_FILE).read_text()
        rows = []
        try:
            for name in dict.fromkeys(s for s, _ in cases):  # build what each one boots
                print(f"warming up: {name}", file=sys.stderr)
                first = run.run(name, run.Options(tree=str(tree), out=work / "warm" / name))
                print(f"  {first['status']} in {first['wall_s']:.1f} s", file=sys.stderr)
            edits = 0
            for scenario, kind in cases:
                samples = []
                for n in range(args.repeats):
                    edits += 1  # every edit is new, across cases
                    t0 = time.monotonic()
                    target = edit(kind, tree, scenario, edits, work)
                    result = run.run(target, run.Options(tree=str(tree),
                                                         out=work / "runs" / f"{edits}"))
                    total = time.monotonic() - t0
                    phases = result["info"].get("phases", {})
                    samples.append((total, phases.get("build_s", 0.0),
                                    phases.get("pack_s", 0.0), phases.get("boot_s", 0.0),
                                    result["status"]))
                    print(f"{scenario}:{kind} #{n}: {result['status']} {total:.1f} s "
                          f"{phases}", file=sys.stderr)
                med = [statistics.median(s[i] for s in samples) for i in range(4)]
                target = TARGETS.get(f"{scenario}:{kind}")
                if scenario.startswith("pvblk") and kind == "driver":
                    target = med[3] + 15.0
                rows.append([scenario, kind, f"{med[0]:.1f}", f"{med[1]:.1f}", f"{med[2]:.1f}",
                             f"{med[3]:.1f}", f"{target:.1f}" if target else "-",
                             ("met" if med[0] <= target else "MISSED") if target else "-",
                             "/".join(sorted({s[4] for s in samples}))])
        finally:
            DRIVER_FILE.write_text(driver_text)
            (tree / KERNEL_FILE).write_text(kernel_text)
    print(table(["scenario", "edit", "edit->verdict s", "build s", "pack s", "boot s",
                 "target s", "", "verdicts"], rows))
    print(f"\nmedians of {args.repeats}; wall-clock seconds on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
