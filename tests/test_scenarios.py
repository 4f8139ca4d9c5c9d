"""Scenario files: the shipped ones load, typos are reported with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvkit import scenarios
from pvkit.errors import PvkitError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_shipped_scenarios_load() -> None:
    names = scenarios.available()
    assert {"smoke", "native", "upstream-blk", "upstream-net"} <= set(names)
    for name in names:
        scn = scenarios.find(name)
        assert scn.tests, name
        files = scenarios.render_domu(scn)
        assert files["domU.sh"].count("pvk_run ") == len(scn.tests_in("domU"))
        if scn.boot == "xen":
            dom0 = scenarios.render_dom0(scn)
            assert "echo PVKIT-DONE" in dom0["dom0.sh"]
            assert 'name = "pvkit-domU"' in dom0["domU.cfg"]


def test_dom0_order_and_builtins() -> None:
    scn = scenarios.find("upstream-blk")
    script = scenarios.render_dom0(scn)["dom0.sh"]
    order = [line.split()[1] for line in script.splitlines() if line.startswith("pvk_run")]
    assert order == ["domU_setup", "domU_create", "block_attach", "block_detach",
                     "domU_tests_done", "backing_file_checksum", "domU_destroy"]
    assert f"pvk_begin upstream-blk.dom0 {len(order)}" in script


def test_dom0_quiet_while_the_domu_runs() -> None:
    files = scenarios.render_dom0(scenarios.find("upstream-blk"))
    script = files["dom0.sh"]
    assert script.index("mount -t tmpfs tmpfs /var/log/xen") < script.index("tail -n +1 -F")
    wait = next(body for body in files.values() if "PVKIT-STAGE domU-done" in body
                and "mkfifo" in body)
    # blocking waiters only: no periodic grep or `xl list` while the domU measures
    assert "sleep 2" not in wait and "xenstore-watch @releaseDomain" in wait


def test_typo_in_key_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'boot = "xen"\n\n[[test]]\nname = "a"\nwehre = "dom0"\nrun = "true"\n')
    with pytest.raises(PvkitError, match=rf"{path}:5: unknown key 'wehre' in \[\[test\]\]; "
                       r"did you mean 'where'\?"):
        scenarios.load(path)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'boot = "xen"\ntimeout = = 3\n')
    with pytest.raises(PvkitError, match=r"s.toml: .*line 2"):
        scenarios.load(path)


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(PvkitError, match=r"s.toml:1: boot must be one of"):
        scenarios.load(write(tmp_path, 'boot = "hvm"\n'))
    with pytest.raises(PvkitError, match=r"s.toml:1: 'timeout' must be a int"):
        scenarios.load(write(tmp_path, 'timeout = "long"\n'))
    with pytest.raises(PvkitError, match=r"a native scenario has no dom0"):
        scenarios.load(write(tmp_path, 'boot = "native"\n[[test]]\nname = "x"\nwhere = "dom0"\n'
                             'run = "true"\n'))
    with pytest.raises(PvkitError, match=r"test name 'x' used twice"):
        scenarios.load(write(tmp_path, '[[test]]\nname = "x"\nrun = "true"\n'
                             '[[test]]\nname = "x"\nrun = "true"\n'))


def test_unknown_scenario_suggests() -> None:
    with pytest.raises(PvkitError, match=r"no scenario 'smok': did you mean 'smoke'\?"):
        scenarios.find("smok")
