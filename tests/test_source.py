"""source: Debian tarball extraction is atomic; trees are identified by a fingerprint."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from pvkit import debs, source
from pvkit.errors import PvkitError


def fake_package(tmp_path: Path, good: bool) -> debs.Package:
    root = tmp_path / "pkg"
    (root / "usr/src").mkdir(parents=True, exist_ok=True)
    tree = tmp_path / "linux-source-6.1"
    (tree / "arch").mkdir(parents=True, exist_ok=True)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 99\nEXTRAVERSION =\n")
    (tree / "Kconfig").write_text("")
    tarball = root / "usr/src/linux-source-6.1.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(tree, arcname="linux-source-6.1")
    if not good:
        data = tarball.read_bytes()
        tarball.write_bytes(data[: len(data) // 2])  # a truncated download
    return debs.Package("linux-source-6.1", "6.1.99-1", tmp_path / "x.deb", root, "abc")


def test_interrupted_extraction_is_not_trusted(tmp_path: Path, isolated_cache: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debs, "fetch", lambda name, version=None: fake_package(tmp_path, False))
    with pytest.raises(PvkitError, match=r"cannot extract .*linux-source-6.1.tar.xz"):
        source.from_debian()
    dest = isolated_cache / "src" / "linux-source-6.1_6.1.99-1"
    assert not dest.exists()
    assert not any(p.name.startswith(".linux") for p in (isolated_cache / "src").iterdir())
    monkeypatch.setattr(debs, "fetch", lambda name, version=None: fake_package(tmp_path, True))
    src = source.from_debian()
    assert src.version == "6.1.99" and src.managed
    assert (dest / ".pvkit-complete").exists()
    assert source.from_debian().root == src.root  # reused, not re-extracted


def test_tree_errors(tmp_path: Path) -> None:
    with pytest.raises(PvkitError, match="no such directory"):
        source.from_tree(tmp_path / "missing")
    with pytest.raises(PvkitError, match="not a Linux kernel tree"):
        source.from_tree(tmp_path)


def test_fingerprint_follows_changes(data_dir: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(data_dir / "kconfig-tree"), str(tree)], check=True)
    src = source.from_tree(tree)
    first = source.fingerprint(src)
    assert source.fingerprint(src) == first
    (tree / "Kconfig").write_text((tree / "Kconfig").read_text() + "\n# touched\n")
    assert source.fingerprint(src) != first


def test_git_tree_fingerprint(data_dir: Path, tmp_path: Path) -> None:
    tree = tmp_path / "git"
    subprocess.run(["cp", "-a", str(data_dir / "kconfig-tree"), str(tree)], check=True)
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    src = source.from_tree(tree)
    clean = source.fingerprint(src)
    (tree / "new.c").write_text("int x;\n")
    untracked = source.fingerprint(src)
    assert untracked != clean
    (tree / "new.c").unlink()
    assert source.fingerprint(src) == clean
    (tree / "Makefile").write_text((tree / "Makefile").read_text() + "# edit\n")
    assert source.fingerprint(src) != clean


def test_plain_tree_is_walked_once_for_both_fingerprints(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "linux"
    (tree / "arch/x86/configs").mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 1\n")
    (tree / "Kconfig").write_text("")
    (tree / "arch/x86/Kconfig.debug").write_text("")
    (tree / "arch/x86/configs/xen.config").write_text("CONFIG_XEN=y\n")
    (tree / "arch/x86/xen.c").write_text("int x;\n")
    src = source.from_tree(tree)
    alone = source.kconfig_fingerprint(src)  # its own walk, outside a reuse block
    walks: list[str] = []
    real_walk = source.os.walk

    def counting_walk(top: object, *args: object, **kw: object) -> object:
        walks.append(str(top))
        return real_walk(top, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(source.os, "walk", counting_walk)
    with source.fingerprints_reused():
        source.fingerprint(src)
        assert source.kconfig_fingerprint(src) == alone
    assert walks == [str(tree)]
    (tree / "arch/x86/xen.c").write_text("int xy;\n")  # not a Kconfig input
    assert source.kconfig_fingerprint(src) == alone
    (tree / "arch/x86/Kconfig.debug").write_text("config X\n")
    assert source.kconfig_fingerprint(src) != alone
