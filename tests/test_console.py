"""The console monitor against golden console logs recorded from real runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvkit import ktap
from pvkit.console import Monitor, parse_timestamped

GOLDEN = Path(__file__).parent / "data" / "console"

# log file -> (mode, stall, expected failure reason or None, stages that must be seen)
CASES = {
    "native-pass.log": ("native", 60, None, ["kernel", "domU-userspace", "domU-done", "done"]),
    "native-hang.log": ("native", 15,
                        "hang: no console output for 15 s after stage 'domU-userspace'",
                        ["kernel", "domU-userspace"]),
    "xen-smoke-pass.log": ("xen", 90, None,
                           ["xen", "dom0-kernel", "dom0-userspace", "toolstack-up",
                            "domU-created", "domU-kernel", "domU-userspace", "domU-done",
                            "done"]),
    "xen-dom0-panic.log": ("xen", 90, "dom0 kernel panic", ["xen", "dom0-kernel"]),
    "xen-domU-panic.log": ("xen", 90, "domU kernel panic",
                           ["toolstack-up", "domU-created", "domU-kernel"]),
    "xen-libxl-error.log": ("xen", 90, "dom0 libxl error", ["toolstack-up"]),
    # the same passing boot cut short after dom0 reached userspace: silence is a hang
    "xen-hang.log": ("xen", 90, "hang: no console output for 90 s after stage 'toolstack-up'",
                     ["dom0-userspace", "toolstack-up"]),
}


def replay(name: str, mode: str, stall: int) -> Monitor:
    monitor = Monitor(mode=mode, stall_s=stall, timeout_s=600)
    lines = parse_timestamped((GOLDEN / name).read_text())
    assert lines, name
    for t, line in lines:
        monitor.feed(t, line)
        monitor.tick(t)
        if monitor.failure:
            break
    # time goes on after the last line: silence is a hang unless the run is finished
    monitor.tick(lines[-1][0] + stall + 1)
    return monitor


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_log(name: str) -> None:
    mode, stall, reason, stages = CASES[name]
    monitor = replay(name, mode, stall)
    seen = [s for s, _ in monitor.stages]
    for stage in stages:
        assert stage in seen, (stage, seen)
    if reason is None:
        assert monitor.failure is None and monitor.done_at is not None
        docs = ktap.parse_console([line for _, line in monitor.lines], mode)
        assert all(d.passed for d in docs.values()) and docs
    else:
        assert monitor.failure is not None
        assert monitor.failure.reason == reason


def test_overall_timeout() -> None:
    monitor = Monitor(mode="native", stall_s=1000, timeout_s=50)
    for t in range(0, 60, 5):
        monitor.feed(float(t), f"line {t}")
        if monitor.tick(float(t)):
            break
    assert monitor.failure is not None
    assert monitor.failure.reason == "timeout: scenario not done after 50 s (last stage 'start')"


def test_allowed_failure_lines_and_serial_banner() -> None:
    monitor = Monitor(mode="xen", allow=[r"libxl: error: .*expected"])
    monitor.feed(1.0, "(XEN) *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)")
    monitor.feed(2.0, "libxl: error: libxl_foo.c:1: this one is expected")
    assert monitor.failure is None
    monitor.feed(3.0, "# libxl: error: libxl_device.c:1: disk vdev=xvda failed")
    assert monitor.failure is not None and monitor.failure.reason == "dom0 libxl error"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("(XEN) Panic on CPU 0:", "Xen panic"),
        ("[domU] Kernel panic - not syncing: VFS: Unable to mount root fs", "domU kernel panic"),
        ("Kernel panic - not syncing: Attempted to kill init!", "dom0 kernel panic"),
        ("[domU] BUG: unable to handle page fault for address: 0000000000000000",
         "domU kernel BUG"),
        ("Oops: 0000 [#1] PREEMPT SMP", "dom0 kernel Oops"),
        ("PVKIT-FATAL xenstored did not start", "dom0 pvkit fatal"),
    ],
)
def test_failure_lines(line: str, reason: str) -> None:
    monitor = Monitor(mode="xen")
    monitor.feed(1.0, line)
    assert monitor.failure is not None and monitor.failure.reason == reason
    assert monitor.failure.line == line
