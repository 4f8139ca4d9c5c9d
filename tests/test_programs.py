"""programs.py: guest programs built from C (static, cached), the scenario key, and pvudp."""

from __future__ import annotations

import shutil
import signal
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


def test_pvblkpat_finds_a_lost_write(tmp_path: Path) -> None:
    """pvblkpat writes passes until told to stop, verifies the last one, and names a block
    that holds an older pass (a write that was lost)."""
    exe = programs.compile_static(programs.source("pvblkpat"))
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(8 << 20))
    stop = tmp_path / "stop"
    writer = subprocess.Popen([str(exe), "write", str(disk), "5", str(stop), "256", "8"],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0, out
    passes = int(out.split()[1])
    assert passes >= 2 and out.startswith(f"passes {passes} bytes {passes * (8 << 20)} ")
    ok = subprocess.run([str(exe), "verify", str(disk), "5", str(passes)], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and ok.stdout == "verified 8388608 bytes, 0 bad blocks\n"
    # block 3 as the pass before left it: one lost write
    older = tmp_path / "older"
    older.write_bytes(bytes(8 << 20))
    stop2 = tmp_path / "stop2"
    stop2.touch()
    subprocess.run([str(exe), "write", str(older), "5", str(stop2)], check=True,
                   capture_output=True)
    block = older.read_bytes()[3 << 18:4 << 18]
    with disk.open("r+b") as f:
        f.seek(3 << 18)
        f.write(block)
    bad = subprocess.run([str(exe), "verify", str(disk), "5", str(passes)], capture_output=True,
                         text=True)
    assert bad.returncode == 1
    assert bad.stdout == "block 3 holds pass 1 block 3\nverified 8388608 bytes, 1 bad blocks\n"


def test_pvstream_checks_every_byte_and_measures_gaps(tmp_path: Path) -> None:
    exe = programs.compile_static(programs.source("pvstream"))
    stop = tmp_path / "stop"
    recv = subprocess.Popen([str(exe), "recv", "17781", "20"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        send = subprocess.Popen([str(exe), "send", "127.0.0.1", "17781", str(stop), "16", "10"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        send.send_signal(signal.SIGSTOP)  # the sender stands still for 0.6 s
        time.sleep(0.6)
        send.send_signal(signal.SIGCONT)
        time.sleep(0.3)
        stop.touch()
        sent, _ = send.communicate(timeout=30)
        got, _ = recv.communicate(timeout=30)
    finally:
        for proc in (recv, send):
            proc.kill()
            proc.wait()
    assert send.returncode == 0 and recv.returncode == 0, (sent, got)
    nbytes = int(sent.split()[1])
    first, *gaps = got.splitlines()
    assert first.startswith(f"bytes {nbytes} bad 0 max_gap_ms ")
    assert len(gaps) == 1 and 500 <= float(gaps[0].split()[1]) <= 2000, got
