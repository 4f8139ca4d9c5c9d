"""Debian packages fetched into the cache with apt-get download, unpacked with dpkg-deb.

Nothing is installed into the host: a package lands in `<cache>/debs/` and is unpacked once into
`<cache>/pkgs/<name>_<version>/`, through a temporary directory renamed into place only when
the extraction is complete, so an interrupted run never leaves a half-unpacked package that a
later run would trust.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pvkit import progress
from pvkit.errors import PvkitError
from pvkit.paths import cache_dir, cache_subdir
from pvkit.util import replace_dir, sha256_file, sha256_text, write_json

_apt_updated = False
# what apt's answer depends on: its package lists, sources and preferences
APT_STATE = (Path("/var/lib/apt/lists"), Path("/etc/apt/sources.list"),
             Path("/etc/apt/sources.list.d"), Path("/etc/apt/preferences"),
             Path("/etc/apt/preferences.d"))


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


def _apt_state() -> str:
    """The sizes and modification times of what `apt-cache policy` reads."""
    parts = []
    for path in APT_STATE:
        entries = sorted(path.iterdir()) if path.is_dir() else [path]
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            parts.append(f"{entry}:{st.st_size}:{st.st_mtime_ns}")
    return sha256_text(*parts)


def _memo_file() -> Path:
    return cache_dir() / "apt-candidates.json"


def candidate_version(name: str) -> str:
    """The version apt-get would download, or a PvkitError naming the package. Answers are
    remembered (apt-candidates.json in the cache) while apt's lists and settings stay the same:
    asking apt-cache costs half a second, on every run of the loop."""
    state = _apt_state()
    try:
        memo = json.loads(_memo_file().read_text())
    except (OSError, ValueError):
        memo = None
    known = memo.get("candidates") if isinstance(memo, dict) and \
        memo.get("apt_state") == state else None
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(name), str):
        return known[name]
    version = _ask_apt(name)
    if _apt_state() == state:  # not remembered across an apt-get update it made
        with contextlib.suppress(OSError):  # a read-only cache only costs the next run time
            write_json(_memo_file(), {"apt_state": state,
                                      "candidates": {**known, name: version}})
    return version


def _ask_apt(name: str) -> str:
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
