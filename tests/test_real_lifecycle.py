"""Domain lifecycle for real: `xl save -c`, `xl save` + `xl restore` and localhost live
migration with I/O in flight on all four frontends (pvblk-front, xen-blkfront, pvnet-front,
xen-netfront), every block and every byte verified; memory and vCPU resize under load; reboot;
and a deliberately broken pvblk-front (module parameter resume_drop_inflight) is caught by the
same scenario."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pvkit import build, run

pytestmark = pytest.mark.real
DISKS = ("vbd-51712", "pvblk-1", "vbd-51728")  # xen-blkfront, pvblk-front, xen-blkfront


@pytest.fixture(scope="module", autouse=True)
def kernels() -> None:
    build.build("domU")
    build.build("dom0")


def cases(result: dict, source: str) -> dict[str, dict]:
    return {c["name"]: c for c in result["ktap"][source]["cases"]}


def explain(result: dict) -> str:
    return result["reason"] + "\n" + "\n".join(result["boot"]["tail"])


def metric(case: dict, name: str) -> float:
    return float(case["metrics"][name][0])


def assert_everything_verified(domu: dict[str, dict], dom0: dict[str, dict],
                               blocks: str, files: str) -> None:
    for disk in DISKS:
        assert metric(domu[blocks], f"{disk}.bytes_verified") == 8 << 20, disk
        assert metric(domu[blocks], f"{disk}.passes") >= 2, disk
    for image in ("xvda.img", "pvblk1.img", "xvdb.img"):
        assert metric(dom0[files], f"{image}.bytes_verified") == 8 << 20, image
    for where in (domu[blocks], dom0[files]):
        for stream in ("A", "B"):
            assert metric(where, f"stream.{stream}.bytes") > 0, stream


def test_save_restore_with_io_in_flight(tmp_path: Path) -> None:
    result = run.run("save-restore", run.Options(accel="tcg", out=tmp_path))
    assert result["status"] == "PASS", explain(result)
    domu, dom0 = cases(result, "domU"), cases(result, "dom0")
    assert_everything_verified(domu, dom0, "blocks_and_streams_verified",
                               "backing_files_and_streams_verified")
    for name in ("checkpoint_s", "checkpoint_image_mib"):
        assert metric(dom0["checkpoint"], name) > 0, name
    for name in ("save_s", "restore_s", "reattach_s", "save_image_mib"):
        assert metric(dom0["save_restore"], name) > 0, name
    # requests were on pvblk-back's ring at the suspend and were sent again
    io = " ".join(domu["io_across_checkpoint_and_restore"]["diagnostics"])
    assert "resume_dropped 0" in io and "resume_requeued 0" not in io, io


def test_live_migration_with_io_in_flight(tmp_path: Path) -> None:
    # CI migrates once plainly (then twice with --debug); PVK_MIGRATE_REPEATS=10 for OSSTest's
    # localmigrate x10
    repeats = int(os.environ.get("PVK_MIGRATE_REPEATS", "1"))
    result = run.run("migrate", run.Options(accel="tcg", out=tmp_path,
                                            env={"PVK_MIGRATE_REPEATS": str(repeats)}))
    assert result["status"] == "PASS", explain(result)
    domu, dom0 = cases(result, "domU"), cases(result, "dom0")
    assert_everything_verified(domu, dom0, "blocks_and_streams_verified",
                               "backing_files_and_streams_verified")
    numbers = dom0["migration_numbers"]
    for k in range(1, repeats + 3):  # the plain migrations, then the two --debug ones
        assert metric(numbers, f"migrate_s.r{k}") > 0, k
        assert f"downtime_ms.r{k}" in numbers["metrics"], k
    # the --debug migrations count the pages written after the suspend (reported, not judged)
    for kind in ("busy", "quiet"):
        assert metric(dom0["migrations"], f"debug_verify_failed_pfns.{kind}") >= 0, kind
    # the lifecycle table: one row per measure, a value per migration where there are several
    rows = result["workloads"]
    for name in ("migrate_s", "downtime_ms", "sent_mib"):
        assert len(rows[name]["places"]["migrate"]["values"]) == repeats + 2, name
    # a 128 MiB guest's stream holds its memory at least once
    assert min(rows["sent_mib"]["places"]["migrate"]["values"]) > 100
    assert rows["bytes_verified"]["places"]["migrate"]["median"] > 6 * (8 << 20)


def test_broken_resume_fails_the_checksums(tmp_path: Path) -> None:
    """pvblk-front with resume_drop_inflight=1 reports the requests that were on the old ring
    as done without sending them again, and the same scenario must say FAIL with the block
    check failing: the writer reads each pass back, so a lost write (the block still holds
    the pass before) or a lost read (the buffer holds what it held before) is found in the
    pass it happened in; a lost write is in dom0's backing file too."""
    result = run.run("save-restore", run.Options(
        accel="tcg", out=tmp_path, env={"PVK_PVBLK_FRONT_ARGS": "resume_drop_inflight=1"}))
    assert result["status"] == "FAIL", explain(result)
    domu, dom0 = cases(result, "domU"), cases(result, "dom0")
    io = " ".join(domu["io_across_checkpoint_and_restore"]["diagnostics"])
    assert "resume_dropped 0" not in io and "resume_requeued 0" in io, io
    check = domu["blocks_and_streams_verified"]
    assert check["status"] == "not ok"
    found = " ".join(check["diagnostics"])
    bad = re.findall(r"pvblk-1: writer: pass (\d+): block (\d+) holds pass (\d+) block (\d+)",
                     found)
    assert bad, found
    lost_writes = [b for b in bad if int(b[2]) == int(b[0]) - 1 and b[1] == b[3]]
    lost_reads = [b for b in bad if b[0] == b[2] and b[1] != b[3]]
    assert len(lost_writes) + len(lost_reads) == len(bad), bad
    # only pvblk-1 lost requests: the other disks verify
    for disk in ("vbd-51712", "vbd-51728"):
        assert f"{disk}: verified 8388608 bytes, 0 bad blocks" in found, found
        assert f"{disk}: writer:" not in found, found
    files = " ".join(dom0["backing_files_and_streams_verified"]["diagnostics"])
    if lost_writes:
        assert dom0["backing_files_and_streams_verified"]["status"] == "not ok"
        assert re.search(r"pvblk1\.img: verified 8388608 bytes, [1-9]\d* bad blocks", files), files


def test_a_guest_that_cannot_suspend_fails_clearly(tmp_path: Path) -> None:
    """A domU whose suspend fails (a task in uninterruptible sleep longer than the freezer
    waits): `xl save` fails, and the run FAILs at once with libxl's reason, not at its time
    limit."""
    result = run.run("save-restore", run.Options(
        accel="tcg", out=tmp_path, env={"PVK_SUSPEND_BLOCKER": "1"}))
    assert result["status"] == "FAIL", explain(result)
    text = explain(result)
    assert "libxl error" in result["reason"], text
    assert "did not suspend" in text or "suspend" in text.split("libxl: error", 1)[-1], text
    assert result["wall_s"] < 400, result["wall_s"]  # far below the scenario's 900 s


def test_reboot_and_shutdown_create(tmp_path: Path) -> None:
    """xl reboot, then xl shutdown + xl create: every device reconnects with its data, and
    nothing of the old domid is left in dom0."""
    result = run.run("reboot", run.Options(accel="tcg", out=tmp_path))
    assert result["status"] == "PASS", explain(result)
    dom0 = cases(result, "dom0")
    assert metric(dom0["xl_reboot"], "reboot_s") > 0
    assert metric(dom0["xl_shutdown_and_create"], "create_to_up_s") > 0
    for test in ("xl_reboot", "xl_shutdown_and_create"):
        told = " ".join(dom0[test]["diagnostics"])
        assert "nothing of domain " in told and " left in dom0" in told, told


def test_resize_memory_and_vcpus_under_load(tmp_path: Path) -> None:
    """xl mem-set down, up beyond the boot size and back, a target above maxmem refused; xl
    vcpu-set 1 -> 2 -> 1 with the new vCPU onlined by the guest and used; the rig's I/O and a
    memory workload verified afterwards. The domU kernel is its own build (SMP, balloon)."""
    result = run.run("resize", run.Options(accel="tcg", out=tmp_path))
    assert result["status"] == "PASS", explain(result)
    assert result["info"]["domU_build"] != str(build.find("domU").dir)  # [kernel] fragments
    domu, dom0 = cases(result, "domU"), cases(result, "dom0")
    assert_everything_verified(domu, dom0, "blocks_streams_and_memory_verified",
                               "backing_files_and_streams_verified")
    balloon = domu["balloon_under_load"]
    assert metric(balloon, "balloon_min_mib") <= 160 and metric(balloon, "balloon_max_mib") >= 384
    for target in (160, 384, 256):
        assert metric(dom0["mem_set"], f"mem_set_{target}_s") > 0, target
    assert "xl mem-set 1024m refused" in " ".join(dom0["mem_set"]["diagnostics"])
    assert metric(domu["vcpu_hotplug_under_load"], "cpu1_busy_s") >= 1.0
    assert metric(domu["blocks_streams_and_memory_verified"], "mem.passes") >= 2
    assert {"mem_set_160_s", "vcpu_unplug_s", "io_max_stall_ms"} <= set(result["workloads"])
