"""The network suite of the I/O bench: iperf3 over pvnet vs upstream xen-netfront/netback,
with dom0's own loopback as the Xen-side ceiling (`pvkit iobench --what net`).

One Xen boot per clock: dom0 first measures iperf3 over its loopback (before the domU
exists), then one PV domU measures the same iperf3 jobs against dom0 over both driver pairs,
each on its own dom0 bridge: xen-netfront + xen-netback (device/vif/1) and pvnet-front +
pvnet-back (device/pvnet/2), the pairs measured in turn within each repeat. Under icount all
of it runs inside the guests (no host I/O), so it is deterministic. The machinery is
iobench's; this module is the data.
"""

from __future__ import annotations

from pvkit import iobench

PLACES = ("dom0", "upstream", "pvnet")
PLACE_LABELS = {"dom0": "dom0 loopback (ceiling)", "upstream": "xen-netfront/netback",
                "pvnet": "pvnet-front/back"}
JOBS = {"iperf3_tcp_tx": "TCP domU->dom0 Mbit/s", "iperf3_tcp_rx": "TCP dom0->domU Mbit/s",
        "iperf3_udp_64": "UDP 64 B domU->dom0 kpps"}
TARGET = 1.2  # issue 11: pvnet >= 1.2x upstream on every iperf3 workload (icount)


def scenarios_for(clock: str) -> tuple[str, ...]:
    """Both clocks boot the same scenario: the ceiling is dom0's loopback, in that boot."""
    return ("net-xen",)


SUITE = iobench.Suite(
    name="net", title="pvnet vs upstream Xen network drivers", ours="pvnet", places=PLACES,
    labels=PLACE_LABELS, jobs=JOBS, header="iperf3", ylabel="Mbit/s or kpps (higher is better)",
    notes="iperf3 3.12, one stream, 3 s of guest time per job: TCP both ways (Mbit/s at the "
          "receiver), UDP with 64-byte payloads sent as fast as the sender can (thousand "
          "datagrams per second received). The ceiling is iperf3 over dom0's loopback.",
    scenarios=scenarios_for, plot_file="net.png", target=TARGET)
