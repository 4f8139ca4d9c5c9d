"""build: cache keys, the no-make path on a key hit, error extraction from logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pvkit import build, kconfig, source
from pvkit.errors import PvkitError


@pytest.fixture
def fake_src(data_dir: Path) -> source.Source:
    return source.from_tree(data_dir / "kconfig-tree")


def resolved(text: str) -> kconfig.Resolved:
    from pvkit.util import sha256_text

    return kconfig.Resolved(text, sha256_text(text), "tinyconfig", [], {})


def test_keys_follow_config_and_source(fake_src: source.Source) -> None:
    a = build.keys(fake_src, "cfg1", "fp1")
    assert build.keys(fake_src, "cfg1", "fp1") == a
    assert build.keys(fake_src, "cfg2", "fp1")[0] != a[0]  # new config: new build dir
    same_dir, new_content = build.keys(fake_src, "cfg1", "fp2")
    assert same_dir == a[0] and new_content != a[1]  # edited user tree: incremental make


def prepare(monkeypatch: pytest.MonkeyPatch, fake_src: source.Source, text: str) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(build.source_mod, "resolve", lambda tree=None: fake_src)
    monkeypatch.setattr(build.source_mod, "fingerprint", lambda src: "fp")
    monkeypatch.setattr(build.kconfig, "resolve", lambda *a, **k: resolved(text))
    monkeypatch.setattr(build, "_do_build", lambda *a: calls.append(a) or "built")
    return calls


def recorded(fake_src: source.Source, cache: Path, text: str) -> Path:
    """A build directory whose metadata records the content key of this config."""
    dir_key, content_key = build.keys(fake_src, resolved(text).sha256, "fp")
    out = cache / "build" / f"domU-{dir_key[:16]}"
    out.mkdir(parents=True)
    (out / "metadata.json").write_text(f'{{"content_key": "{content_key}"}}')
    return out


def test_key_hit_skips_make(monkeypatch: pytest.MonkeyPatch, fake_src: source.Source,
                            isolated_cache: Path) -> None:
    calls = prepare(monkeypatch, fake_src, "CONFIG_A=y\n")
    dir_key, content_key = build.keys(fake_src, resolved("CONFIG_A=y\n").sha256, "fp")
    out = isolated_cache / "build" / f"domU-{dir_key[:16]}"
    for artifact in build.ARTIFACTS:
        (out / artifact).parent.mkdir(parents=True, exist_ok=True)
        (out / artifact).write_text("x")
    (out / "metadata.json").write_text(f'{{"content_key": "{content_key}"}}')
    b = build.build("domU")
    assert not calls and b.dir == out
    assert build.find("domU").dir == out
    build.build("domU", force=True)
    assert len(calls) == 1


def test_config_change_rebuilds(monkeypatch: pytest.MonkeyPatch, fake_src: source.Source,
                                isolated_cache: Path) -> None:
    prepare(monkeypatch, fake_src, "CONFIG_A=y\n")
    out = recorded(fake_src, isolated_cache, "CONFIG_A=y\n")
    calls = prepare(monkeypatch, fake_src, "CONFIG_A=n\n")
    build.build("domU")
    assert len(calls) == 1 and calls[0][3] != out


def test_missing_artifact_rebuilds(monkeypatch: pytest.MonkeyPatch, fake_src: source.Source,
                                   isolated_cache: Path) -> None:
    calls = prepare(monkeypatch, fake_src, "CONFIG_A=y\n")
    recorded(fake_src, isolated_cache, "CONFIG_A=y\n")
    build.build("domU")
    assert len(calls) == 1


def test_find_names_the_command(monkeypatch: pytest.MonkeyPatch, fake_src: source.Source,
                                isolated_cache: Path) -> None:
    prepare(monkeypatch, fake_src, "CONFIG_A=y\n")
    with pytest.raises(PvkitError, match=r"no up-to-date dom0 kernel build; run `pvkit build "
                       r"--profile dom0`"):
        build.find("dom0")


def test_first_error(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text(
        "  CC      kernel/fork.o\n"
        "../src/kernel/fork.c: In function 'copy_process':\n"
        "../src/kernel/fork.c:2101:9: error: 'foo' undeclared (first use in this function)\n"
        "make[3]: *** [scripts/Makefile.build:250: kernel/fork.o] Error 1\n"
    )
    assert build._first_error(log) == ("../src/kernel/fork.c:2101: 'foo' undeclared "
                                       "(first use in this function)")
    log.write_text("ld: something\nmake[1]: *** [Makefile:1250: vmlinux] Error 1\n")
    assert build._first_error(log) == "make[1]: *** [Makefile:1250: vmlinux] Error 1"


def test_ccache_delta() -> None:
    before = {"direct_cache_hit": 10, "preprocessed_cache_hit": 1, "cache_miss": 5}
    after = {"direct_cache_hit": 110, "preprocessed_cache_hit": 3, "cache_miss": 6}
    assert build._ccache_delta(before, after) == {"hits": 102, "misses": 1}


def test_build_dir_lock_serializes_builders(tmp_path: Path) -> None:
    import threading

    out = tmp_path / "domU-x"
    order: list[str] = []
    with build._locked(out):
        t = threading.Thread(target=lambda: (build._locked(out).__enter__(),
                                             order.append("second")))
        t.start()
        t.join(0.3)
        order.append("first released")
    t.join(5)
    assert order == ["first released", "second"]


def test_kvm_probe_record_survives_concurrent_probes(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path,
                                                     isolated_cache: Path) -> None:
    """Two runs probing two kernels at once: both answers are kept (read-modify-write of
    kvm-probe.json under a lock)."""
    import threading
    import time

    from pvkit import qemu
    from pvkit.util import read_json

    monkeypatch.setattr(qemu.os, "access", lambda path, mode: True)
    monkeypatch.setattr(qemu, "kvm_is_pvm", lambda: False)

    def slow_probe(kernel: Path, timeout_s: float) -> bool:
        time.sleep(0.3)
        return kernel.name == "a"

    monkeypatch.setattr(qemu, "_probe", slow_probe)
    kernels = []
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        kernels.append(tmp_path / name)
    threads = [threading.Thread(target=qemu.probe_kvm, args=(k,)) for k in kernels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = read_json(isolated_cache / "kvm-probe.json")
    assert sorted(record.values()) == [False, True] and len(record) == 2


def test_pvbench_compiles_through_a_private_temporary(monkeypatch: pytest.MonkeyPatch,
                                                     isolated_cache: Path) -> None:
    from pvkit import bench, programs

    outputs: list[str] = []
    real_run = programs.subprocess.run

    def spy(cmd: list[str], **kw: object) -> object:
        outputs.append(cmd[cmd.index("-o") + 1])
        return real_run(cmd, **kw)

    monkeypatch.setattr(programs.subprocess, "run", spy)
    first = bench.compile_pvbench()
    first.unlink()
    assert bench.compile_pvbench() == first and first.is_file()
    assert len(set(outputs)) == 2 and not any(o.endswith(".tmp") for o in outputs)
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary left


def test_pvkit_cc_reaches_kconfig_and_make(monkeypatch: pytest.MonkeyPatch,
                                          fake_src: source.Source) -> None:
    monkeypatch.setenv("PVKIT_CC", "gcc-12")
    assert kconfig.compiler_env()["CC"] == "gcc-12"
    cmd = build.make_command(fake_src, Path("/o"), "bzImage")
    assert "CC=gcc-12" in cmd and cmd[-1] == "bzImage"
    monkeypatch.delenv("PVKIT_CC")
    assert "CC=gcc" in build.make_command(fake_src, Path("/o"), "bzImage")


def test_pvm_backed_kvm_is_not_probed(tmp_path: Path) -> None:
    from pvkit import qemu

    mods = tmp_path / "module"
    (mods / "kvm_pvm").mkdir(parents=True)
    assert qemu.kvm_is_pvm(mods)
    (mods / "kvm_intel").mkdir()
    assert not qemu.kvm_is_pvm(mods)
