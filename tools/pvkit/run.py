"""Run a scenario: assemble what it boots, drive QEMU through the console, record results."""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvkit import build as build_mod
from pvkit import drivers as drivers_mod
from pvkit import images, junit, ktap, programs, progress, qemu, scenarios
from pvkit.console import Monitor
from pvkit.paths import cache_subdir
from pvkit.util import first_line, write_atomic, write_json

# bootscrub=false: by default Xen scrubs free memory in its idle loop after boot, which under
# icount steals guest time from whatever runs on the other vCPU and makes benchmarks noisy
XEN_CMDLINE = ("console=com1 com1=115200,8n1 dom0_mem=768M,max:768M dom0_max_vcpus=1 "
               "bootscrub=false noreboot loglvl=all guest_loglvl=all")
DOM0_CMDLINE = "root=/dev/vda rw rootfstype=ext4 init=/sbin/pvkit-init console=hvc0 " \
               "earlyprintk=xen panic=-1"
NATIVE_CMDLINE = "console=ttyS0 panic=-1 pvkit.mode=native"


@dataclass(frozen=True)
class Options:
    accel: str = "tcg"  # tcg / kvm / auto
    icount: bool = False
    tree: str | None = None
    build_missing: bool = True
    out: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # exported to guest tests (env.sh)
    files: dict[str, bytes] = field(default_factory=dict)  # extra payload files, both guests
    domu_cmdline: str = ""  # appended to the domU (and native) kernel command line


def _builds(scn: scenarios.Scenario, opts: Options) -> dict[str, build_mod.Build]:
    profiles = ["domU"] + (["dom0"] if scn.boot == "xen" or scn.native_kernel == "dom0" else [])
    get = build_mod.build if opts.build_missing else build_mod.find
    return {p: get(p, tree=opts.tree) for p in profiles}


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
            builds: dict[str, build_mod.Build]) -> tuple[qemu.Command, dict[str, Any]]:
    domu = builds["domU"]
    if opts.domu_cmdline:
        scn = dataclasses.replace(scn, domu_cmdline=f"{scn.domu_cmdline} {opts.domu_cmdline}")
    shared = {**payload_extras(opts), **programs.payload(scn.programs)}
    modules = drivers_mod.build_all(scn.drivers, builds)
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
    builds = _builds(scn, opts)
    workdir = run_dir(scn.name, opts.out)
    cmd, info = prepare(scn, opts, workdir, builds)
    write_atomic(workdir / "reproducer.sh", "#!/bin/sh\n# pvkit scenario "
                 f"{scn.name}\n{cmd.shell()}\n")
    (workdir / "reproducer.sh").chmod(0o755)
    monitor = Monitor(mode=scn.boot, stall_s=scn.stall, timeout_s=scn.timeout, allow=scn.allow)
    what = "Xen + dom0 + domU" if scn.boot == "xen" else "native"
    progress.step(f"scenario {scn.name}: booting ({what}, {cmd.argv[cmd.argv.index('-accel') + 1]}"
                  f"{', icount' if opts.icount else ''}); console: {workdir / 'console.log'}")

    def on_stage(stage: str, t: float) -> None:
        progress.step(f"scenario {scn.name}: [{t:7.1f} s] {stage}")

    result = qemu.run(cmd, monitor, workdir / "console.log", on_stage=on_stage)
    (workdir / "scratch.img").unlink(missing_ok=True)
    return record(scn, workdir, result, info, cmd, opts)


def verdict(scn: scenarios.Scenario, result: qemu.RunResult,
            docs: dict[str, ktap.Document]) -> tuple[str, str]:
    if result.verdict is not None:
        return "FAIL", result.verdict.reason
    if result.monitor.done_at is None:
        return "FAIL", f"QEMU exited (status {result.returncode}) before the scenario finished " \
                       f"(last stage '{result.monitor.stage}')"
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


def record(scn: scenarios.Scenario, workdir: Path, result: qemu.RunResult,
           info: dict[str, Any], cmd: qemu.Command, opts: Options) -> dict[str, Any]:
    lines = [line for _, line in result.monitor.lines]
    docs = ktap.parse_console(lines, scn.boot)
    status, reason = verdict(scn, result, docs)
    out: dict[str, Any] = {
        "scenario": scn.name,
        "status": status,
        "reason": reason,
        "wall_s": round(result.wall_s, 2),
        "clock": "icount" if opts.icount else "realtime",
        "accel": cmd.argv[cmd.argv.index("-accel") + 1],
        "qemu": qemu_version(),
        "host": platform.node(),
        "boot": {"status": "PASS" if result.verdict is None and result.monitor.done_at
                 else "FAIL", "reason": reason if result.verdict else "",
                 "tail": result.monitor.tail(40) if status != "PASS" else []},
        "stages": result.monitor.stage_timings(),
        "ktap": {src: {"plan": d.plan, "errors": d.errors,
                       "cases": [{"number": c.number, "name": c.name, "status": c.status,
                                  "reason": c.reason, "diagnostics": c.diagnostics,
                                  "metrics": c.metrics} for c in d.cases]}
                 for src, d in docs.items()},
        "info": info,
        "command": cmd.argv,
        "dir": str(workdir),
        "console_log": str(workdir / "console.log"),
    }
    write_json(workdir / "results.json", out)
    write_atomic(workdir / "junit.xml", junit.to_xml(out))
    return out
