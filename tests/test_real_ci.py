"""The CI hand-over for real: a kernel bundle exported from the real dom0 build holds what an
out-of-tree module build needs (the pipelines' boot jobs build drivers/ against it), and
importing it where the build already is changes nothing."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from pvkit import build, bundle, drivers
from pvkit.paths import DRIVERS_DIR

pytestmark = pytest.mark.real


def test_bundle_carries_what_a_driver_build_needs(tmp_path: Path) -> None:
    kernel = build.build("dom0")
    manifest = bundle.export("dom0", tmp_path / "bundle")
    payload = tmp_path / "bundle" / manifest["build"]
    assert not list(payload.rglob("*.o")) and (payload / "Module.symvers").exists()
    assert manifest["bytes"] < 100e6
    moddir = tmp_path / "pvblk"
    shutil.copytree(DRIVERS_DIR / "pvblk", moddir)
    lean = dataclasses.replace(kernel, dir=payload)
    proc = subprocess.run(drivers._make(lean, moddir), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert {p.name for p in moddir.glob("*.ko")} == {"pvblk-front.ko", "pvblk-back.ko"}
    imported = bundle.import_(tmp_path / "bundle")
    assert imported["status"] == "present" and imported["dir"] == str(kernel.dir)
