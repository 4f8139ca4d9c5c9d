"""QEMU: machine settings as data, command lines, and a supervised run over the console.

QEMU runs in its own process group; every exit path (success, failure, timeout, Ctrl-C,
SIGTERM) kills that group, so no QEMU outlives pvkit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pvkit import progress
from pvkit.console import Monitor, Verdict, format_line
from pvkit.paths import cache_dir
from pvkit.util import read_json, sha256_file, write_json

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class Machine:
    """One QEMU machine; the same settings serve native, dom0 and domU runs."""

    memory_mb: int = 1536
    smp: int = 2
    cpu: str = "max,-smap,-smep"  # Xen's PV dom0 faults at once under TCG without -smap,-smep
    accel: str = "tcg"
    icount: bool = False

    def args(self) -> list[str]:
        accel = "kvm" if self.accel == "kvm" else "tcg"
        out = ["-accel", accel, "-cpu", "host" if accel == "kvm" else self.cpu,
               "-m", str(self.memory_mb), "-smp", str(self.smp),
               "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
               "-monitor", "none"]
        if self.icount and accel == "tcg":
            out += ["-icount", "shift=0,sleep=off"]
        return out

    @property
    def clock(self) -> str:
        return "icount" if self.icount and self.accel != "kvm" else "realtime"


@dataclass(frozen=True)
class Drive:
    path: Path
    readonly: bool = True
    snapshot: bool = False

    def args(self) -> list[str]:
        opts = f"file={self.path},if=virtio,format=raw"
        if self.snapshot:
            opts += ",snapshot=on"
        elif self.readonly:
            opts += ",readonly=on"
        return ["-drive", opts]


@dataclass(frozen=True)
class XenBoot:
    xen: Path
    dom0_kernel: Path
    xen_cmdline: str
    dom0_cmdline: str


@dataclass(frozen=True)
class NativeBoot:
    kernel: Path
    initrd: Path
    cmdline: str


@dataclass
class Command:
    argv: list[str]
    drives: list[Drive] = field(default_factory=list)

    def shell(self) -> str:
        return shlex.join(self.argv)


def xen_command(machine: Machine, boot: XenBoot, drives: list[Drive]) -> Command:
    # QEMU splits -initrd at commas: the dom0 command line must not contain one unescaped
    module = f"{boot.dom0_kernel} {boot.dom0_cmdline}".replace(",", ",,")
    argv = [QEMU, *machine.args(), "-kernel", str(boot.xen), "-append", boot.xen_cmdline,
            "-initrd", module]
    for d in drives:
        argv += d.args()
    return Command(argv, drives)


def native_command(machine: Machine, boot: NativeBoot, drives: list[Drive]) -> Command:
    argv = [QEMU, *machine.args(), "-kernel", str(boot.kernel), "-initrd", str(boot.initrd),
            "-append", boot.cmdline]
    for d in drives:
        argv += d.args()
    return Command(argv, drives)


@dataclass
class RunResult:
    verdict: Verdict | None
    returncode: int | None
    wall_s: float
    monitor: Monitor


def run(cmd: Command, monitor: Monitor, log_path: Path,
        on_stage: Callable[[str, float], None] | None = None, grace_s: float = 3.0) -> RunResult:
    """Run QEMU, feeding its console to the monitor, until done, failure or timeout."""
    t0 = time.monotonic()
    lines: queue.Queue[str | None] = queue.Queue()
    proc = subprocess.Popen(cmd.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", errors="replace"))
        lines.put(None)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    eof = False
    end_by: float | None = None
    try:
        with log_path.open("w") as log:
            while True:
                now = time.monotonic() - t0
                try:
                    item = lines.get(timeout=0.5)
                except queue.Empty:
                    item = ""
                if item is None:
                    eof = True
                elif item:
                    reached = monitor.feed(now, item)
                    log.write(format_line(now, monitor.lines[-1][1]) + "\n")
                    log.flush()
                    if reached and on_stage:
                        on_stage(reached, now)
                monitor.tick(now)
                if monitor.finished and end_by is None:
                    # keep reading a moment: the lines after a panic or the end marker matter
                    end_by = now + grace_s
                if eof or (end_by is not None and now >= end_by):
                    break
    finally:
        _kill(proc)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    return RunResult(monitor.failure, proc.returncode, time.monotonic() - t0, monitor)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def probe_kvm(kernel: Path, timeout_s: float = 15.0) -> bool:
    """Does a stock kernel get going under KVM here? (A PVM-backed /dev/kvm hangs it.)

    The answer is cached per kernel image, since the probe costs up to `timeout_s`.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    record = cache_dir() / "kvm-probe.json"
    known = read_json(record) or {}
    key = sha256_file(kernel)
    if key in known:
        return bool(known[key])
    progress.step(f"probing KVM with a {timeout_s:.0f} s boot of {kernel.name}")
    machine = Machine(memory_mb=256, smp=1, accel="kvm")
    cmd = [QEMU, *machine.args(), "-kernel", str(kernel),
           "-append", "console=ttyS0 earlyprintk=serial panic=-1"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    ok = False
    try:
        lines: queue.Queue[bytes | None] = queue.Queue()

        def reader() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                raw = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if raw is None:
                break
            if b"Linux version" in raw or b"Kernel panic" in raw:
                ok = True  # the kernel ran far enough to print: KVM works for it
                break
    finally:
        _kill(proc)
    known[key] = ok
    write_json(record, known)
    return ok


def choose_accel(requested: str, kernel: Path) -> str:
    """'tcg' or 'kvm': auto picks KVM only when a probe boot of this kernel succeeds."""
    if requested in ("tcg", "kvm"):
        return requested
    if probe_kvm(kernel):
        return "kvm"
    progress.notice("KVM cannot boot this kernel here (probe failed); using TCG")
    return "tcg"


def with_accel(machine: Machine, accel: str) -> Machine:
    return replace(machine, accel=accel)
