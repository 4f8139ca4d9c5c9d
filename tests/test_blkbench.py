"""blkbench analysis without booting: metric names, medians, ratios, the report."""

from __future__ import annotations

from pvkit import blkbench


def test_split_place() -> None:
    assert blkbench.split_place("pvblk_fio_seq_read") == ("pvblk", "fio_seq_read")
    assert blkbench.split_place("upstream_fio_rand_write") == ("upstream", "fio_rand_write")
    assert blkbench.split_place("fio_seq_read") is None
    assert blkbench.split_place("pvblk_fio_unknown") is None


def test_icount_skips_the_virtio_ceiling() -> None:
    assert blkbench.scenarios_for("icount") == ("blk-xen",)
    assert blkbench.scenarios_for("realtime") == ("blk-native", "blk-xen")


def test_analyse_ratios_and_ceiling() -> None:
    jobs = blkbench.analyse({
        "upstream_fio_seq_read": [300.0, 320.0, 310.0],
        "pvblk_fio_seq_read": [460.0, 465.0, 470.0],
        "virtio_fio_seq_read": [930.0, 930.0, 930.0],
        "upstream_fio_rand_write": [44.0, 44.0, 44.0],
        "pvblk_fio_rand_write": [52.8, 52.8, 52.8],
    })
    assert list(jobs) == ["fio_seq_read", "fio_rand_write"]
    assert jobs["fio_seq_read"]["pvblk_vs_upstream"] == 1.5
    assert jobs["fio_seq_read"]["of_ceiling"] == {"upstream": 0.3333, "pvblk": 0.5}
    assert jobs["fio_rand_write"]["pvblk_vs_upstream"] == 1.2
    assert "of_ceiling" not in jobs["fio_rand_write"]


def test_report_names_places_and_ratio() -> None:
    data = {"meta": {"date": "d", "repeats": 3, "scale": 0.1, "qemu": "q", "xen": "x",
                     "kernels": {}},
            "clocks": {"icount": blkbench.analyse({"upstream_fio_seq_read": [10.0],
                                                   "pvblk_fio_seq_read": [15.0]})}}
    text = blkbench.terminal(data)
    assert "clock: icount" in text and "1.50x" in text and "xen-blkfront/blkback" in text
    assert "pvblk >= 1.2x upstream on 1 of 1 jobs" in text
    md = blkbench.markdown(data, [])
    assert "| seq read 1M | - | 10.0 | 15.0 | 1.50x |" in md


def test_jobs_are_data_for_the_guest() -> None:
    """Every job reaches pvk_fio as NAME:RW:BS:ENGINE:IODEPTH:NUMJOBS; psync and qd32 x4."""
    specs = [j.spec for j in blkbench.JOBS.values()]
    assert "seq_read:read:1M:psync:1:1" in specs
    assert "aio_rand_write:randwrite:4k:libaio:32:4" in specs
    assert all(name == f"fio_{j.name}" for name, j in blkbench.JOBS.items())
    assert blkbench.split_place("pvblk_fio_aio_seq_read") == ("pvblk", "fio_aio_seq_read")
