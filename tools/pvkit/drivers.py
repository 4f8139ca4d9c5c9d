"""Build pvkit's split drivers (drivers/<name>, Kbuild) out of tree against a built kernel.

A driver build is a cache entry keyed by the driver's sources and the kernel build's content
key: `<cache>/drivers/<name>-<profile>-<key>/` holds a copy of the sources, the objects, the
modules (*.ko) and metadata.json. It is built in a staging directory and committed by rename,
so a failed build leaves nothing behind. Every module's vermagic is checked against the kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvkit import build as build_mod
from pvkit import elf, kconfig, procs, progress
from pvkit.errors import PvkitError
from pvkit.kconfig import assignments_of
from pvkit.paths import DRIVERS_DIR, cache_subdir, require
from pvkit.util import read_json, replace_dir, sha256_file, sha256_text, write_json

RECIPE_VERSION = "1"
SOURCE_SUFFIXES = (".c", ".h")
_WARNING = " warning: "


@dataclass(frozen=True)
class DriverBuild:
    name: str
    profile: str
    dir: Path
    metadata: dict[str, Any]

    @property
    def modules(self) -> dict[str, Path]:
        """Module name (e.g. pvblk-front) -> path of its .ko."""
        return {ko: self.dir / f"{ko}.ko" for ko in self.metadata["modules"]}


def available(directory: Path = DRIVERS_DIR) -> list[str]:
    return sorted(p.name for p in require(directory, "the driver sources (drivers/)").iterdir()
                  if (p / "Kbuild").is_file())


def source_dir(name: str, directory: Path = DRIVERS_DIR) -> Path:
    path = directory / name
    if not (path / "Kbuild").is_file():
        known = ", ".join(available(directory)) or "none"
        raise PvkitError(f"no driver '{name}' (no {path}/Kbuild); known: {known}")
    return path


def sources(src: Path) -> list[Path]:
    """The files a driver build copies: Kbuild and every .c/.h, sorted."""
    return sorted(p for p in src.iterdir()
                  if p.name == "Kbuild" or p.suffix in SOURCE_SUFFIXES)


def module_names(kbuild: str) -> list[str]:
    """Module names from a Kbuild's `obj-m += a.o b.o` lines."""
    names: list[str] = []
    for line in kbuild.splitlines():
        head, sep, tail = line.partition("+=")
        if sep and head.strip() == "obj-m":
            names += [word.removesuffix(".o") for word in tail.split() if word.endswith(".o")]
    return names


def key(src: Path, kernel: build_mod.Build) -> str:
    """The driver's sources and what its build sees of the kernel (the module ABI: a kernel
    edit that changes no header, export or option keeps the driver build)."""
    parts = [f"{p.name}:{sha256_file(p)}" for p in sources(src)]
    abi = kernel.metadata.get("module_abi") or kernel.metadata["content_key"]
    return sha256_text(RECIPE_VERSION, str(abi), *parts)


def _make(kernel: build_mod.Build, moddir: Path) -> list[str]:
    """make for an external module against a kernel build: through the kernel's own source
    tree (not the build directory's Makefile, which names the tree by its build slot)."""
    tree = kernel.metadata["inputs"]["source"]["root"]
    return ["make", "-C", tree, f"O={kernel.dir}", "ARCH=x86_64", f"CC={kconfig.compiler()}",
            f"M={moddir}", "W=1", f"-j{os.cpu_count() or 1}", "modules"]


def build(name: str, kernel: build_mod.Build, *, directory: Path = DRIVERS_DIR) -> DriverBuild:
    """Build (or find in the cache) driver `name` against `kernel`."""
    src = source_dir(name, directory)
    digest = key(src, kernel)
    final = cache_subdir("drivers") / f"{name}-{kernel.profile}-{digest[:16]}"
    meta_path = final / "metadata.json"
    if meta_path.is_file():
        return DriverBuild(name, kernel.profile, final, read_json(meta_path))
    staging = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        meta = _build_in(name, src, kernel, staging, digest)
        write_json(staging / "metadata.json", meta)
        replace_dir(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DriverBuild(name, kernel.profile, final, meta)


def _build_in(name: str, src: Path, kernel: build_mod.Build, out: Path,
              digest: str) -> dict[str, Any]:
    for path in sources(src):
        shutil.copy2(path, out / path.name)
    wanted = module_names((src / "Kbuild").read_text())
    if not wanted:
        raise PvkitError(f"{src}/Kbuild names no module (expected a line 'obj-m += name.o')")
    progress.step(f"drivers {name}: building {', '.join(wanted)} against {kernel.profile} "
                  f"({kernel.release})")
    cmd = _make(kernel, out)
    started = time.monotonic()
    proc = procs.run(cmd, text=True, errors="replace", env={**os.environ, "LC_ALL": "C"})
    log = proc.stdout + proc.stderr
    (out / "build.log").write_text(log)
    if proc.returncode != 0:
        where = first_error(log).replace(f"{out}/", f"{src}/")
        raise PvkitError(f"drivers {name} for {kernel.profile} failed: {where} "
                         f"(build log: make -C {kernel.dir} M=<copy of {src}>)")
    warnings = [line for line in log.splitlines() if _WARNING in line]
    config = assignments_of((kernel.dir / ".config").read_text())
    checks = {}
    for module in wanted:
        ko = out / f"{module}.ko"
        if not ko.is_file():
            raise PvkitError(f"drivers {name}: make succeeded but {ko.name} is missing")
        ok, message = elf.check_module(ko, kernel.release, config,
                                       randstruct_hash=elf.read_randstruct_hash(kernel.dir))
        if not ok:
            raise PvkitError(f"drivers {name}: {message}")
        checks[module] = message
    return {
        "driver": name,
        "profile": kernel.profile,
        "kernel": {"release": kernel.release, "build": str(kernel.dir),
                   "content_key": kernel.metadata["content_key"]},
        "key": digest,
        "modules": wanted,
        "vermagic": checks,
        "sha256": {m: sha256_file(out / f"{m}.ko") for m in wanted},
        "warnings": warnings,
        "duration_s": round(time.monotonic() - started, 2),
        "command": cmd,
    }


def first_error(log: str) -> str:
    """The first compiler error line as gcc printed it (build.ERROR_LINE), else make's."""
    lines = log.splitlines()
    for line in lines:
        if build_mod.ERROR_LINE.match(line):
            return line.strip()
    return next((line.strip() for line in lines if line.startswith("make") and "Error" in line),
                "see build.log")


def build_all(names: list[str],
              kernels: dict[str, build_mod.Build]) -> dict[str, list[DriverBuild]]:
    """Every named driver against every kernel: profile -> builds."""
    return {profile: [build(name, kernel) for name in names]
            for profile, kernel in kernels.items()}


def payload(builds: list[DriverBuild]) -> dict[str, str | bytes]:
    """Payload files for one guest: modules/<module>.ko for every module built."""
    return {f"modules/{module}.ko": path.read_bytes()
            for b in builds for module, path in b.modules.items()}


def checkpatch(name: str, kernel_root: Path, *, directory: Path = DRIVERS_DIR) -> list[str]:
    """Problems `scripts/checkpatch.pl --strict` finds in a driver's C sources ([] if none)."""
    script = kernel_root / "scripts" / "checkpatch.pl"
    if not script.is_file():
        raise PvkitError(f"{script} is missing: run `pvkit source` first")
    problems: list[str] = []
    for path in sources(source_dir(name, directory)):
        if path.suffix not in SOURCE_SUFFIXES:
            continue
        proc = subprocess.run(["perl", str(script), "--strict", "--no-tree", "--terse",
                               "--show-types", "-f", str(path)],
                              capture_output=True, text=True)
        problems += [line for line in proc.stdout.splitlines()
                     if ": ERROR:" in line or ": WARNING:" in line or ": CHECK:" in line]
    return problems
