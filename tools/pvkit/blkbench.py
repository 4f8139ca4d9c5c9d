"""The block suite of the I/O bench: fio over pvblk vs upstream xen-blkfront/blkback, with
virtio-blk natively as the ceiling (`pvkit blkbench`, `pvkit iobench --what blk`).

One Xen boot runs the same fio jobs in one PV domU over both driver pairs (each backed by a
file in dom0's tmpfs); one native boot runs them on a virtio-blk disk of the same QEMU machine
(real time only, see scenarios_for). The machinery is iobench's; this module is the data.
"""

from __future__ import annotations

from typing import Any

from pvkit import iobench
from pvkit.iobench import Options

PLACES = ("virtio", "upstream", "pvblk")
PLACE_LABELS = {"virtio": "virtio-blk (native, ceiling)", "upstream": "xen-blkfront/blkback",
                "pvblk": "pvblk-front/back"}
JOBS = {"fio_seq_read": "seq read 1M", "fio_seq_write": "seq write 1M",
        "fio_rand_read": "rand read 4K", "fio_rand_write": "rand write 4K"}
TARGET = 1.2  # issue 5: pvblk >= 1.2x upstream on every fio workload (icount)


def scenarios_for(clock: str) -> tuple[str, ...]:
    """The boots a clock gets. Under icount a virtio disk's I/O completes in host time while
    the idle guest's virtual clock jumps to its next timer (sleep=off), so a native virtio
    figure is meaningless there (measured: 0.3-149 MB/s across repeats); the ceiling is only
    measured in real time. The Xen split drivers do all their I/O inside the guest (dom0's
    tmpfs), which icount makes deterministic."""
    return ("blk-xen",) if clock == "icount" else ("blk-native", "blk-xen")


SUITE = iobench.Suite(
    name="blk", title="pvblk vs upstream Xen block drivers", ours="pvblk", places=PLACES,
    labels=PLACE_LABELS, jobs=JOBS, header="fio (MB/s)", ylabel="MB/s (higher is better)",
    notes="fio O_DIRECT psync, one job. The virtio-blk ceiling is measured in real time only: "
          "under icount its host-side I/O makes guest time jump.",
    scenarios=scenarios_for, plot_file="blk.png", target=TARGET)
HEADERS = iobench.headers(SUITE)


def split_place(name: str) -> tuple[str, str] | None:
    """`pvblk_fio_seq_read` -> ("pvblk", "fio_seq_read"); None for other metrics."""
    return iobench.split_place(SUITE, name)


def analyse(metrics: dict[str, list[float]]) -> dict[str, Any]:
    """Per fio job: each place's summary, pvblk/upstream and each place vs the ceiling."""
    return iobench.analyse(SUITE, metrics)


def run_blkbench(opts: Options) -> dict[str, Any]:
    return iobench.run_suite(SUITE, opts)


def rows(jobs: dict[str, Any]) -> list[list[str]]:
    return iobench.rows(SUITE, jobs)


def terminal(data: dict[str, Any]) -> str:
    return iobench.terminal(SUITE, data)


def markdown(data: dict[str, Any], plots: list[str]) -> str:
    return iobench.markdown(SUITE, data, plots)
