"""The I/O bench without booting: suites as data (blk, net), analysis, reports, and the guest
helper that runs the network jobs (against a stand-in iperf3 that prints real 3.12 output)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pvkit import blkbench, iobench, netbench
from pvkit.paths import PACKAGE_DIR

NET_METRICS = {
    "dom0_iperf3_tcp_tx": [3500.0, 3510.0, 3490.0],
    "upstream_iperf3_tcp_tx": [1700.0, 1720.0, 1710.0],
    "pvnet_iperf3_tcp_tx": [2100.0, 2110.0, 2105.0],
    "upstream_iperf3_udp_64": [40.0, 40.0, 41.0],
    "pvnet_iperf3_udp_64": [50.0, 50.0, 50.0],
    "upstream_fio_seq_read": [1.0],  # another suite's: ignored
}


def test_suites_are_distinct_data() -> None:
    assert blkbench.SUITE.places == ("virtio", "upstream", "pvblk")
    assert netbench.SUITE.places == ("dom0", "upstream", "pvnet")
    assert netbench.SUITE.scenarios("icount") == netbench.SUITE.scenarios("realtime") == (
        "net-xen",)
    for suite in (blkbench.SUITE, netbench.SUITE):
        for clock in ("icount", "realtime"):
            for scenario in suite.scenarios(clock):
                assert (iobench.bench.BENCH_DIR / f"{scenario}.toml").is_file(), scenario


def test_net_analysis() -> None:
    jobs = iobench.analyse(netbench.SUITE, NET_METRICS)
    assert list(jobs) == ["iperf3_tcp_tx", "iperf3_udp_64"]
    tx = jobs["iperf3_tcp_tx"]
    assert tx["pvnet_vs_upstream"] == round(2105 / 1710, 4)
    assert tx["of_ceiling"] == {"upstream": round(1710 / 3500, 4), "pvnet": round(2105 / 3500, 4)}
    assert jobs["iperf3_udp_64"]["pvnet_vs_upstream"] == 1.25
    assert "of_ceiling" not in jobs["iperf3_udp_64"]


def test_net_report() -> None:
    data = {"meta": {"date": "d", "repeats": 3, "scale": 0.1, "qemu": "q", "xen": "x",
                     "kernels": {}},
            "clocks": {"icount": iobench.analyse(netbench.SUITE, NET_METRICS)}}
    text = iobench.terminal(netbench.SUITE, data)
    assert "pvnet vs upstream Xen network drivers, clock: icount" in text
    md = iobench.markdown(netbench.SUITE, data, ["net.png"])
    assert "| iperf3 | dom0 loopback (ceiling) | xen-netfront/netback | pvnet-front/back | " \
           "pvnet / upstream | max spread |" in md
    assert "| TCP domU->dom0 Mbit/s | 3500.0 | 1710.0 | 2105.0 | 1.23x | 1.2% |" in md
    assert "| UDP 64 B domU->dom0 kpps | - | 40.0 | 50.0 | 1.25x | 2.5% |" in md
    assert md.endswith("![net.png](net.png)\n")


def test_plot_has_a_bar_per_place(tmp_path: Path) -> None:
    if iobench.benchreport.pyplot() is None:
        pytest.skip("matplotlib missing")
    data = {"clocks": {"icount": iobench.analyse(netbench.SUITE, NET_METRICS)}}
    assert iobench.plot(netbench.SUITE, data, tmp_path) == ["net.png"]
    assert (tmp_path / "net.png").stat().st_size > 1000


FAKE_IPERF3 = r"""#!/bin/sh
# a stand-in for iperf3 3.12: prints what it prints, for the arguments it gets
case " $* " in
*" -u "*)
	echo "[  5]   0.00-3.00   sec  1.12 MBytes  3.13 Mbits/sec  0.000 ms  0/18321 (0%)  sender"
	echo "[  5]   0.00-3.04   sec  1.10 MBytes  3.04 Mbits/sec  0.021 ms  321/18321 (1.8%) receiver"
	;;
*" -R "*)
	echo "[  5]   0.00-3.00   sec   610 MBytes  1705 Mbits/sec    0             sender"
	echo "[  5]   0.00-3.00   sec   609 MBytes  1702 Mbits/sec                  receiver"
	;;
*)
	echo "[  5]   0.00-3.00   sec   700 MBytes  1958 Mbits/sec    3             sender"
	echo "[  5]   0.00-3.01   sec   699 MBytes  1950 Mbits/sec                  receiver"
	;;
esac
"""


def run_helper(tmp_path: Path, call: str, repeats: str = "2") -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "iperf3").write_text(FAKE_IPERF3)
    (fake / "iperf3").chmod(0o755)
    lib = PACKAGE_DIR / "guest" / "lib.sh"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PVK_REPEATS": repeats}
    return subprocess.run(["sh", "-c", f". {lib}; {call}"], capture_output=True, text=True,
                          env=env)


def test_iperf_jobs_helper_prints_the_metrics(tmp_path: Path) -> None:
    out = run_helper(tmp_path, "pvk_iperf_jobs 192.0.2.1 pvnet_")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "metric pvnet_iperf3_tcp_tx.r1 1950 Mbit/s", "metric pvnet_iperf3_tcp_rx.r1 1702 Mbit/s",
        "metric pvnet_iperf3_udp_64.r1 5.92 kpps",
        "metric pvnet_iperf3_tcp_tx.r2 1950 Mbit/s", "metric pvnet_iperf3_tcp_rx.r2 1702 Mbit/s",
        "metric pvnet_iperf3_udp_64.r2 5.92 kpps"]


def test_iperf_jobs_helper_one_repeat(tmp_path: Path) -> None:
    out = run_helper(tmp_path, "pvk_iperf_jobs 192.0.2.1 upstream_ 3", repeats="5")
    assert [line.split()[1] for line in out.stdout.splitlines()] == [
        "upstream_iperf3_tcp_tx.r3", "upstream_iperf3_tcp_rx.r3", "upstream_iperf3_udp_64.r3"]


def test_iperf_jobs_helper_fails_without_a_result(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "iperf3").write_text("#!/bin/sh\necho 'iperf3: error - unable to connect'\n")
    (fake / "iperf3").chmod(0o755)
    lib = PACKAGE_DIR / "guest" / "lib.sh"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-c", f". {lib}; pvk_iperf_jobs 192.0.2.1 pvnet_"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "iperf3 tcp_tx to 192.0.2.1 gave no result" in out.stdout
