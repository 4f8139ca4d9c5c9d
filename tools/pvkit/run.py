"""Run a scenario: assemble what it boots, drive QEMU through the console, record results."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvkit import build as build_mod
from pvkit import (
    console,
    images,
    junit,
    ktap,
    lifecycle,
    procs,
    programs,
    progress,
    qemu,
    scenarios,
)
from pvkit import drivers as drivers_mod
from pvkit import source as source_mod
from pvkit.console import Monitor
from pvkit.errors import PvkitError
from pvkit.paths import cache_subdir
from pvkit.util import first_line, write_atomic, write_json

# bootscrub=false: by default Xen scrubs free memory in its idle loop after boot, which under
# icount steals guest time from whatever runs on the other vCPU and makes benchmarks noisy.
# spec-ctrl=eager-fpu: QEMU's CPU model is an AMD one, which Xen deems safe from LazyFP, so
# by default it switches FPU state lazily (CR0.TS, #NM on first use); under TCG that leaks
# FPU/SSE registers from one vCPU to the next on a physical CPU: once a domain had two vCPUs
# (the resize scenario), glibc's SSE string and memory functions in both dom0 and the domU
# computed wrong pointers (segfaults and general protection faults of xl, tr, tail, busybox
# in 5 of 7 boots); with eager switching, none in any boot since.
XEN_CMDLINE = ("console=com1 com1=115200,8n1 dom0_mem=768M,max:768M dom0_max_vcpus=1 "
               "bootscrub=false spec-ctrl=eager-fpu noreboot loglvl=all guest_loglvl=all")
DOM0_CMDLINE = "root=/dev/vda rw rootfstype=ext4 init=/sbin/pvkit-init console=hvc0 " \
               "earlyprintk=xen panic=-1"
NATIVE_CMDLINE = "console=ttyS0 panic=-1 pvkit.mode=native"


@dataclass(frozen=True)
class Options:
    accel: str = "tcg"  # tcg / kvm / auto
    icount: bool = False
    tree: str | None = None
    fragments: tuple[Path, ...] = ()  # user Kconfig fragments on top of the profiles
    base: str = "tinyconfig"
    build_missing: bool = True
    out: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # exported to guest tests (env.sh)
    files: dict[str, bytes] = field(default_factory=dict)  # extra payload files, both guests
    domu_cmdline: str = ""  # appended to the domU (and native) kernel command line
    domu_type: str | None = None  # boot the scenario's domU as this type (pv, pvh) instead


def _builds(scn: scenarios.Scenario, opts: Options) -> dict[str, build_mod.Build]:
    """The kernels the scenario boots (and only those), built if needed: when both profiles
    need make, the two run side by side, each with half the cores (an incremental build is
    mostly serial: makefile reading, linking, compression)."""
    profiles = scenarios.profiles(scn)
    kernel = {p: {"tree": opts.tree, "base": opts.base,
                  "fragments": [*scenarios.fragments(scn, p), *opts.fragments]}
              for p in profiles}
    if not opts.build_missing:
        return {p: build_mod.find(p, **kernel[p]) for p in profiles}
    stale = [p for p in profiles if not build_mod.up_to_date(p, **kernel[p])]
    if len(stale) < 2:
        return {p: build_mod.build(p, **kernel[p]) for p in profiles}
    jobs = max(1, (os.cpu_count() or 1) // len(stale))
    return dict(zip(stale, procs.in_threads(
        [lambda p=p: build_mod.build(p, **kernel[p], jobs=jobs) for p in stale]), strict=True))


def qemu_version() -> str:
    try:
        return first_line(subprocess.run([qemu.QEMU, "--version"], capture_output=True,
                                         text=True).stdout)
    except FileNotFoundError:
        return "missing"


def run_dir(name: str, out: Path | None) -> Path:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    path = cache_subdir("runs", name) / stamp
    path.mkdir(parents=True, exist_ok=True)
    latest = path.parent / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(path.name)
    return path


def prepare(scn: scenarios.Scenario, opts: Options, workdir: Path,
            builds: dict[str, build_mod.Build],
            modules: dict[str, list[drivers_mod.DriverBuild]]
            ) -> tuple[qemu.Command, dict[str, Any]]:
    domu = builds["domU"]
    if opts.domu_cmdline:
        scn = dataclasses.replace(scn, domu_cmdline=f"{scn.domu_cmdline} {opts.domu_cmdline}")
    if opts.domu_type:
        scn = dataclasses.replace(scn, domu_type=opts.domu_type)
    shared = {**payload_extras(opts), **programs.payload(scn.programs)}
    base_initrd = images.domu_initramfs(domu, tuple(scn.needs))
    domu_files: dict[str, str | bytes] = {**scenarios.render_domu(scn), **shared,
                                          **drivers_mod.payload(modules["domU"])}
    initrd = base_initrd.read_bytes() + images.domu_payload(domu_files, workdir)
    accel = "tcg" if opts.icount else qemu.choose_accel(opts.accel, domu.bzimage)
    machine = qemu.Machine(accel=accel, icount=opts.icount)
    info: dict[str, Any] = {"domU_kernel": domu.release,
                            "domU_build": str(domu.dir),
                            "drivers": {p: [str(b.dir) for b in bs] for p, bs in modules.items()}}
    if scn.boot == "native":
        initrd_path = workdir / "initrd.cpio.gz"
        initrd_path.write_bytes(initrd)
        # under icount the local APIC timer check stalls boot for ~25 s of guest time
        extra = " noapictimer" if opts.icount else ""
        kernel = builds[scn.native_kernel]
        info["native_kernel"] = {"profile": kernel.profile, "build": str(kernel.dir)}
        boot = qemu.NativeBoot(kernel.bzimage, initrd_path,
                               f"{NATIVE_CMDLINE}{extra} {scn.domu_cmdline}".strip())
        return qemu.native_command(machine, boot, native_drives(scn, workdir)), info
    dom0 = builds["dom0"]
    xen, xen_version = images.xen_binary()
    image = images.dom0_image(dom0)
    dom0_files: dict[str, str | bytes] = {**scenarios.render_dom0(scn), **shared,
                                          **drivers_mod.payload(modules["dom0"])}
    payload = images.dom0_payload(dom0_files, domu.vmlinux, initrd, workdir)
    boot = qemu.XenBoot(xen, dom0.bzimage, f"{XEN_CMDLINE} {scn.xen_cmdline}".strip(),
                        f"{DOM0_CMDLINE} {scn.dom0_cmdline}".strip())
    drives = [qemu.Drive(image, snapshot=True), qemu.Drive(payload, readonly=True)]
    if scn.tools:
        drives.append(qemu.Drive(images.tools_tar(tuple(scn.tools)), readonly=True))
    info.update({"dom0_kernel": dom0.release, "dom0_build": str(dom0.dir),
                 "xen": xen_version, "dom0_image": str(image)})
    return qemu.xen_command(machine, boot, drives), info


def native_drives(scn: scenarios.Scenario, workdir: Path) -> list[qemu.Drive]:
    """A native boot's virtio disks: the tools tar (vda), then a blank scratch disk."""
    drives = [qemu.Drive(images.tools_tar(tuple(scn.tools)))] if scn.tools else []
    if scn.native_scratch_mb:
        scratch = workdir / "scratch.img"
        with scratch.open("wb") as handle:
            handle.truncate(scn.native_scratch_mb << 20)
        drives.append(qemu.Drive(scratch, readonly=False))
    return drives


def payload_extras(opts: Options) -> dict[str, str | bytes]:
    """Files both guests get: the environment for tests and any extra programs."""
    env = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(opts.env.items()))
    return {"env.sh": env, **opts.files}


def run(name: str, opts: Options) -> dict[str, Any]:
    """Run one scenario for real; returns (and writes) its results."""
    scn = scenarios.find(name)
    t0 = time.monotonic()
    with source_mod.fingerprints_reused():  # builds read the tree, nothing writes it
        builds = _builds(scn, opts)
    modules = drivers_mod.build_all(scn.drivers, builds)
    t_built = time.monotonic()
    workdir = run_dir(scn.name, opts.out)
    cmd, info = prepare(scn, opts, workdir, builds, modules)
    t_packed = time.monotonic()
    write_atomic(workdir / "reproducer.sh", "#!/bin/sh\n# pvkit scenario "
                 f"{scn.name}\n{cmd.shell()}\n")
    (workdir / "reproducer.sh").chmod(0o755)
    monitor = monitor_for(scn)
    what = "Xen + dom0 + domU" if scn.boot == "xen" else "native"
    progress.step(f"scenario {scn.name}: booting ({what}, {cmd.argv[cmd.argv.index('-accel') + 1]}"
                  f"{', icount' if opts.icount else ''}); console: {workdir / 'console.log'}")

    def on_stage(stage: str, t: float) -> None:
        progress.step(f"scenario {scn.name}: [{t:7.1f} s] {stage}")

    result = qemu.run(cmd, monitor, workdir / "console.log", on_stage=on_stage)
    (workdir / "scratch.img").unlink(missing_ok=True)
    # where the time to a verdict went: kernels and drivers, images and payloads, the boot
    info["phases"] = {"build_s": round(t_built - t0, 2), "pack_s": round(t_packed - t_built, 2),
                      "boot_s": round(result.wall_s, 2)}
    return record(scn, workdir, result, info, cmd, opts)


def verdict(scn: scenarios.Scenario, monitor: Monitor, returncode: int | None,
            docs: dict[str, ktap.Document]) -> tuple[str, str]:
    if monitor.failure is not None:
        return "FAIL", monitor.failure.reason
    if monitor.done_at is None:
        ended = "the console log ends" if returncode is None \
            else f"QEMU exited (status {returncode})"
        return "FAIL", f"{ended} before the scenario finished (last stage '{monitor.stage}')"
    expected = ["domU"] + (["dom0"] if scn.boot == "xen" else [])
    for source in expected:
        doc = docs.get(source)
        if doc is None:
            return "FAIL", f"no KTAP results from {source}"
        failed = [c.name for c in doc.cases if c.status == "not ok"]
        if failed:
            return "FAIL", f"{source} tests failed: {', '.join(failed)}"
        if not doc.complete or doc.errors:
            problems = doc.errors or [f"{len(doc.cases)} of {doc.plan} tests reported"]
            return "FAIL", f"{source} KTAP incomplete: {'; '.join(problems)}"
    return "PASS", "all tests passed"


def monitor_for(scn: scenarios.Scenario) -> Monitor:
    return Monitor(mode=scn.boot, stall_s=scn.stall, timeout_s=scn.timeout, allow=scn.allow)


def record(scn: scenarios.Scenario, workdir: Path, result: qemu.RunResult,
           info: dict[str, Any], cmd: qemu.Command, opts: Options) -> dict[str, Any]:
    """Close the run's console log with its end record, then derive the results from the log
    alone, exactly as `pvkit parse` does later: one path from console to verdict."""
    log = workdir / "console.log"
    context = {
        "clock": "icount" if opts.icount else "realtime",
        "accel": cmd.argv[cmd.argv.index("-accel") + 1],
        "qemu": qemu_version(),
        "host": platform.node(),
        "info": info,
        "command": cmd.argv,
    }
    end = {"scenario": scn.name, "wall_s": round(result.wall_s, 3),
           "returncode": result.returncode, "context": context}
    with log.open("a") as handle:
        handle.write(console.end_line(end) + "\n")
    return write_results(results_of(scn, console.read_log(log.read_text()), log), workdir)


def results_of(scn: scenarios.Scenario, clog: console.ConsoleLog, log: Path) -> dict[str, Any]:
    """A run's results (the content of results.json) from its console log."""
    end = clog.end or {}
    monitor = console.replay(monitor_for(scn), clog.lines, end.get("wall_s"))
    returncode = end.get("returncode")
    lines = [line for _, line in monitor.lines]
    docs = ktap.parse_console(lines, scn.boot)
    status, reason = verdict(scn, monitor, returncode, docs)
    context = end.get("context", {})
    wall = end.get("wall_s", monitor.lines[-1][0] if monitor.lines else 0.0)
    booted = monitor.failure is None and monitor.done_at is not None
    results = {
        "scenario": scn.name,
        "status": status,
        "reason": reason,
        "wall_s": round(wall, 2),
        "clock": context.get("clock", "unknown"),
        "accel": context.get("accel", "unknown"),
        "qemu": context.get("qemu", "unknown"),
        "host": context.get("host", "unknown"),
        "boot": {"status": "PASS" if booted else "FAIL",
                 "reason": monitor.failure.reason if monitor.failure else "",
                 "tail": monitor.tail(40) if status != "PASS" else []},
        "stages": monitor.stage_timings(),
        "ktap": {src: {"plan": d.plan, "errors": d.errors,
                       "cases": [{"number": c.number, "name": c.name, "status": c.status,
                                  "reason": c.reason, "diagnostics": c.diagnostics,
                                  "metrics": c.metrics} for c in d.cases]}
                 for src, d in docs.items()},
        "info": context.get("info", {}),
        "command": context.get("command", []),
        "console_log": str(log),
    }
    rows = lifecycle.workloads(results)  # `pvkit bench --compare` reads these
    return results | {"workloads": rows} if rows else results


def write_results(results: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    results = results | {"dir": str(out)}
    write_json(out / "results.json", results)
    write_atomic(out / "junit.xml", junit.to_xml(results))
    return results


def parse(log: Path, scenario: str | None = None, out: Path | None = None) -> dict[str, Any]:
    """Re-derive results.json and junit.xml from a saved console log (offline, as kunit.py's
    `parse`), into `out` (default: beside the log)."""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        raise PvkitError(f"cannot read console log {log}: {exc.strerror}") from exc
    clog = console.read_log(text)
    if not clog.lines:
        raise PvkitError(f"{log}: no timestamped console lines; is this a console.log pvkit "
                         "wrote?")
    name = scenario or clog.scenario
    if name is None:
        raise PvkitError(f"{log}: the log does not name its scenario (no end record, no KTAP "
                         "header); pass --scenario NAME")
    return write_results(results_of(scenarios.find(name), clog, log),
                         out if out is not None else log.parent)
