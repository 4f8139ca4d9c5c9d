"""The real kernel pipeline on Debian's linux-source-6.1: config, build, metadata, ELF checks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pvkit import build, elf, kconfig, source
from pvkit.paths import cache_dir
from pvkit.util import sha256_file

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def src() -> source.Source:
    return source.from_debian()


@pytest.mark.parametrize("profile", ["domU", "dom0"])
def test_config_equals_make_olddefconfig(src: source.Source, profile: str,
                                         tmp_path: Path) -> None:
    resolved = kconfig.resolve(src, profile)
    (tmp_path / ".config").write_text(resolved.text)
    subprocess.run(["make", "-s", "-C", str(src.root), f"O={tmp_path}", "ARCH=x86_64",
                    "olddefconfig"], check=True, capture_output=True,
                   env=build.build_env(src))
    made = kconfig.assignments_of((tmp_path / ".config").read_text())
    assert made == kconfig.assignments_of(resolved.text)


@pytest.mark.parametrize("profile", ["domU", "dom0"])
def test_build_and_metadata(profile: str) -> None:
    b = build.build(profile)
    meta = b.metadata
    assert meta["kernel"]["release"].startswith("6.1.")
    for artifact, digest in meta["artifacts"].items():
        assert sha256_file(b.dir / artifact) == digest
    assert {"gcc", "make", "ld", "ccache"} <= set(meta["toolchain"])
    assert meta["inputs"]["config_sha256"] and meta["inputs"]["fragments"]
    assert "make -C" in meta["reproducer"] and f"O={b.dir}" in meta["reproducer"]
    # steps and warnings describe the last make run, which may have been incremental
    assert meta["steps"] == build._count_steps(Path(meta["log"])) > 0
    assert meta["warnings"] >= 0
    assert set(meta["ccache"]) == {"hits", "misses"}
    notes = elf.xen_notes(b.vmlinux)
    assert notes["XEN_ELFNOTE_GUEST_OS"] == "linux"
    assert elf.parainstructions_count(b.vmlinux) > 1000
    if profile == "dom0":
        assert any(m.endswith("xen-blkback.ko") for m in meta["modules"])
        release = b.release
        config = kconfig.assignments_of((b.dir / ".config").read_text())
        for ko in b.modroot.rglob("*.ko"):
            ok, message = elf.check_module(ko, release, config)
            assert ok, message


def test_noop_rebuild_does_not_run_make(monkeypatch: pytest.MonkeyPatch) -> None:
    first = build.build("domU")

    def no_make(*args: object) -> None:
        raise AssertionError("make ran although nothing changed")

    monkeypatch.setattr(build, "_do_build", no_make)
    assert build.build("domU").dir == first.dir


def test_build_is_reproducible() -> None:
    """A second build of the same inputs in another directory gives a bit-identical bzImage."""
    first = build.build("domU")
    other = cache_dir() / "build" / "domU-reproducibility"
    second = build.build("domU", force=True, build_dir=other)
    assert second.metadata["artifacts"]["arch/x86/boot/bzImage"] == \
        first.metadata["artifacts"]["arch/x86/boot/bzImage"]
