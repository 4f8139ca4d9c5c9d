"""programs.py: guest programs built from C (static, cached), the scenario key, and pvudp."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pvkit import programs, scenarios
from pvkit.errors import PvkitError


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVKIT_CACHE", str(tmp_path / "cache"))
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")


def test_compiles_once_and_caches(tmp_path: Path) -> None:
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n')
    first = programs.compile_static(src)
    assert subprocess.run([str(first)], capture_output=True, text=True).stdout == "hi\n"
    mtime = first.stat().st_mtime_ns
    assert programs.compile_static(src) == first and first.stat().st_mtime_ns == mtime
    src.write_text(src.read_text().replace("hi", "ho"))
    assert programs.compile_static(src) != first


def test_compile_error_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "broken.c"
    src.write_text("int main(void) { return nope; }\n")
    with pytest.raises(PvkitError, match=r"cannot compile .*broken\.c: .*error.*nope"):
        programs.compile_static(src)
    assert not list((tmp_path / "cache").rglob("broken-*"))


def test_unknown_program_names_the_known_ones() -> None:
    with pytest.raises(PvkitError, match=r"no guest program 'pvupd'.*known: .*pvudp"):
        programs.payload(["pvupd"])


def test_payload_puts_programs_in_bin() -> None:
    files = programs.payload(["pvudp"])
    assert list(files) == ["bin/pvudp"] and files["bin/pvudp"][:4] == b"\x7fELF"


def test_scenario_programs_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('boot = "xen"\nprograms = ["pvudp"]\n')
    assert scenarios.load(path).programs == ["pvudp"]
    assert scenarios.find("pvnet").programs == ["pvudp"]


def test_pvudp_moves_a_file_over_loopback(tmp_path: Path) -> None:
    exe = programs.compile_static(programs.source("pvudp"))
    data = tmp_path / "in"
    data.write_bytes(bytes(range(256)) * 4096 + b"tail")
    out = tmp_path / "out"
    recv = subprocess.Popen([str(exe), "recv", "17777", str(out), "10"], stdout=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(0.3)
        send = subprocess.run([str(exe), "send", "127.0.0.1", "17777", str(data), "3000"],
                              capture_output=True, text=True, timeout=60)
        assert send.returncode == 0, send.stderr
        assert recv.wait(timeout=30) == 0
    finally:
        recv.kill()
        recv.wait()
    assert out.read_bytes() == data.read_bytes()
    assert send.stdout.startswith(f"bytes {len(data.read_bytes())} datagrams 351 ")


def test_pvudp_gives_up_without_a_receiver(tmp_path: Path) -> None:
    exe = programs.compile_static(programs.source("pvudp"))
    (tmp_path / "in").write_bytes(b"x")
    bad = subprocess.run([str(exe), "send", "not-an-ip", "1", str(tmp_path / "in")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not an IPv4 address" in bad.stderr
