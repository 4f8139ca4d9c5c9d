"""A non-editable install (`pip install .`) ships pvkit's data and finds it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json
from pvkit import drivers, paths, patches, scenarios
print(json.dumps({"data": str(paths.REPO_ROOT), "scenarios": scenarios.available(),
                  "series": [e.name for e in patches.read_series()],
                  "drivers": drivers.available(),
                  "bench": sorted(p.name for p in (paths.SCENARIOS_DIR / "bench").glob("*"))}))
"""


def test_non_editable_install_ships_its_data(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet",
                          str(ROOT)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    probe = subprocess.run([str(venv / "bin/python"), "-c", PROBE], capture_output=True,
                           text=True, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["data"].startswith(str(venv)) and found["data"].endswith("pvkit/_data")
    shipped = sorted(p.stem for p in (ROOT / "qemu-tests").glob("*.toml"))
    assert found["scenarios"] == shipped
    assert found["series"] == [line.split()[0] for line in
                               (ROOT / "kernel-patches/series").read_text().splitlines()
                               if line.split("#", 1)[0].strip()]
    assert found["drivers"] == sorted(p.parent.name for p in ROOT.glob("drivers/*/Kbuild"))
    assert "xen.toml" in found["bench"]
    # the installed pvkit runs the kernel's checkpatch on the shipped driver sources
    check = subprocess.run([str(venv / "bin/pvkit"), "drivers", "--checkpatch", "pvblk"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "checkpatch --strict: clean (pvblk)" in check.stdout
