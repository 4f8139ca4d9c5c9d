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
    with pytest.raises(PvkitError, match=rf"{path}:5: unknown key 'wehre' in \[\[test\]\] #1; "
                       r"did you mean 'where'\?"):
        scenarios.load(path)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'boot = "xen"\ntimeout = = 3\n')
    with pytest.raises(PvkitError, match=r"s.toml: .*line 2"):
        scenarios.load(path)


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(PvkitError, match=r"s.toml:1: boot must be one of"):
        scenarios.load(write(tmp_path, 'boot = "hvm"\n'))
    with pytest.raises(PvkitError, match=r"s.toml:1: 'timeout' must be an integer"):
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


def test_bench_scenarios_load() -> None:
    from pvkit.bench import BENCH_DIR

    files = sorted(BENCH_DIR.glob("*.toml"))
    assert len(files) >= 5
    for path in files:
        scn = scenarios.load(path)
        assert scn.tests, path
        scenarios.render_domu(scn)
        if scn.boot == "xen":
            scenarios.render_dom0(scn)


@pytest.mark.parametrize(("text", "message"), [
    ("allow = [1]\n", r"s.toml:1: 'allow' must be an array of strings; element 1 is 1"),
    ('allow = ["ok", "(unclosed"]\n', r"s.toml:1: 'allow' pattern '\(unclosed' is not a "
     r"regular expression"),
    ("test = [1]\n", r"s.toml:1: 'test' must be an array of tables; element 1 is 1"),
    ('needs = ["iperf3", 2]\n', r"'needs' must be an array of strings; element 2 is 2"),
    ('drivers = ["pvblkk"]\n', r"s.toml:1: no driver 'pvblkk' in drivers/: did you mean "
     r"'pvblk'\?"),
    ('[domU]\nconfig = "disk = []"\n', r"s.toml:2: 'config' must be an array"),
    ('[domU]\nmemory = 64\ntype = "hvm"\n', r"s.toml:3: \[domU\] type 'hvm' needs a device "
     r"model \(qemu-system-xen\) in dom0"),
    ('[domU]\ntype = "kvm"\n', r"s.toml:2: \[domU\] type must be one of \('pv', 'pvh'\)"),
    ('[[test]]\nname = "a"\nrun = "true"\n\n[[test]]\nname = "b"\ntimeout = "x"\n'
     'run = "true"\n', r"s.toml:7: 'timeout' must be an integer"),
    ('[[test]]\nname = "a"\nrun = \'\'\'\nname = 1\n\'\'\'\n[[test]]\nname = "a b"\n'
     'run = "true"\n', r"s.toml:7: test name 'a b' must be"),
    ('[[test]]\nname = "a"\nrun = "true"\n[[test]]\nrun = "true"\n',
     r"s.toml:4: missing required key 'name' in \[\[test\]\] #2"),
])
def test_bad_input_blames_the_right_line(tmp_path: Path, text: str, message: str) -> None:
    """Types are checked when the file is loaded (before any kernel is built), and the line
    named is the one of the offending key, not the first key of that name in the file."""
    with pytest.raises(PvkitError, match=message):
        scenarios.load(write(tmp_path, text))


def test_binary_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"\xff\xfe\x00boot")
    with pytest.raises(PvkitError, match="not a text file"):
        scenarios.load(path)


def test_kernel_fragments_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "smp.config").write_text("CONFIG_SMP=y\n")
    scn = scenarios.load(write(tmp_path, '[kernel]\ndomU = ["smp.config"]\n'
                               '[[test]]\nname = "t"\nrun = "true"\n'))
    assert scenarios.fragments(scn, "domU") == [tmp_path / "smp.config"]
    assert scenarios.fragments(scn, "dom0") == []
    with pytest.raises(PvkitError, match=r"s.toml:3: \[kernel\] dom0: no fragment file "
                       r".*nothere.config"):
        scenarios.load(write(tmp_path, '[kernel]\ndomU = ["smp.config"]\n'
                             'dom0 = ["nothere.config"]\n'))
    with pytest.raises(PvkitError, match=r"s.toml:2: unknown key 'domu' in \[kernel\]; did "
                       r"you mean 'domU'\?"):
        scenarios.load(write(tmp_path, '[kernel]\ndomu = ["smp.config"]\n'))


def test_resize_boots_its_own_domU_kernel() -> None:
    scn = scenarios.find("resize")
    assert [f.name for f in scenarios.fragments(scn, "domU")] == ["smp-balloon.config"]
    cfg = scenarios.render_dom0(scn)["domU.cfg"]
    assert "maxvcpus = 2" in cfg and "maxmem = 512" in cfg and "vcpus = 1" in cfg
