"""drivers.py without a kernel: Kbuild parsing, source selection, cache keys, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvkit import drivers, scenarios
from pvkit.build import Build
from pvkit.errors import PvkitError

FIXTURES = Path(__file__).parent / "data" / "drivers"


def fake_kernel(key: str = "k1") -> Build:
    return Build("domU", Path("/nonexistent"), {"content_key": key,
                                                 "kernel": {"release": "6.1.0"}})


def test_module_names_from_kbuild() -> None:
    text = "# c\nobj-m += a-front.o b.o\nobj-m   +=  c.o\nobj-y += d.o\nb-y := x.o y.o\n"
    assert drivers.module_names(text) == ["a-front", "b", "c"]


@pytest.mark.parametrize("name", ["pvblk", "pvnet"])
def test_kbuild_names_both_ends(name: str) -> None:
    kbuild = (drivers.DRIVERS_DIR / name / "Kbuild").read_text()
    assert drivers.module_names(kbuild) == [f"{name}-front", f"{name}-back"]


def test_every_driver_is_available() -> None:
    assert {"pvblk", "pvnet"} <= set(drivers.available())


def test_validator_is_in_the_backend_only() -> None:
    """The validator is one C file compiled into the backend module (and the fuzz harness)."""
    for name in ("pvblk", "pvnet"):
        kbuild = (drivers.DRIVERS_DIR / name / "Kbuild").read_text()
        assert f"{name}-back-y := {name}_back.o {name}_validate.o" in kbuild
        assert f"{name}_validate" not in kbuild.split(f"{name}-front-y")[1].split("\n")[0]


def test_sources_are_kbuild_and_c_files() -> None:
    names = [p.name for p in drivers.sources(FIXTURES / "pvkhello")]
    assert names == ["Kbuild", "pvkhello.c"]


def test_key_follows_sources_and_kernel(tmp_path: Path) -> None:
    src = tmp_path / "d"
    src.mkdir()
    (src / "Kbuild").write_text("obj-m += d.o\n")
    (src / "d.c").write_text("int x;\n")
    first = drivers.key(src, fake_kernel())
    assert drivers.key(src, fake_kernel()) == first
    assert drivers.key(src, fake_kernel("k2")) != first
    (src / "d.c").write_text("int y;\n")
    edited = drivers.key(src, fake_kernel())
    assert edited != first
    (src / "notes.txt").write_text("not a source")
    assert drivers.key(src, fake_kernel()) == edited  # not a source: same key
    (src / "d.h").write_text("#define X 1\n")
    assert drivers.key(src, fake_kernel()) != edited  # a new header: a new key


def test_unknown_driver_is_named_with_the_known_ones() -> None:
    with pytest.raises(PvkitError, match=r"no driver 'pvblkk'.*known: pvkhello"):
        drivers.source_dir("pvblkk", FIXTURES)


def test_first_error_names_file_and_line() -> None:
    log = "  CC [M]  /x/a.o\n/x/a.c:12:5: error: 'foo' undeclared\nmake[1]: *** Error 1\n"
    assert drivers.first_error(log) == "/x/a.c:12:5: error: 'foo' undeclared"


def test_scenario_drivers_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('boot = "xen"\ndrivers = ["pvblk"]\n')
    assert scenarios.load(path).drivers == ["pvblk"]
    assert scenarios.find("pvblk").drivers == ["pvblk"]
