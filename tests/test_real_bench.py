"""The overhead benchmark for real, reduced (few workloads, few repeats), and --compare on a
real pair where one side has an injected slowdown (init_on_free=1 zeroes every freed page)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pvkit import bench, benchreport, cli

pytestmark = pytest.mark.real
MICRO = ("null_call", "fork", "mmap", "page_fault", "mem_touch_1m", "cpu_loop")


def artifacts() -> Path | None:
    """Where CI keeps the reduced report (PVKIT_ARTIFACTS), if set."""
    env = os.environ.get("PVKIT_ARTIFACTS")
    return Path(env) if env else None


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-base")
    return bench.run_bench(bench.Options(repeats=3, scale=0.05, micro=MICRO, out=out))


def test_reduced_bench_reports(baseline: dict) -> None:
    w = baseline["workloads"]
    for name in MICRO:
        assert set(w[name]["places"]) == {"native", "dom0", "domU", "pvh"}, name
        assert len(w[name]["places"]["domU"]["values"]) == 3
        assert len(w[name]["places"]["pvh"]["values"]) == 3
    # a PV system call costs more than a native one; the pure CPU loop does not
    assert w["null_call"]["slowdown"]["domU"] > 1.5
    assert 0.8 < w["cpu_loop"]["slowdown"]["domU"] < 1.25
    # in a PVH guest a system call does not go through Xen: cheaper than in the PV domU
    assert w["null_call"]["slowdown"]["pvh"] < w["null_call"]["slowdown"]["domU"]
    assert "PVH domU" in (Path(baseline["dir"]) / "report.md").read_text()
    for io in ("fio_seq_read", "iperf3_tcp", "sysbench_cpu"):
        assert io in w, io
    # the pvstat pass: a fork in a PV domU updates page tables through paravirt ops
    fork_ops = w["fork"]["pvstat"]["domU"]
    assert fork_ops.get("mmu.set_pte", 0) + fork_ops.get("mmu.set_pmd", 0) > 0, fork_ops
    assert "Paravirt ops caused" in (Path(baseline["dir"]) / "report.md").read_text()
    out = Path(baseline["dir"])
    for f in ("results.json", "report.md", "report.txt", "relative.png", "micro.png"):
        assert (out / f).stat().st_size > 0, f
    assert "icount" in (out / "report.md").read_text()
    if (dest := artifacts()) is not None:
        shutil.copytree(out, dest / "bench", dirs_exist_ok=True)


def test_compare_flags_injected_slowdown(baseline: dict, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    slowed = bench.run_bench(bench.Options(repeats=3, scale=0.05, micro=MICRO,
                                           domu_cmdline="init_on_free=1", pvstat=False,
                                           io=False, pvh=False,
                                           out=tmp_path))
    rows = bench.compare(baseline, slowed)
    flagged = {(r["workload"], r["place"]) for r in rows if r["flag"] == "slower"}
    # freeing zeroed pages makes fork+exit slower (seen: native fork +20%)
    assert ("fork", "native") in flagged, rows
    assert ("cpu_loop", "domU") not in flagged  # the control stays within noise
    rc = cli.main(["bench", "--compare", baseline["dir"], slowed["dir"]])
    assert rc == 1
    print(benchreport.compare_table(rows))
    assert "slower" in capsys.readouterr().out
