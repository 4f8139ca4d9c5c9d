"""Tests of the pvbench microbenchmark program (tools/pvkit/bench/pvbench.c), built here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "tools" / "pvkit" / "bench" / "pvbench.c"

NAMES = [
    "null_call", "stat", "open_close", "sig_install", "sig_handle", "fork", "exec", "sh",
    "ctx_2p", "ctx_8p", "ctx_16p", "pipe_lat", "mmap", "page_fault", "prot_fault",
    "file_create_0k", "file_delete_0k", "file_create_10k", "file_delete_10k",
    "mem_touch_1m", "mem_bw", "cpu_loop",
]
UNITS = {"mem_bw": "MB/s", "cpu_loop": "us/Miter"}

METRIC_RE = re.compile(
    r"metric (?P<name>[a-z0-9_]+)\.r(?P<k>\d+) (?P<value>\d+\.\d{4}) (?P<unit>\S+)"
)
INFO_RE = re.compile(r"info (?P<name>[a-z0-9_]+): (?P<text>.+)")

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def pvbench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("pvbench") / "pvbench"
    proc = subprocess.run(
        ["gcc", "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(SOURCE)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return exe


def run(exe: Path, *args: str, tmpdir: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if tmpdir is not None:
        env["PVBENCH_TMPDIR"] = str(tmpdir)
    return subprocess.run([str(exe), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def parse(stdout: str) -> tuple[list[str], dict[str, list[tuple[int, float, str]]], list[str]]:
    """Return (names in the order of their info lines, metrics by name, skipped names)."""
    order: list[str] = []
    metrics: dict[str, list[tuple[int, float, str]]] = {}
    skipped: list[str] = []
    for line in stdout.splitlines():
        if m := INFO_RE.fullmatch(line):
            name = m["name"]
            assert name not in order, f"duplicate info line for {name}"
            order.append(name)
            if m["text"].startswith("skipped ("):
                skipped.append(name)
            else:
                assert re.search(r"\(\d+ iterations\)$", m["text"]), line
            continue
        m = METRIC_RE.fullmatch(line)
        assert m, f"unexpected output line: {line!r}"
        assert order and order[-1] == m["name"], f"metric without preceding info: {line!r}"
        metrics.setdefault(m["name"], []).append((int(m["k"]), float(m["value"]), m["unit"]))
    return order, metrics, skipped


def test_list(pvbench: Path) -> None:
    proc = run(pvbench, "-l")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == NAMES


def test_quick_run_all(pvbench: Path, tmp_path: Path) -> None:
    proc = run(pvbench, "-r", "2", "-s", "0.01", tmpdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    order, metrics, skipped = parse(proc.stdout)
    assert order == NAMES
    assert set(skipped) <= {"sh"}
    if Path("/bin/sh").exists():
        assert skipped == []
    for name in NAMES:
        if name in skipped:
            assert name not in metrics
            continue
        got = metrics.get(name, [])
        assert [k for k, _, _ in got] == [1, 2], name
        for _, value, unit in got:
            assert value > 0, name
            assert unit == UNITS.get(name, "us"), name
    # All temporary files are gone.
    assert list(tmp_path.iterdir()) == []


def test_selected_names_run_in_fixed_order(pvbench: Path, tmp_path: Path) -> None:
    proc = run(pvbench, "-r", "1", "-s", "0.01", "cpu_loop", "null_call", tmpdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    order, metrics, _ = parse(proc.stdout)
    assert order == ["null_call", "cpu_loop"]
    assert sorted(metrics) == ["cpu_loop", "null_call"]
    assert [k for k, _, _ in metrics["null_call"]] == [1]


def test_unknown_name(pvbench: Path, tmp_path: Path) -> None:
    proc = run(pvbench, "null_call", "no_such_bench", tmpdir=tmp_path)
    assert proc.returncode == 2
    assert "no_such_bench" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["-r", "0"], ["-s", "-1"], ["-s", "x"], ["-q"]])
def test_bad_options(pvbench: Path, args: list[str]) -> None:
    proc = run(pvbench, *args)
    assert proc.returncode == 2
    assert "usage" in proc.stderr


def test_exit_flag(pvbench: Path) -> None:
    proc = run(pvbench, "--exit", timeout=5)
    assert proc.returncode == 0
    assert proc.stdout == proc.stderr == ""


def test_syscall_failure_reported(pvbench: Path, tmp_path: Path) -> None:
    proc = run(pvbench, "-s", "0.01", "null_call", tmpdir=tmp_path / "missing")
    assert proc.returncode == 1
    assert proc.stderr.startswith("pvbench: setup: create pvbench.stat: No such file or directory")
