"""bench: metric grouping, medians and spread, slowdowns, --compare, and the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pvkit import bench, benchreport, cli
from pvkit.util import write_json


def doc(metrics: dict[str, tuple[float, str]]) -> dict[str, Any]:
    return {"cases": [{"metrics": metrics}]}


def test_metrics_grouped_by_repeat() -> None:
    d = doc({"null_call.r2": (0.5, "us"), "null_call.r1": (0.4, "us"), "odd": (1.0, "x"),
             "mem_bw.r1": (900.0, "MB/s")})
    assert bench.metrics(d) == {"null_call": [0.4, 0.5], "mem_bw": [900.0]}
    assert bench._units(d)["null_call"] == "us"


def test_summary_and_noise_flag() -> None:
    s = bench.summarize([1.0, 1.01, 1.02])
    assert s["median"] == 1.01 and s["spread"] == pytest.approx(0.0198, abs=1e-4)
    assert not s["noisy"]
    assert bench.summarize([1.0, 1.5, 1.2])["noisy"]


def fake(values: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    units = {"null_call": "us", "mem_bw": "MB/s", "fio_seq_read": "MB/s"}
    return {"meta": {"clock": "icount", "accel": "tcg", "cpu": "max", "qemu": "QEMU 7.2",
                     "kernel": {"domU": "6.1", "dom0": "6.1"}, "xen": "4.17", "repeats": 3,
                     "scale": 1.0, "memory_mb": "1536", "date": "now", "configs": {}},
            "workloads": bench.analyse(values, units)}


BASE = {
    "native": {"null_call": [0.30, 0.30, 0.31], "mem_bw": [1000.0, 1000.0, 1001.0]},
    "dom0": {"null_call": [1.1, 1.1, 1.1], "mem_bw": [500.0, 500.0, 500.0],
             "fio_seq_read": [200.0, 200.0, 201.0]},
    "domU": {"null_call": [2.4, 2.4, 2.41], "mem_bw": [400.0, 400.0, 400.0],
             "fio_seq_read": [100.0, 100.0, 100.0]},
}


def test_slowdowns_respect_direction_and_baseline() -> None:
    w = fake(BASE)["workloads"]
    assert w["null_call"]["slowdown"]["domU"] == pytest.approx(2.4 / 0.30, rel=1e-3)
    assert w["mem_bw"]["slowdown"]["domU"] == pytest.approx(2.5, rel=1e-3)  # bandwidth
    assert w["fio_seq_read"]["baseline"] == "dom0"  # I/O has no native device
    assert w["fio_seq_read"]["slowdown"] == {"domU": pytest.approx(2.0, rel=1e-3)}


def test_compare_flags_only_real_changes(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    a = fake(BASE)
    slower = {p: dict(v) for p, v in BASE.items()}
    slower["domU"]["null_call"] = [2.8, 2.8, 2.8]  # +17%: a regression
    slower["dom0"]["null_call"] = [1.105, 1.1, 1.1]  # within noise floor
    b = fake(slower)
    rows = {(r["workload"], r["place"]): r for r in bench.compare(a, b)}
    assert rows[("null_call", "domU")]["flag"] == "slower"
    assert rows[("null_call", "dom0")]["flag"] == ""
    assert rows[("mem_bw", "native")]["flag"] == ""
    write_json(tmp_path / "a" / "results.json", a)
    write_json(tmp_path / "b" / "results.json", b)
    assert cli.main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "null call" in out and "slower" in out and "1 change(s) beyond" in out
    assert cli.main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "a")]) == 0


def test_bad_results_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text("{}")
    assert cli.main(["bench", "--compare", str(tmp_path / "x.json"), str(tmp_path)]) == 2
    assert "not a pvkit bench or lifecycle results.json" in capsys.readouterr().err


def test_reports_are_written(tmp_path: Path) -> None:
    data = fake(BASE)
    benchreport.write_all(data, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| null call | us | 0.3000 | 1.100 | 2.400 | 3.67x | 8.00x |" in md
    assert "clock | icount" in md
    text = (tmp_path / "report.txt").read_text()
    assert "clock: icount" in text and "memcpy bw" in text


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plots need the plot extra (pip install .[plot])")
    benchreport.write_all(fake(BASE), tmp_path)
    assert (tmp_path / "relative.png").stat().st_size > 1000
    assert (tmp_path / "micro.png").stat().st_size > 1000
    assert "![relative.png](relative.png)" in (tmp_path / "report.md").read_text()


def test_report_names_the_series_not_its_record(tmp_path: Path) -> None:
    """A build's series is named by its patches in the report, never by pvkit's raw record
    (which holds backup paths)."""
    for profile in ("domU", "dom0"):
        d = tmp_path / profile
        d.mkdir()
        write_json(d / "metadata.json", {"inputs": {
            "config_sha256": "ab" * 32, "base": "tinyconfig",
            "fragments": ["/x/common.config"],
            "series": {"id": "123", "patches": ["0001-pvstat.patch"]}}})
    meta = bench._meta({"info": {"domU_build": str(tmp_path / "domU")}},
                       {"info": {"dom0_build": str(tmp_path / "dom0")}, "command": []},
                       bench.Options())
    assert meta["configs"]["domU"]["series"] == "0001-pvstat.patch"
    data = fake(BASE)
    data["meta"]["configs"] = meta["configs"]
    md = benchreport.markdown(data, [])
    assert "patch series: 0001-pvstat.patch" in md and "backup" not in md


def test_pvh_column_beside_pv(tmp_path: Path) -> None:
    values = {**BASE, "pvh": {"null_call": [0.33, 0.33, 0.33], "mem_bw": [990.0, 990.0, 990.0],
                              "fio_seq_read": [150.0, 150.0, 150.0]}}
    data = fake(values)
    w = data["workloads"]
    assert w["null_call"]["slowdown"]["pvh"] == pytest.approx(1.1, rel=1e-3)
    assert w["fio_seq_read"]["slowdown"]["pvh"] == pytest.approx(200 / 150, rel=1e-3)
    assert benchreport.places(data) == ["native", "dom0", "domU", "pvh"]
    text = benchreport.terminal(data)
    assert "PVH domU slowdown" in text and "1.10x" in text
    md = benchreport.markdown(data, [])
    assert "| null call | us | 0.3000 | 1.100 | 2.400 | 0.3300 | 3.67x | 8.00x | 1.10x |" in md
    # a result set from before PVH has no such column
    assert "PVH" not in benchreport.terminal(fake(BASE)).split("\n", 3)[3]
