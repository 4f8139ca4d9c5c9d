"""The real boot harness: Xen 4.17 + pvkit's dom0 + a PV domU under QEMU (TCG).

These tests build what is missing (warm ccache makes that quick) and boot for real.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pvkit import build, debs, run
from pvkit.errors import PvkitError

pytestmark = pytest.mark.real
DATA = Path(__file__).parent / "data" / "scenarios"


@pytest.fixture(scope="module", autouse=True)
def kernels() -> None:
    build.build("domU")
    build.build("dom0")


def boot(name: str, out: Path) -> dict:
    result = run.run(name, run.Options(accel="tcg", out=out))
    # `pvkit parse` of the run's console log gives the very same results and JUnit
    parsed = run.parse(out / "console.log", name, out / "parsed")
    for file in ("results.json", "junit.xml"):
        live, again = ((d / file).read_text() for d in (out, out / "parsed"))
        if file == "results.json":
            live, again = (json.loads(t) | {"dir": ""} for t in (live, again))
        assert live == again, file
    assert parsed["status"] == result["status"]
    return result


def explain(result: dict) -> str:
    return f"{result['reason']}\n" + "\n".join(result["boot"]["tail"])


@pytest.mark.parametrize("name", ["smoke", "smoke-pvh", "upstream-blk", "upstream-net", "native",
                                  "pvstat"])
def test_scenario_passes(name: str, tmp_path: Path) -> None:
    result = boot(name, tmp_path)
    assert result["status"] == "PASS", explain(result)
    stages = [s["stage"] for s in result["stages"]]
    if name == "native":
        assert stages[:2] == ["kernel", "domU-userspace"] and stages[-1] == "done"
    else:
        for stage in ("xen", "dom0-kernel", "dom0-userspace", "toolstack-up", "domU-created",
                      "domU-kernel", "domU-userspace", "domU-done", "done"):
            assert stage in stages, stages
    suites = ET.parse(tmp_path / "junit.xml").getroot()
    assert all(s.get("failures") == "0" for s in suites)
    assert (tmp_path / "reproducer.sh").read_text().count("qemu-system-x86_64") == 1
    console = (tmp_path / "console.log").read_text()
    assert "PVKIT-DONE" in console


@pytest.mark.parametrize(
    ("scenario", "reason", "evidence"),
    [
        ("domU-panic", "domU kernel panic", "[domU] Kernel panic - not syncing"),
        ("dom0-panic", "dom0 kernel panic", "Kernel panic - not syncing"),
        ("libxl-error", "dom0 libxl error", "libxl: error:"),
        ("hang", "hang: no console output for 15 s after stage 'domU-userspace'", ""),
    ],
)
def test_broken_guest_is_reported(scenario: str, reason: str, evidence: str,
                                  tmp_path: Path) -> None:
    result = boot(str(DATA / f"{scenario}.toml"), tmp_path)
    assert result["status"] == "FAIL"
    assert result["reason"] == reason
    assert any(evidence in line for line in result["boot"]["tail"]), result["boot"]["tail"]
    assert result["wall_s"] < 200  # bounded: stopped by the detector, not by the timeout
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//failure")
    assert failure is not None and failure.get("message") == reason


def test_missing_debian_package_is_named() -> None:
    with pytest.raises(PvkitError, match="Debian package 'pvkit-no-such-package' not found"):
        debs.fetch("pvkit-no-such-package")
