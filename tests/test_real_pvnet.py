"""pvnet for real: the modules built against both kernels, checkpatch, the pvnet and pvnet-vif
scenarios (Xen boots: three driver pairings, xl-made vifs) and a reduced network bench."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pvkit import build, drivers, iobench, netbench, run

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def kernels() -> dict[str, build.Build]:
    return {p: build.build(p) for p in ("domU", "dom0")}


def test_pvnet_modules_build_for_both_kernels(kernels: dict[str, build.Build]) -> None:
    for profile, kernel in kernels.items():
        b = drivers.build("pvnet", kernel)
        assert set(b.modules) == {"pvnet-front", "pvnet-back"}, profile
        assert all("matches" in m for m in b.metadata["vermagic"].values())
        assert b.metadata["warnings"] == [], b.metadata["warnings"]


def test_pvnet_sources_are_checkpatch_strict_clean() -> None:
    root = build.prepare_source(None).root
    assert drivers.checkpatch("pvnet", root) == []


def cases(result: dict, source: str) -> dict[str, dict]:
    return {c["name"]: c for c in result["ktap"][source]["cases"]}


def test_pvnet_scenario_three_pairings(kernels: dict[str, build.Build], tmp_path: Path) -> None:
    result = run.run("pvnet", run.Options(accel="tcg", out=tmp_path))
    assert result["status"] == "PASS", result["reason"] + "\n" + "\n".join(result["boot"]["tail"])
    domu, dom0 = cases(result, "domU"), cases(result, "dom0")
    for name in ("tcp_download_verified_by_domU", "udp_download_verified_by_domU",
                 "mtu_9000_and_back", "small_packets", "hotplug_seen_in_domU",
                 "rebind_pvnet_front_twice", "reload_pvnet_front", "backend_reload_seen_in_domU",
                 "hostile_frontend"):
        assert domu[name]["status"] == "ok", name
    for name in ("tcp_upload_verified_by_dom0", "udp_upload_verified_by_dom0", "mtu_9000",
                 "reload_pvnet_back", "hostile_frontend_survived"):
        assert dom0[name]["status"] == "ok", name
    hostile = " ".join(domu["hostile_frontend"]["diagnostics"])
    for mode in ("runt", "toobig", "gref", "sizes", "slots", "mcast"):
        assert f"inject {mode} status -1" in hostile, hostile
    for mode in ("split", "zero"):  # the XSA-423/432 and XSA-448 shapes are taken
        assert f"inject {mode} status 0" in hostile, hostile
    for mode in ("pagecross", "chain", "extratype", "gso0", "fatalslots", "prod"):
        assert f"inject {mode}: backend disabled C; C reconnected" in hostile, hostile
    assert " 0 without data" in hostile, hostile  # the stream over B never stopped
    console = (tmp_path / "console.log").read_text()
    assert "is hostile: " in console
    if (dest := os.environ.get("PVKIT_ARTIFACTS")):
        shutil.copy(tmp_path / "console.log", Path(dest) / "pvnet-console.log")


def test_pvnet_vif_scenario(kernels: dict[str, build.Build], tmp_path: Path) -> None:
    """pvnet-back bound to `vif`: xl create and xl network-attach/detach use it."""
    result = run.run("pvnet-vif", run.Options(accel="tcg", out=tmp_path))
    assert result["status"] == "PASS", result["reason"] + "\n" + "\n".join(result["boot"]["tail"])
    assert cases(result, "dom0")["xl_network_attach_detach"]["status"] == "ok"
    assert cases(result, "domU")["second_vif_from_xl"]["status"] == "ok"


def test_reduced_netbench_pvnet_vs_upstream(kernels: dict[str, build.Build],
                                            tmp_path: Path) -> None:
    """One icount repeat of every iperf3 job over both driver pairs and dom0's loopback (the
    full comparison is `pvkit iobench --what net`)."""
    data = iobench.run_suite(netbench.SUITE, iobench.Options(repeats=1, clocks=("icount",),
                                                             out=tmp_path))
    jobs = data["clocks"]["icount"]
    assert list(jobs) == list(netbench.JOBS)
    for name, job in jobs.items():
        assert set(job["places"]) == {"dom0", "upstream", "pvnet"}, name
        assert job["places"]["pvnet"]["median"] > 0, name
        assert job["places"]["upstream"]["median"] > 0, name
    assert (tmp_path / "report.md").read_text().count("pvnet-front/back") == 1
    if (dest := os.environ.get("PVKIT_ARTIFACTS")):
        shutil.copytree(tmp_path, Path(dest) / "netbench", dirs_exist_ok=True)
