"""gen/intree.py without a kernel tree: placements from intree.toml, the rendered patch, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pvkit import drivers
from pvkit.errors import PvkitError
from pvkit.gen import intree

FAKE_TREE = {
    "drivers/block/Kconfig": "menuconfig BLK_DEV\n\tbool \"Block devices\"\n\nif BLK_DEV\n\n"
                             "config X\n\ttristate \"x\"\n\nendif # BLK_DEV\n",
    "drivers/block/Makefile": "obj-$(CONFIG_X) += x.o\n",
    "drivers/net/Kconfig": "menuconfig NETDEVICES\n\tbool \"Network devices\"\n\n"
                           "if NETDEVICES\n\nconfig XEN_NETDEV_FRONTEND\n\ttristate \"f\"\n\n"
                           "endif # NETDEVICES\n",
    "drivers/net/Makefile": "obj-$(CONFIG_XEN_NETDEV_FRONTEND) += xen-netfront.o\n",
}


def fake_read(rel: str) -> str:
    if rel not in FAKE_TREE:
        raise FileNotFoundError(rel)
    return FAKE_TREE[rel]


@pytest.mark.parametrize(("name", "subdir", "anchor"), [
    ("pvblk", "drivers/block", "endif # BLK_DEV"),
    ("pvnet", "drivers/net", "endif # NETDEVICES"),
])
def test_each_driver_goes_where_its_data_says(name: str, subdir: str, anchor: str) -> None:
    place = intree.placement(drivers.source_dir(name))
    assert (place.dir, place.kconfig_anchor) == (subdir, anchor)
    text = intree.render(name, fake_read)
    assert f"--- a/{subdir}/Kconfig\n+++ b/{subdir}/Kconfig\n" in text
    assert f'+source "{subdir}/{name}/Kconfig"\n+\n {anchor}\n' in text
    assert f"+obj-y\t+= {name}/\n" in text
    assert f"+++ b/{subdir}/{name}/{name}_proto.h\n" in text
    assert "Kbuild" not in text.split("---\n", 1)[1].split("+++ b/")[0]


def test_pvnet_kconfig_entries() -> None:
    text = intree.render("pvnet", fake_read)
    kconfig = text.split("+++ b/drivers/net/pvnet/Kconfig\n", 1)[1].split("--- ", 1)[0]
    assert "+config PVNET_FRONTEND\n+\ttristate" in kconfig
    assert "+\tdepends on XEN\n" in kconfig and "+\tdepends on XEN_BACKEND\n" in kconfig
    assert "+\t  will be called pvnet-back.\n" in kconfig
    makefile = text.split("+++ b/drivers/net/pvnet/Makefile\n", 1)[1].split("--- ", 1)[0]
    assert "+pvnet-back-y := pvnet_back.o pvnet_validate.o\n" in makefile


def copy_driver(tmp_path: Path, name: str = "pvnet") -> Path:
    dest = tmp_path / name
    shutil.copytree(drivers.DRIVERS_DIR / name, dest)
    return dest


@pytest.mark.parametrize(("old", "new", "message"), [
    ('dir = "drivers/net"', 'dir = "../../etc"', r"key 'dir': not a tree directory"),
    ('kconfig_anchor = ', 'anchor = ', r"top level: unknown key 'anchor'"),
    ('symbol = "PVNET_BACKEND"', 'symbol = "pvnet-back"', r"key 'symbol': not a Kconfig"),
    ('depends = "XEN_BACKEND"\n', '', r"\[\[module\]\] #2: missing key 'depends'"),
    ('name = "pvnet-back"', 'name = "pvnet-bak"', r"no \[\[module\]\] for 'pvnet-back'"),
    ('prompt = "pvkit pvnet: Xen network device frontend (netif)"', 'prompt = ""',
     r"key 'prompt': expected a non-empty string"),
    ('[[module]]\nname = "pvnet-front"', '[[module]\nname = "pvnet-front"', r"not valid TOML"),
])
def test_bad_placement_is_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    src = copy_driver(tmp_path)
    data = src / "intree.toml"
    assert old in data.read_text()
    data.write_text(data.read_text().replace(old, new, 1))
    with pytest.raises(PvkitError, match=message) as err:
        intree.render("pvnet", fake_read, directory=tmp_path)
    assert str(data) in str(err.value)


def test_missing_placement_is_named(tmp_path: Path) -> None:
    src = copy_driver(tmp_path)
    (src / "intree.toml").unlink()
    with pytest.raises(PvkitError, match=r"intree.toml: missing"):
        intree.render("pvnet", fake_read, directory=tmp_path)


def test_tree_without_the_anchor(tmp_path: Path) -> None:
    def read(rel: str) -> str:
        return fake_read(rel).replace("endif # NETDEVICES", "endif")

    with pytest.raises(PvkitError, match=r"drivers/net/Kconfig: no line starting with "
                                         r"'endif # NETDEVICES'"):
        intree.render("pvnet", read)


def test_not_a_linux_tree() -> None:
    with pytest.raises(PvkitError, match="not a Linux tree"):
        intree.render("pvnet", lambda rel: (_ for _ in ()).throw(FileNotFoundError(rel)))
