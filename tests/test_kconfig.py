"""kconfig: fragment parsing, resolution and the explanations of unmet requests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pvkit import kconfig, source
from pvkit.errors import PvkitError


@pytest.fixture(scope="module")
def tree() -> source.Source:
    return source.from_tree(Path(__file__).parent / "data" / "kconfig-tree")


def frag(tmp_path: Path, text: str, name: str = "frag.config") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def resolve(tree: source.Source, *paths: Path) -> kconfig.Resolved:
    return kconfig.resolve(tree, None, list(paths), base="allnoconfig")


def test_bare_modules_attribute_is_parsed(tree: source.Source) -> None:
    kconf = kconfig.load(tree)
    assert kconf.modules.name == "MODULES"
    assert "9.8.7-fixture" in kconf.mainmenu_text


def test_requested_values_hold(tree: source.Source, tmp_path: Path) -> None:
    f = frag(tmp_path, "CONFIG_MODULES=y\nCONFIG_XEN=y\nCONFIG_ACPI=y\nCONFIG_PCI=y\n"
             "CONFIG_XEN_BACKEND=y\nCONFIG_XEN_BLKDEV_BACKEND=m\nCONFIG_LOG_BUF_SHIFT=14\n"
             'CONFIG_LOCALVERSION="-pv"\n# CONFIG_EXPERT is not set\n')
    r = resolve(tree, f)
    values = kconfig.assignments_of(r.text)
    assert values["XEN_DOM0"] == "y"
    assert values["XEN_BLKDEV_BACKEND"] == "m"
    assert values["LOG_BUF_SHIFT"] == "14"
    assert values["LOCALVERSION"] == '"-pv"'
    assert r.requested["EXPERT"] == "n"


def test_unmet_dependency_is_explained_recursively(tree: source.Source, tmp_path: Path) -> None:
    f = frag(tmp_path, "CONFIG_XEN=y\nCONFIG_XEN_BACKEND=y\n")
    with pytest.raises(PvkitError) as exc:
        resolve(tree, f)
    msg = str(exc.value)
    assert f"{f}:2: CONFIG_XEN_BACKEND=y did not hold: depends on XEN_DOM0; XEN_DOM0=n" in msg
    assert re.search(r"CONFIG_XEN_DOM0=y did not hold: depends on XEN && ACPI && PCI; .*"
                     r"ACPI=n", msg)
    assert "PCI=n" in msg
    assert "add CONFIG_ACPI=y" in msg and "add CONFIG_PCI=y" in msg


def test_prompt_condition_is_explained(tree: source.Source, tmp_path: Path) -> None:
    f = frag(tmp_path, "CONFIG_HIDDEN_TWEAK=y\n")
    with pytest.raises(PvkitError, match=r"CONFIG_HIDDEN_TWEAK=y did not hold: its prompt "
                       r"needs EXPERT; EXPERT=n"):
        resolve(tree, f)


def test_selected_symbol_cannot_be_turned_off(tree: source.Source, tmp_path: Path) -> None:
    f = frag(tmp_path, "CONFIG_SELECTOR=y\n# CONFIG_FORCED is not set\n")
    with pytest.raises(PvkitError, match=r"CONFIG_FORCED=n did not hold: it is y, selected by "
                       r"SELECTOR"):
        resolve(tree, f)


def test_module_without_modules(tree: source.Source, tmp_path: Path) -> None:
    f = frag(tmp_path, "CONFIG_XEN=y\nCONFIG_ACPI=y\nCONFIG_PCI=y\nCONFIG_XEN_BACKEND=y\n"
             "CONFIG_XEN_BLKDEV_BACKEND=m\n")
    with pytest.raises(PvkitError, match=r"CONFIG_XEN_BLKDEV_BACKEND=m did not hold: "
                       r"CONFIG_MODULES=n"):
        resolve(tree, f)


def test_unknown_symbol_names_closest(tree: source.Source, tmp_path: Path) -> None:
    f = frag(tmp_path, "CONFIG_XEN=y\nCONFIG_XEN_DOMO=y\n")
    with pytest.raises(PvkitError, match=rf"{re.escape(str(f))}:2: unknown symbol "
                       r"CONFIG_XEN_DOMO \(closest: CONFIG_XEN_DOM0"):
        resolve(tree, f)


def test_conflicting_fragments_name_both(tree: source.Source, tmp_path: Path) -> None:
    a = frag(tmp_path, "CONFIG_XEN=y\nCONFIG_PCI=y\n", "a.config")
    b = frag(tmp_path, "\n# CONFIG_PCI is not set\n", "b.config")
    with pytest.raises(PvkitError) as exc:
        resolve(tree, a, b)
    assert str(exc.value) == (f"CONFIG_PCI set twice: y at {a}:2, n at {b}:2; keep one")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CONFIG_XEN y\n", r"frag.config:1: malformed line 'CONFIG_XEN y'"),
        ("XEN=y\n", r"frag.config:1: malformed line 'XEN=y'"),
        ("CONFIG_XEN=\n", r"frag.config:1: no value in 'CONFIG_XEN='"),
        ('CONFIG_LOCALVERSION="abc\n', r"frag.config:1: unterminated string"),
        ("CONFIG_XEN=m\n", r"frag.config:1: CONFIG_XEN is bool; value must be y/n, not 'm'"),
        ("CONFIG_LOG_BUF_SHIFT=big\n", r"CONFIG_LOG_BUF_SHIFT is int; 'big' is not a number"),
    ],
)
def test_bad_lines(tree: source.Source, tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PvkitError, match=message):
        resolve(tree, frag(tmp_path, text))


def test_missing_fragment_file(tree: source.Source, tmp_path: Path) -> None:
    with pytest.raises(PvkitError, match=r"nope.config: cannot read"):
        resolve(tree, tmp_path / "nope.config")


def test_unknown_profile() -> None:
    with pytest.raises(PvkitError, match="unknown profile 'dom1': choose one of dom0, domU"):
        kconfig.profile_fragments("dom1")


def test_profile_fragments_parse() -> None:
    for profile in kconfig.PROFILES:
        merged = kconfig.merge_fragments(kconfig.profile_fragments(profile))
        names = {a.name for a in merged}
        assert {"XEN", "XEN_PV", "HVC_XEN"} <= names
    dom0 = {a.name for a in kconfig.merge_fragments(kconfig.profile_fragments("dom0"))}
    assert {"XEN_DOM0", "XEN_GNTDEV", "XEN_PRIVCMD", "BRIDGE", "BLK_DEV_LOOP", "TUN"} <= dom0


def test_resolution_is_remembered_for_managed_trees(tree: source.Source, tmp_path: Path,
                                                     isolated_cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    managed = source.Source(tree.root, tree.version, "deb:fixture=1", managed=True)
    f = frag(tmp_path, "CONFIG_XEN=y\nCONFIG_ACPI=y\nCONFIG_PCI=y\n")
    first = kconfig.resolve(managed, None, [f], base="allnoconfig")

    def no_parse(src: source.Source) -> None:
        raise AssertionError("Kconfig parsed again for the same inputs")

    monkeypatch.setattr(kconfig, "load", no_parse)
    assert kconfig.resolve(managed, None, [f], base="allnoconfig").text == first.text
    f.write_text("CONFIG_XEN=y\n")  # a changed fragment is a new resolution
    with pytest.raises(AssertionError, match="parsed again"):
        kconfig.resolve(managed, None, [f], base="allnoconfig")


# ---- user fragments over the profiles (a fake tree that knows every profile symbol) -------


def test_user_typo_is_reported_not_the_profile(profile_tree: Path, tmp_path: Path) -> None:
    src = source.from_tree(profile_tree)
    f = frag(tmp_path, "CONFIG_XEN=y\nCONFIG_XEN_DOMO=y\n")
    with pytest.raises(PvkitError, match=rf"{f}:2: unknown symbol CONFIG_XEN_DOMO \(closest: "
                       r"CONFIG_XEN_DOM0"):
        kconfig.resolve(src, "dom0", [f])


def test_user_fragment_overrides_the_profile(profile_tree: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = source.from_tree(profile_tree)
    f = frag(tmp_path, "# CONFIG_NETDEVICES is not set\nCONFIG_XEN_NETDEV_BACKEND=y\n")
    r = kconfig.resolve(src, "dom0", [f])
    values = kconfig.assignments_of(r.text)
    assert values["NETDEVICES"] == "n" and values["XEN_NETDEV_BACKEND"] == "y"
    assert r.requested["NETDEVICES"] == "n"
    err = capsys.readouterr().err
    assert re.search(rf"note: CONFIG_NETDEVICES=n \({f}:1\) overrides CONFIG_NETDEVICES=y "
                     r"\(.*common.config:\d+\)", err), err
    assert "CONFIG_XEN_NETDEV_BACKEND=y" in err and "dom0.config" in err


def test_conflicts_between_user_fragments_stay_errors(profile_tree: Path,
                                                      tmp_path: Path) -> None:
    src = source.from_tree(profile_tree)
    a = frag(tmp_path, "CONFIG_XEN=y\n", "a.config")
    b = frag(tmp_path, "# CONFIG_XEN is not set\n", "b.config")
    with pytest.raises(PvkitError, match=rf"CONFIG_XEN set twice: y at {a}:1, n at {b}:1"):
        kconfig.resolve(src, "domU", [a, b])


def test_empty_string_value_holds(profile_tree: Path, tmp_path: Path) -> None:
    src = source.from_tree(profile_tree)
    f = frag(tmp_path, 'CONFIG_SYSTEM_TRUSTED_KEYS=""\n')
    r = kconfig.resolve(src, "domU", [f])
    assert kconfig.assignments_of(r.text)["SYSTEM_TRUSTED_KEYS"] == '""'
    assert r.requested["SYSTEM_TRUSTED_KEYS"] == ""


def test_binary_fragment_and_base(tree: source.Source, tmp_path: Path) -> None:
    binary = tmp_path / "bin.config"
    binary.write_bytes(b"\x7fELF\x00\xff\xfe")
    with pytest.raises(PvkitError, match="not a text file"):
        kconfig.parse_fragment(binary)
    with pytest.raises(PvkitError, match=r"--base .*: not a text file, so not a kernel .config"):
        kconfig.resolve(tree, None, [], base=str(binary))
    text = frag(tmp_path, "hello world\n", "notes.txt")
    with pytest.raises(PvkitError, match=r"--base .*notes.txt: no CONFIG_ lines"):
        kconfig.resolve(tree, None, [], base=str(text))
