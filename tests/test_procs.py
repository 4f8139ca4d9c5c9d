"""Children die with pvkit: real signals sent to real pvkit processes.

A fake kernel tree whose `make bzImage` is a long sleep, and a fake QEMU (a script on PATH),
stand in for the real children so that these tests take seconds; the mechanism under test
(procs: process groups, PR_SET_PDEATHSIG, the guardian) is the one make and QEMU run under.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_profile_tree

from pvkit import procs

ROOT = Path(__file__).resolve().parents[1]


def _pids_with(marker: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            out.append(int(entry.name))
    return out


def _wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _cleanup(proc: subprocess.Popen, marker: str) -> None:
    """Whatever a failed test left: the process under test and the marked sleeps."""
    proc.kill()
    proc.wait()
    for pid in _pids_with(f"sleep {marker}"):
        os.kill(pid, signal.SIGKILL)


def _env(cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PVKIT_CACHE": str(cache), "PYTHONPATH": str(ROOT / "tools"), **extra}


def _slow_tree(tmp_path: Path, marker: str) -> Path:
    """A tree every profile symbol resolves in, whose make runs `sleep <marker>`."""
    tree = write_profile_tree(tmp_path / "tree")
    with (tree / "Makefile").open("a") as handle:
        handle.write(f"\nbzImage modules:\n\tsleep {marker} & sleep {marker}; true\n")
    return tree


def _build(tree: Path, cache: Path, **popen: Any) -> subprocess.Popen:
    """`pvkit build` of the domU profile on `tree`, as a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "pvkit", "build", "--tree", str(tree),
                             "--profile", "domU"], env=_env(cache), **popen)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_make_dies_with_pvkit(sig: signal.Signals, tmp_path: Path) -> None:
    marker = f"{3000 + int(sig)}.{os.getpid() % 1000}"
    tree = _slow_tree(tmp_path, marker)
    pvkit = _build(tree, tmp_path / "cache", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   text=True)
    try:
        assert _wait_for(lambda: len(_pids_with(f"sleep {marker}")) >= 2), \
            "make never started its children"
        pvkit.send_signal(sig)
        try:
            rc = pvkit.wait(timeout=30)
        except subprocess.TimeoutExpired:  # where it is stuck: its stacks (procs, SIGUSR1)
            pvkit.send_signal(signal.SIGUSR1)
            time.sleep(2)
            pvkit.kill()
            _, err = pvkit.communicate()
            pytest.fail(f"pvkit still running 30 s after {sig.name}; its stacks:\n{err[-3000:]}")
        # make and both of its children (one in the background) are gone, whatever the signal
        assert _wait_for(lambda: not _pids_with(f"sleep {marker}"), 10), \
            f"orphans left after {sig.name}: {_pids_with(marker)}"
        if sig != signal.SIGKILL:
            assert rc == 128 + int(sig) if sig != signal.SIGINT else rc == 130
            assert pvkit.stderr is not None and "interrupted" in pvkit.stderr.read()
    finally:
        _cleanup(pvkit, marker)


def test_build_lock_is_held_until_make_is_gone(tmp_path: Path) -> None:
    """The build directory's lock is inherited by make: after SIGKILL of pvkit nobody can take
    it while an orphan could still be writing the build directory."""
    import fcntl

    marker = f"4242.{os.getpid() % 1000}"
    tree = _slow_tree(tmp_path, marker)
    cache = tmp_path / "cache"
    pvkit = _build(tree, cache, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: len(_pids_with(f"sleep {marker}")) >= 2)
        locks = list((cache / "build").glob("domU-*.lock"))
        assert len(locks) == 1
        pvkit.kill()
        pvkit.wait()
        with locks[0].open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # granted only once make's group is dead
            assert not _pids_with(f"sleep {marker}")
    finally:
        _cleanup(pvkit, marker)


FAKE_QEMU = """#!/bin/sh
echo "Linux version 6.1.0 (fake)"
sleep {marker} &
sleep {marker}
"""

QEMU_DRIVER = """
import sys
from pathlib import Path
from pvkit import console, qemu
cmd = qemu.Command([sys.argv[1]])
monitor = console.Monitor(mode="native", stall_s=600, timeout_s=600)
qemu.run(cmd, monitor, Path(sys.argv[2]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_qemu_dies_with_pvkit(sig: signal.Signals, tmp_path: Path) -> None:
    marker = f"5{int(sig):03d}.{os.getpid() % 1000}"
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text(FAKE_QEMU.format(marker=marker))
    fake.chmod(0o755)
    driver = subprocess.Popen([sys.executable, "-c", QEMU_DRIVER, str(fake),
                               str(tmp_path / "console.log")], env=_env(tmp_path / "cache"))
    try:
        assert _wait_for(lambda: len(_pids_with(f"sleep {marker}")) >= 2)
        driver.send_signal(sig)
        driver.wait(timeout=30)
        assert _wait_for(lambda: not _pids_with(f"sleep {marker}"), 10), \
            f"QEMU left behind after {sig.name}"
        assert "Linux version 6.1.0 (fake)" in (tmp_path / "console.log").read_text()
    finally:
        _cleanup(driver, marker)


def test_run_captures_and_reaps(tmp_path: Path) -> None:
    proc = procs.run(["sh", "-c", "echo out; echo err >&2; cat; exit 3"], input="in\n",
                     text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\nin\n", "err\n")


def test_tethered_block_kills_the_group_on_exception(tmp_path: Path) -> None:
    marker = f"6111.{os.getpid() % 1000}"
    with pytest.raises(RuntimeError), procs.tethered(["sh", "-c", f"sleep {marker} & wait"]):
        assert _wait_for(lambda: bool(_pids_with(f"sleep {marker}")))
        raise RuntimeError("boom")
    assert _wait_for(lambda: not _pids_with(f"sleep {marker}"), 5)


def test_in_threads_results_and_errors() -> None:
    assert procs.in_threads([lambda: 1, lambda: 2]) == [1, 2]

    def boom() -> int:
        raise ValueError("second failed")

    with pytest.raises(ValueError, match="second failed"):
        procs.in_threads([lambda: procs.run(["sleep", "0.3"]).returncode, boom])


def test_in_threads_interrupted_kills_the_children() -> None:
    """Ctrl-C while two builds run side by side: their makes die at once, not at their end."""
    marker = f"7123.{os.getpid() % 1000}"

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    t0 = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            procs.in_threads([lambda: procs.run(["sleep", marker]) for _ in range(2)])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - t0 < 10
    assert not _pids_with(f"sleep {marker}")


def test_sigusr1_prints_where_pvkit_is_and_it_goes_on(tmp_path: Path) -> None:
    marker = f"4343.{os.getpid() % 1000}"
    tree = _slow_tree(tmp_path, marker)
    pvkit = _build(tree, tmp_path / "cache", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   text=True)
    try:
        assert _wait_for(lambda: len(_pids_with(f"sleep {marker}")) >= 2)
        pvkit.send_signal(signal.SIGUSR1)
        time.sleep(1)
        assert pvkit.poll() is None  # still building
        pvkit.send_signal(signal.SIGTERM)
        _, err = pvkit.communicate(timeout=30)
        assert "_run_make" in err and "interrupted" in err, err
    finally:
        _cleanup(pvkit, marker)
