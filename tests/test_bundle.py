"""`pvkit bundle`: a kernel build carried between CI jobs (a fake build tree; the real one is
exercised by the GitLab pipeline run in .ci/run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pvkit import build, bundle
from pvkit.errors import PvkitError
from pvkit.util import read_json, sha256_file, write_json

# the fragments each lookup of the fake build was asked for
found: list[list[str]] = []


@pytest.fixture
def fake_build(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = isolated_cache / "build" / "domU-0123456789abcdef"
    for name, data in {"arch/x86/boot/bzImage": "bz", "vmlinux": "elf", "System.map": "map",
                       ".config": "CONFIG_XEN=y\n", "Module.symvers": "", "init/main.o": "obj",
                       "init/.main.o.cmd": "cmd", "vmlinux.a": "ar",
                       "include/generated/autoconf.h": "#define X 1\n"}.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(data)
    (out / "source").symlink_to("/nonexistent/linux")
    meta = {"profile": "domU", "content_key": "k1", "kernel": {"release": "6.1.0-pvkit"},
            "artifacts": {a: sha256_file(out / a) for a in build.ARTIFACTS}}
    write_json(out / "metadata.json", meta)

    def find(profile: str, tree: str | None = None,
             fragments: list[Path] | None = None) -> build.Build:
        meta = read_json(out / "metadata.json")
        found.append([str(f) for f in fragments or []])
        if not meta or meta["content_key"] != "k1":
            raise PvkitError(f"no up-to-date {profile} kernel build")
        return build.Build(profile, out, meta)

    found.clear()
    monkeypatch.setattr(build, "find", find)
    monkeypatch.setattr(build, "prepare_source", lambda tree: None)
    return out


def test_export_leaves_objects_out(fake_build: Path, tmp_path: Path) -> None:
    manifest = bundle.export("domU", tmp_path / "b")
    payload = tmp_path / "b" / fake_build.name
    assert manifest["build"] == fake_build.name and manifest["release"] == "6.1.0-pvkit"
    assert (payload / "vmlinux").exists() and (payload / "include/generated/autoconf.h").exists()
    assert (payload / "source").is_symlink()
    assert not (payload / "init/main.o").exists() and not (payload / "vmlinux.a").exists()
    assert not (payload / "init/.main.o.cmd").exists()


def test_import_into_a_fresh_cache(fake_build: Path, tmp_path: Path) -> None:
    bundle.export("domU", tmp_path / "b")
    assert bundle.import_(tmp_path / "b")["status"] == "present"
    shutil.rmtree(fake_build)
    result = bundle.import_(tmp_path / "b")
    assert result["status"] == "imported"
    assert (fake_build / "vmlinux").read_text() == "elf"
    assert not list(fake_build.parent.glob(".*.tmp"))


def test_import_refuses_what_it_cannot_use(fake_build: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PvkitError, match="not a pvkit kernel bundle"):
        bundle.import_(tmp_path)
    bundle.export("domU", tmp_path / "b")
    (tmp_path / "b" / fake_build.name / "vmlinux").write_text("truncated")
    with pytest.raises(PvkitError, match="vmlinux is missing or damaged"):
        bundle.import_(tmp_path / "b")
    bundle.export("domU", tmp_path / "b")
    meta = read_json(fake_build / "metadata.json")
    write_json(fake_build / "metadata.json", meta | {"content_key": "k2"})
    write_json(tmp_path / "b" / fake_build.name / "metadata.json", meta | {"content_key": "k2"})
    bundle_meta = read_json(tmp_path / "b" / bundle.MANIFEST)
    write_json(tmp_path / "b" / bundle.MANIFEST, bundle_meta | {"content_key": "k2"})
    with pytest.raises(PvkitError, match="not the build this runner's source"):
        bundle.import_(tmp_path / "b")
    monkeypatch.setenv("PVKIT_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(PvkitError, match="give every job the same PVKIT_CACHE"):
        bundle.import_(tmp_path / "b")


def test_a_build_with_extra_fragments_travels_with_them(fake_build: Path, tmp_path: Path) -> None:
    """A scenario's [kernel] fragments make a build of their own: the bundle names them, and
    the import looks for that build, not the plain profile's."""
    manifest = bundle.export("domU", tmp_path / "b",
                             fragments=[Path("qemu-tests/smp-balloon.config")])
    assert manifest["fragments"] == ["qemu-tests/smp-balloon.config"]
    found.clear()
    bundle.import_(tmp_path / "b")
    assert found == [["qemu-tests/smp-balloon.config"]]
