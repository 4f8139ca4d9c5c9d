"""A built kernel carried from a CI build job to the boot jobs as an artifact.

`export` copies what booting and out-of-tree driver builds need from a build directory (the
images, System.map, the installed modules, the configuration, generated headers, scripts and
Module.symvers), without the object files, into a directory a CI artifact can carry, with a
`bundle.json` naming the build. `import_` puts it back where `pvkit build` keeps that build in
this runner's cache, after checking that it is intact and that it is the build this runner's
source, configuration and toolchain call for (the same content key), so a boot job uses the
kernel it was handed or stops with an error that says why.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path
from typing import Any

from pvkit import build as build_mod
from pvkit import progress
from pvkit.errors import PvkitError
from pvkit.paths import cache_dir
from pvkit.util import read_json, replace_dir, sha256_file, write_json

MANIFEST = "bundle.json"
# not needed to boot or to build modules against the tree (kbuild M= reads headers, scripts,
# Module.symvers and the configuration)
EXCLUDE = ("*.o", "*.a", ".*.cmd", "*.mod.c", ".tmp_*", "*.lock")


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if any(fnmatch.fnmatch(n, p) for p in EXCLUDE)}


def _size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*"))


def export(profile: str, dest: Path, tree: str | None = None,
           fragments: list[Path] | None = None) -> dict[str, Any]:
    """Copy the up-to-date build of `profile` (with these extra fragments, as paths the boot
    jobs' checkout has too) into `dest` (replaced if it exists)."""
    fragments = fragments or []
    b = build_mod.find(profile, tree=tree, fragments=fragments)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(b.dir, tmp / b.dir.name, symlinks=True, ignore=_ignore)
        manifest = {"profile": profile, "tree": tree, "fragments": [str(f) for f in fragments],
                    "build": b.dir.name,
                    "content_key": b.metadata["content_key"], "release": b.release,
                    "cache": str(cache_dir()), "bytes": _size(tmp / b.dir.name)}
        write_json(tmp / MANIFEST, manifest)
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress.step(f"bundle {profile}: {manifest['bytes'] / 1e6:.1f} MB in {dest}")
    return manifest | {"dir": str(dest)}


def import_(src: Path) -> dict[str, Any]:
    """Put an exported build into this runner's cache; returns its manifest and status."""
    manifest = read_json(src / MANIFEST)
    if not manifest:
        raise PvkitError(f"{src}: not a pvkit kernel bundle (no {MANIFEST}); make one with "
                         "`pvkit bundle export --profile PROFILE DIR`")
    if manifest["cache"] != str(cache_dir()):
        raise PvkitError(f"{src}: built with PVKIT_CACHE={manifest['cache']}, this runner uses "
                         f"{cache_dir()}; kernel build trees hold absolute paths, so give every "
                         "job the same PVKIT_CACHE")
    payload = src / manifest["build"]
    meta = read_json(payload / "metadata.json") or {}
    for artifact, digest in meta.get("artifacts", {}).items():
        path = payload / artifact
        if not path.exists() or sha256_file(path) != digest:
            raise PvkitError(f"{src}: {artifact} is missing or damaged; re-run the build job")
    final = cache_dir() / "build" / manifest["build"]
    status = "present"
    with build_mod._locked(final):
        here = read_json(final / "metadata.json") if final.exists() else None
        if not here or here.get("content_key") != manifest["content_key"]:
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                shutil.copytree(payload, tmp, symlinks=True)
                replace_dir(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            status = "imported"
    try:
        build_mod.prepare_source(manifest["tree"])  # the source as a build here would see it
        build_mod.find(manifest["profile"], tree=manifest["tree"],
                       fragments=[Path(f) for f in manifest.get("fragments", [])])
    except PvkitError as exc:
        raise PvkitError(f"{src}: this {manifest['profile']} kernel is not the build this "
                         f"runner's source, configuration and toolchain call for ({exc})"
                         ) from exc
    progress.step(f"bundle {manifest['profile']}: {status} ({final})")
    return manifest | {"status": status, "dir": str(final)}
