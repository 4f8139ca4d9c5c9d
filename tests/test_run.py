"""qemu.run with a fake QEMU, run.verdict and run.record, junit, images.needed_libraries."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import fake_qemu, golden

from pvkit import images, junit, ktap, qemu, run, scenarios
from pvkit.console import Monitor, parse_timestamped
from pvkit.errors import PvkitError


def scenario(name: str) -> scenarios.Scenario:
    return scenarios.find(name)


def test_run_passes_a_recorded_smoke_boot(tmp_path: Path) -> None:
    cmd = fake_qemu(tmp_path, golden("xen-smoke-pass.log"), "sleep 30")
    stages: list[str] = []
    result = qemu.run(cmd, Monitor(mode="xen", stall_s=20, timeout_s=60),
                      tmp_path / "console.log", on_stage=lambda s, t: stages.append(s),
                      grace_s=0.5)
    assert result.verdict is None and result.monitor.done_at is not None
    assert result.wall_s < 20  # ended by the done marker, not by the fake's sleep
    assert stages[0] == "xen" and stages[-1] == "done"
    logged = parse_timestamped((tmp_path / "console.log").read_text())
    assert [line for _, line in logged][:3] == golden("xen-smoke-pass.log")[:3]
    out = run.record(scenario("smoke"), tmp_path, result, {}, cmd, run.Options())
    assert (out["status"], out["reason"]) == ("PASS", "all tests passed")
    suites = ET.parse(tmp_path / "junit.xml").getroot()
    assert {s.get("name") for s in suites} == {"smoke.boot", "smoke.dom0", "smoke.domU"}
    assert all(s.get("failures") == "0" for s in suites)


def test_run_stops_at_a_panic_and_keeps_the_tail(tmp_path: Path) -> None:
    cmd = fake_qemu(tmp_path, golden("xen-domU-panic.log"), "sleep 30")
    result = qemu.run(cmd, Monitor(mode="xen", stall_s=20, timeout_s=60),
                      tmp_path / "console.log", grace_s=0.5)
    assert result.verdict is not None and result.verdict.reason == "domU kernel panic"
    out = run.record(scenario("smoke"), tmp_path, result, {}, cmd, run.Options())
    assert out["status"] == "FAIL" and out["reason"] == "domU kernel panic"
    assert any("Kernel panic" in line for line in out["boot"]["tail"])
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//failure")
    assert failure is not None and failure.get("message") == "domU kernel panic"


def test_run_detects_a_silent_guest(tmp_path: Path) -> None:
    cmd = fake_qemu(tmp_path, golden("native-pass.log")[:40], "sleep 30")
    result = qemu.run(cmd, Monitor(mode="native", stall_s=2, timeout_s=60),
                      tmp_path / "console.log", grace_s=0.2)
    assert result.verdict is not None and result.verdict.reason.startswith(
        "hang: no console output for 2 s")
    assert result.wall_s < 10


def test_qemu_exiting_early_is_a_failure(tmp_path: Path) -> None:
    cmd = fake_qemu(tmp_path, golden("native-pass.log")[:40], "exit 3")
    result = qemu.run(cmd, Monitor(mode="native", stall_s=20, timeout_s=60),
                      tmp_path / "console.log")
    assert result.returncode == 3
    status, reason = run.verdict(scenario("native"), result.monitor, result.returncode, {})
    assert status == "FAIL"
    assert reason == ("QEMU exited (status 3) before the scenario finished (last stage "
                      "'kernel')")


def _verdict_of(lines: list[str], scn: str = "smoke") -> tuple[str, str]:
    monitor = Monitor(mode="xen")
    for i, line in enumerate(lines):
        monitor.feed(float(i), line)
    monitor.feed(len(lines), "PVKIT-DONE")
    return run.verdict(scenario(scn), monitor, 0, ktap.parse_console(lines, "xen"))


DOM0_OK = ["KTAP version 1", "1..1", "ok 1 a"]


def test_verdict_rules() -> None:
    domu_ok = ["[domU] KTAP version 1", "[domU] 1..1", "[domU] ok 1 b"]
    assert _verdict_of(DOM0_OK + domu_ok) == ("PASS", "all tests passed")
    assert _verdict_of(DOM0_OK) == ("FAIL", "no KTAP results from domU")
    assert _verdict_of(domu_ok) == ("FAIL", "no KTAP results from dom0")
    failed = ["[domU] KTAP version 1", "[domU] 1..2", "[domU] ok 1 b", "[domU] not ok 2 c"]
    assert _verdict_of(DOM0_OK + failed) == ("FAIL", "domU tests failed: c")
    short = ["[domU] KTAP version 1", "[domU] 1..3", "[domU] ok 1 b"]
    assert _verdict_of(DOM0_OK + short) == ("FAIL", "domU KTAP incomplete: 1 of 3 tests "
                                            "reported")


def test_junit_counts_missing_tests_as_failures() -> None:
    result = {"scenario": "s", "wall_s": 1.5, "boot": {"status": "FAIL", "reason": "hang",
                                                       "tail": ["last line"]},
              "ktap": {"domU": {"plan": 3, "errors": [], "cases": [
                  {"number": 1, "name": "a", "status": "ok", "reason": "", "diagnostics": [],
                   "metrics": {"x": (1.0, "ms")}},
                  {"number": 2, "name": "b", "status": "skip", "reason": "why",
                   "diagnostics": [], "metrics": {}}]}}}
    root = ET.fromstring(junit.to_xml(result).split("\n", 1)[1])
    boot, domu = root.findall("testsuite")
    assert boot.get("failures") == "1" and boot.find(".//failure").text == "last line"
    assert (domu.get("tests"), domu.get("failures"), domu.get("skipped")) == ("3", "1", "1")
    names = [tc.get("name") for tc in domu.findall("testcase")]
    assert names == ["a", "b", "missing-3"]
    prop = domu.find(".//property")
    assert prop is not None and (prop.get("name"), prop.get("value")) == ("x", "1.0 ms")


def test_needed_libraries_follow_needed_and_runpath(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    root = tmp_path / "root"
    (root / "opt/app/lib").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (tmp_path / "lib.c").write_text("int helper(void) { return 7; }\n")
    (tmp_path / "main.c").write_text("int helper(void);\nint main(void) { return helper(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(root / "opt/app/lib/libhelp.so"),
                    str(tmp_path / "lib.c")], check=True)
    subprocess.run(["gcc", "-o", str(root / "usr/bin/app"), str(tmp_path / "main.c"),
                    f"-L{root}/opt/app/lib", "-lhelp", "-Wl,-rpath,$ORIGIN/../../opt/app/lib"],
                   check=True)
    for lib in images.needed_libraries(Path("/bin/ls"), Path("/")):
        if lib.name.startswith("libc.so"):
            break
    else:
        raise AssertionError("libc not found for /bin/ls")
    # the system libraries of the program, made present in the fake root
    for lib in images.needed_libraries(Path("/bin/true"), Path("/")):
        dest = root / str(lib).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dest)
    found = {p.name: p for p in images.needed_libraries(root / "usr/bin/app", root)}
    assert found["libhelp.so"].resolve() == root / "opt/app/lib/libhelp.so"  # $ORIGIN RUNPATH
    assert any(name.startswith("libc.so") for name in found)
    (root / "opt/app/lib/libhelp.so").unlink()
    with pytest.raises(PvkitError, match=r"shared library libhelp.so not found in"):
        images.needed_libraries(root / "usr/bin/app", root)


def test_builds_run_side_by_side_only_when_both_need_make(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import threading

    from pvkit import build as build_mod

    stale = {"domU", "dom0"}
    calls: list[tuple[str, int | None, str]] = []

    def fake_build(profile: str, **kw: object) -> str:
        calls.append((profile, kw.get("jobs"), threading.current_thread().name))  # type: ignore
        return f"built {profile}"

    monkeypatch.setattr(build_mod, "up_to_date", lambda p, **kw: p not in stale)
    monkeypatch.setattr(build_mod, "build", fake_build)
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    got = run._builds(scenario("smoke"), run.Options())
    assert got == {"domU": "built domU", "dom0": "built dom0"}
    assert {(p, j) for p, j, _ in calls} == {("domU", 1), ("dom0", 1)}
    assert all(t != "MainThread" for _, _, t in calls)  # side by side, in threads
    calls.clear()
    stale = {"dom0"}
    run._builds(scenario("smoke"), run.Options())
    assert sorted((p, j) for p, j, _ in calls) == [("dom0", None), ("domU", None)]
    calls.clear()
    run._builds(scenario("native"), run.Options())
    assert [p for p, _, _ in calls] == ["domU"]  # a native scenario boots the domU kernel only


def test_scenario_fragments_come_before_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvkit import build as build_mod

    seen: dict[str, list[str]] = {}

    def fake_build(profile: str, **kw: object) -> str:
        seen[profile] = [Path(str(f)).name for f in kw["fragments"]]  # type: ignore[attr-defined]
        return profile

    monkeypatch.setattr(build_mod, "up_to_date", lambda p, **kw: True)
    monkeypatch.setattr(build_mod, "build", fake_build)
    run._builds(scenario("resize"), run.Options(fragments=(Path("mine.config"),)))
    assert seen == {"domU": ["smp-balloon.config", "mine.config"], "dom0": ["mine.config"]}


def test_domu_payload_ends_so_that_libxc_loads_it_as_it_is(tmp_path: Path) -> None:
    """libxc gunzips a gzip ramdisk (the first member only) when the length in its last four
    bytes is at least the file's size: the payload must end with zeros so that it never
    does, however large the payload is."""
    import gzip
    import os as _os

    from pvkit import images

    base = gzip.compress(b"0707" + b"x" * 100)
    payload = images.domu_payload({"bin/big": _os.urandom(1 << 16) * 8, "domU.sh": "true\n"},
                                  tmp_path)
    initrd = base + payload
    assert int.from_bytes(initrd[-4:], "little") < len(initrd)  # libxc: "looks insane"
    assert payload.endswith(images.INITRD_TAIL)
    unpacked = gzip.decompress(payload[:-len(images.INITRD_TAIL)])
    assert b"pvkit/domU.sh" in unpacked
