"""Debian packages fetched into the cache with apt-get download, unpacked with dpkg-deb.

Nothing is installed into the host: a package lands in `<cache>/debs/` and is unpacked once into
`<cache>/pkgs/<name>_<version>/`, through a temporary directory renamed into place only when
the extraction is complete, so an interrupted run never leaves a half-unpacked package that a
later run would trust.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pvkit import progress
from pvkit.errors import PvkitError
from pvkit.paths import cache_subdir
from pvkit.util import replace_dir, sha256_file

_apt_updated = False


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    deb: Path
    root: Path  # unpacked contents
    sha256: str


def _apt_update() -> None:
    global _apt_updated
    if _apt_updated:
        return
    progress.step("apt-get update (package lists)")
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    _apt_updated = True


def candidate_version(name: str) -> str:
    """The version apt-get would download, or a PvkitError naming the package."""
    for attempt in range(2):
        out = subprocess.run(
            ["apt-cache", "policy", name], capture_output=True, text=True, check=False
        ).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Candidate:") and "(none)" not in line:
                return line.split(":", 1)[1].strip()
        if attempt == 0:
            _apt_update()
    raise PvkitError(
        f"Debian package '{name}' not found by apt; check the name, or run `apt-get update`"
    )


def _deb_path(name: str, version: str) -> Path:
    return cache_subdir("debs") / f"{name}_{version.replace(':', '%3a')}_.deb"


def download(name: str, version: str | None = None) -> Path:
    """The .deb of a package in the cache, downloading it if needed."""
    version = version or candidate_version(name)
    final = _deb_path(name, version)
    if final.exists():
        return final
    progress.step(f"downloading Debian package {name} {version}")
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".dl-") as tmp:
        proc = subprocess.run(
            ["apt-get", "download", "-q", f"{name}={version}"],
            cwd=tmp, capture_output=True, text=True, check=False,
        )
        debs = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            err = (proc.stderr.strip().splitlines() or ["no .deb produced"])[-1]
            raise PvkitError(f"cannot download Debian package '{name}={version}': {err}")
        debs[0].replace(final)
    return final


def fetch(name: str, version: str | None = None) -> Package:
    """Download and unpack a package; reuses a complete earlier unpack."""
    version = version or candidate_version(name)
    root = cache_subdir("pkgs") / f"{name}_{version.replace(':', '%3a')}"
    stamp = root / ".pvkit-complete"
    deb = _deb_path(name, version) if stamp.exists() else download(name, version)
    if not stamp.exists():
        progress.step(f"unpacking {deb.name}")
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
        try:
            proc = subprocess.run(
                ["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                deb.unlink(missing_ok=True)  # likely truncated: download again next time
                raise PvkitError(f"cannot unpack {deb}: {proc.stderr.strip()}; re-run to refetch")
            (tmp / ".pvkit-complete").write_text(sha256_file(deb) + "\n")
            replace_dir(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Package(name, version, deb, root, stamp.read_text().strip())
