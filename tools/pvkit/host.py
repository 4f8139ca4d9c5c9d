"""Host checks (`pvkit doctor`), host set-up (`pvkit setup`) and the accelerator probe."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from pvkit import progress
from pvkit.errors import PvkitError
from pvkit.paths import cache_dir

# what pvkit needs on the host -> the Debian package that provides it
TOOLS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "gcc": "gcc",
    "make": "make",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "perl": "perl",
    "ccache": "ccache",
    "cpio": "cpio",
    "xz": "xz-utils",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
    "mke2fs": "e2fsprogs",
    "depmod": "kmod",
    "mmdebstrap": "mmdebstrap",
    "rsync": "rsync",
    "patch": "patch",  # applies the paravirt_ops series (patches.py)
}
HEADERS: dict[str, str] = {
    "/usr/include/libelf.h": "libelf-dev",
    "/usr/include/openssl/ssl.h": "libssl-dev",
}
MIN_FREE_GB = 15


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    package: str = ""


def checks() -> list[Check]:
    out: list[Check] = []
    for tool, package in TOOLS.items():
        path = shutil.which(tool)
        out.append(Check(tool, path is not None, path or "missing", package))
    for header, package in HEADERS.items():
        ok = Path(header).exists()
        out.append(Check(header, ok, "present" if ok else "missing", package))
    free_gb = shutil.disk_usage(cache_dir()).free / 2**30
    out.append(Check("disk", free_gb >= MIN_FREE_GB,
                     f"{free_gb:.0f} GB free in {cache_dir()} (need {MIN_FREE_GB})"))
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    out.append(Check("/dev/kvm", True, "present (used only if a probe boot works)"
                     if kvm else "absent: TCG will be used"))
    return out


def missing_packages(results: list[Check]) -> list[str]:
    return sorted({c.package for c in results if not c.ok and c.package})


def install_command(packages: list[str]) -> str:
    return "apt-get install -y " + " ".join(packages)


def setup() -> list[str]:
    """Install the missing host packages with apt-get (as root); returns what was installed."""
    packages = missing_packages(checks())
    if not packages:
        progress.step("host set-up: every tool is present")
        return []
    if os.geteuid() != 0:
        raise PvkitError(f"missing host packages; run as root: {install_command(packages)}")
    progress.step(f"installing host packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["apt-get failed"])[-1]
        raise PvkitError(f"apt-get install failed: {last}")
    still = missing_packages(checks())
    if still:
        raise PvkitError(f"still missing after apt-get: {' '.join(still)}")
    return packages


def report(results: list[Check]) -> str:
    width = max(len(c.name) for c in results)
    lines = [f"{'ok ' if c.ok else 'MISSING'} {c.name:<{width}}  {c.detail}" for c in results]
    packages = missing_packages(results)
    if packages:
        lines.append(f"to install: {install_command(packages)}  (or: pvkit setup)")
    return "\n".join(lines)


def as_json(results: list[Check]) -> list[dict[str, object]]:
    return [asdict(c) for c in results]
