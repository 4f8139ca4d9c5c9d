"""`pvkit parse`: results re-derived from a console log equal the live run's.

The live path is run for real without QEMU: a stand-in plays a golden console log on its
stdout, `qemu.run` supervises it and feeds the monitor live, `run.record` writes results.json
and junit.xml. Then the saved console.log is parsed offline, and the two must agree with each
other, with the live monitor's own verdict and stages, and with what the golden log shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fake_qemu, golden

from pvkit import cli, console, qemu, run, scenarios
from pvkit.errors import PvkitError

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "console"
QUICK_HANG = {"xen": DATA / "parse" / "quick-hang-xen.toml",
              "native": DATA / "parse" / "quick-hang-native.toml"}

# golden log -> (scenario, status, reason of the live run)
CASES = {
    "xen-smoke-pass.log": ("smoke", "PASS", "all tests passed"),
    "native-pass.log": ("native", "PASS", "all tests passed"),
    "xen-dom0-panic.log": ("smoke", "FAIL", "dom0 kernel panic"),
    "xen-domU-panic.log": ("smoke", "FAIL", "domU kernel panic"),
    "xen-libxl-error.log": ("smoke", "FAIL", "dom0 libxl error"),
    "xen-hang.log": (str(QUICK_HANG["xen"]), "FAIL",
                     "hang: no console output for 2 s after stage 'toolstack-up'"),
    "native-hang.log": (str(QUICK_HANG["native"]), "FAIL",
                        "hang: no console output for 2 s after stage 'domU-userspace'"),
}


def live_run(name: str, scenario: str, workdir: Path) -> tuple[dict, qemu.RunResult]:
    scn = scenarios.find(scenario)
    workdir.mkdir()
    cmd = fake_qemu(workdir, golden(name), "sleep 30" if "hang" in name else "")
    result = qemu.run(cmd, run.monitor_for(scn), workdir / "console.log", grace_s=0.2)
    return run.record(scn, workdir, result, {"case": name}, cmd, run.Options()), result


def comparable(results: dict) -> dict:
    """results.json content without where it was written."""
    return {k: v for k, v in results.items() if k not in ("dir",)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_parse_equals_live_run(name: str, tmp_path: Path) -> None:
    scenario, status, reason = CASES[name]
    live, result = live_run(name, scenario, tmp_path / "live")
    assert (live["status"], live["reason"]) == (status, reason)
    # the live monitor reached the same verdict and stages as the replay of its log
    live_reason = result.monitor.failure.reason if result.monitor.failure else None
    assert live_reason == (None if status == "PASS" else reason)
    assert [s["stage"] for s in live["stages"]] == [s for s, _ in result.monitor.stages]
    parsed = run.parse(tmp_path / "live" / "console.log", out=tmp_path / "parsed") \
        if "hang" not in name else \
        run.parse(tmp_path / "live" / "console.log", scenario, tmp_path / "parsed")
    assert comparable(parsed) == comparable(json.loads(json.dumps(live)))
    on_disk = [json.loads((tmp_path / d / "results.json").read_text())
               for d in ("live", "parsed")]
    assert comparable(on_disk[0]) == comparable(on_disk[1])
    assert (tmp_path / "live" / "junit.xml").read_text() == \
        (tmp_path / "parsed" / "junit.xml").read_text()
    assert on_disk[0]["info"] == {"case": name}
    assert on_disk[0]["command"][0].endswith("fake-qemu")


@pytest.mark.parametrize(("name", "scenario", "reason"), [
    ("xen-smoke-pass.log", "smoke", "all tests passed"),
    ("xen-dom0-panic.log", "smoke", "dom0 kernel panic"),
    ("xen-hang.log", "smoke",
     "the console log ends before the scenario finished (last stage 'toolstack-up')"),
])
def test_parse_golden_log_without_end_record(name: str, scenario: str, reason: str,
                                             tmp_path: Path) -> None:
    result = run.parse(GOLDEN / name, scenario, tmp_path)
    assert result["reason"] == reason
    assert result["clock"] == "unknown"  # the context lives in the end record only
    assert (tmp_path / "junit.xml").exists()


def test_scenario_named_by_the_log(tmp_path: Path) -> None:
    # no end record: the KTAP header `# Subtest: smoke.dom0` names it
    assert console.read_log((GOLDEN / "xen-smoke-pass.log").read_text()).scenario == "smoke"
    assert run.parse(GOLDEN / "xen-smoke-pass.log", out=tmp_path)["scenario"] == "smoke"
    with pytest.raises(PvkitError, match="pass --scenario NAME"):
        run.parse(GOLDEN / "xen-dom0-panic.log", out=tmp_path)


def test_cli_parse_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["parse", str(tmp_path / "missing.log")]) == 2
    assert "cannot read console log" in capsys.readouterr().err
    empty = tmp_path / "empty.log"
    empty.write_text("not a console log\n")
    assert cli.main(["parse", str(empty)]) == 2
    assert "no timestamped console lines" in capsys.readouterr().err
    out = tmp_path / "out"
    assert cli.main(["parse", str(GOLDEN / "xen-libxl-error.log"), "--scenario", "smoke",
                     "--out", str(out)]) == 1
    assert "dom0 libxl error" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["status"] == "FAIL"


def test_replay_checks_the_clock_before_each_line() -> None:
    # silence longer than the stall before a line is a hang, as the live loop would see it
    monitor = console.replay(run.Monitor(mode="native", stall_s=5), [
        (1.0, "Linux version 6.1"), (20.0, "late line")], end_s=21.0)
    assert monitor.failure is not None
    assert monitor.failure.reason == "hang: no console output for 5 s after stage 'kernel'"
