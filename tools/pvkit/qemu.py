"""QEMU: machine settings as data, command lines, and a supervised run over the console.

QEMU runs tethered to pvkit (`procs`): every exit path (success, failure, timeout, Ctrl-C,
SIGTERM, SIGHUP, even SIGKILL of pvkit) kills its process group, so no QEMU outlives pvkit.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pvkit import procs, progress
from pvkit.console import Monitor, Verdict, format_line
from pvkit.paths import cache_dir
from pvkit.util import flocked, read_json, sha256_file, write_json

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


def _lines_of(child: procs.Child) -> queue.Queue[str | None]:
    """The child's output lines, read by a thread into a queue; None marks the end."""
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            lines.put(raw.decode("utf-8", errors="replace"))
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    return lines


def run(cmd: Command, monitor: Monitor, log_path: Path,
        on_stage: Callable[[str, float], None] | None = None, grace_s: float = 3.0,
        done_grace_s: float = 0.3) -> RunResult:
    """Run QEMU, feeding its console to the monitor, until done, failure or timeout.

    QEMU is tethered to pvkit (procs): whatever ends this function or pvkit itself (a
    failure, Ctrl-C, SIGTERM, SIGHUP, SIGKILL), QEMU's process group is killed."""
    t0 = time.monotonic()
    with procs.tethered(cmd.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT) as child, log_path.open("w") as log:
        lines = _lines_of(child)
        end_by: float | None = None
        while True:
            now = time.monotonic() - t0
            try:
                item = lines.get(timeout=0.5)
            except queue.Empty:
                item = ""
            if item is None:
                break
            if item:
                reached = monitor.feed(now, item)
                log.write(format_line(now, monitor.lines[-1][1]) + "\n")
                log.flush()
                if reached and on_stage:
                    on_stage(reached, now)
            monitor.tick(now)
            if monitor.finished and end_by is None:
                # keep reading a moment: the lines after a panic matter (a backtrace); after
                # the end marker only the shutdown is left, which nobody waits for
                end_by = now + (grace_s if monitor.failure else done_grace_s)
            if end_by is not None and now >= end_by:
                break
        returncode = child.reap()
    return RunResult(monitor.failure, returncode, time.monotonic() - t0, monitor)


def kvm_is_pvm(modules: Path = Path("/sys/module")) -> bool:
    """/dev/kvm backed by kvm_pvm alone (no kvm_intel/kvm_amd): it runs only PVM guests; a
    stock kernel hangs right after real-mode setup (verified here), so there is nothing to
    probe."""
    return (modules / "kvm_pvm").exists() and not any(
        (modules / m).exists() for m in ("kvm_intel", "kvm_amd"))


def probe_kvm(kernel: Path, timeout_s: float = 5.0) -> bool:
    """Does a stock kernel get going under KVM here? (A PVM-backed /dev/kvm hangs it.)

    The answer is cached per kernel image, since the probe costs up to `timeout_s`; the record
    is read and updated under a lock, so concurrent runs neither probe twice nor lose answers.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or kvm_is_pvm():
        return False
    record = cache_dir() / "kvm-probe.json"
    key = sha256_file(kernel)
    with flocked(record.with_name(record.name + ".lock")):
        known = read_json(record) or {}
        if key in known:
            return bool(known[key])
        ok = _probe(kernel, timeout_s)
        write_json(record, {**known, key: ok})
    return ok


def _probe(kernel: Path, timeout_s: float) -> bool:
    progress.step(f"probing KVM with a {timeout_s:.0f} s boot of {kernel.name}")
    machine = Machine(memory_mb=256, smp=1, accel="kvm")
    cmd = [QEMU, *machine.args(), "-kernel", str(kernel),
           "-append", "console=ttyS0 earlyprintk=serial panic=-1"]
    with procs.tethered(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT) as child:
        lines = _lines_of(child)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                raw = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if raw is None:
                break
            if "Linux version" in raw or "Kernel panic" in raw:
                return True  # the kernel ran far enough to print: KVM works for it
    return False


def choose_accel(requested: str, kernel: Path) -> str:
    """'tcg' or 'kvm': auto picks KVM only when a probe boot of this kernel succeeds."""
    if requested in ("tcg", "kvm"):
        return requested
    if probe_kvm(kernel):
        return "kvm"
    why = "/dev/kvm is PVM-backed (kvm_pvm), which runs only PVM guests" if kvm_is_pvm() \
        else "KVM cannot boot this kernel here (probe failed)"
    progress.notice(f"{why}; using TCG")
    return "tcg"


def with_accel(machine: Machine, accel: str) -> Machine:
    return replace(machine, accel=accel)
