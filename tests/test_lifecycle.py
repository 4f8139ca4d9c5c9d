"""Lifecycle rows: a scenario's metrics gathered as `pvkit bench` workloads, compared alike."""

from __future__ import annotations

from typing import Any

from pvkit import bench, lifecycle


def result(scenario: str, **metrics: float) -> dict[str, Any]:
    cases = [{"name": "t", "status": "ok",
              "metrics": {k.replace("__", "."): (v, "x") for k, v in metrics.items()}}]
    return {"scenario": scenario, "ktap": {"dom0": {"cases": cases}}}


def test_rows_from_migration_metrics() -> None:
    r = result("migrate", migrate_s__r1=30.0, migrate_s__r2=34.0, migrate_s__r3=40.0,
               downtime_ms__r1=20000, downtime_ms__r2=24000, downtime_ms__r3=25000,
               xvda__max_stall_ms=900, stream__A__max_gap_ms=27000,
               xvda__bytes_verified=8 << 20, stream__A__bytes=1000, sent_mib__r1=140,
               debug_verify_failed_pfns__busy=12, cpu1_busy_s=3.0)
    w = lifecycle.workloads(r)
    assert set(w) == {"migrate_s", "downtime_ms", "io_max_stall_ms", "bytes_verified",
                      "sent_mib"}  # unrelated metrics (pfns, busy time) are not rows
    assert w["migrate_s"]["places"]["migrate"]["median"] == 34.0
    assert w["migrate_s"]["places"]["migrate"]["values"] == [30.0, 34.0, 40.0]
    assert w["io_max_stall_ms"]["places"]["migrate"]["values"] == [27000]
    assert w["bytes_verified"]["places"]["migrate"]["values"] == [(8 << 20) + 1000]
    text = lifecycle.table(r | {"workloads": w})
    assert "migrate time" in text and "30..40" in text and "downtime" in text


def test_operations_each_a_row() -> None:
    w = lifecycle.workloads(result("resize", mem_set_160_s=2.5, mem_set_384_s=1.5,
                                   vcpu_unplug_s=0.7, save_image_mib=129))
    assert sorted(w) == ["mem_set_160_s", "mem_set_384_s", "save_image_mib", "vcpu_unplug_s"]
    assert w["mem_set_160_s"]["label"] == "mem_set_160 time"
    assert lifecycle.workloads(result("smoke", boot_s=3.0)) == {}


def test_compare_flags_times_not_volumes() -> None:
    a = {"workloads": lifecycle.workloads(result("migrate", migrate_s=30.0, sent_mib=140,
                                                 xvda__bytes_verified=1000))}
    b = {"workloads": lifecycle.workloads(result("migrate", migrate_s=45.0, sent_mib=280,
                                                 xvda__bytes_verified=500))}
    flags = {r["workload"]: r["flag"] for r in bench.compare(a, b)}
    assert flags == {"migrate_s": "slower", "sent_mib": "", "bytes_verified": ""}
