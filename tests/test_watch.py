"""watch: changes are seen, and a burst of writes makes one change."""

from __future__ import annotations

import os
from pathlib import Path

from pvkit import watch


def test_snapshot_and_changed(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "index").write_text("x")
    before = watch.snapshot([tmp_path])
    assert list(before) == [str(tmp_path / "a")]
    (tmp_path / "b").write_text("2")
    os.utime(tmp_path / "a", ns=(1, 1))
    assert watch.changed(before, watch.snapshot([tmp_path])) == [str(tmp_path / "a"),
                                                                str(tmp_path / "b")]


def test_wait_returns_once_writes_settle(tmp_path: Path) -> None:
    target = tmp_path / "f.c"
    target.write_text("v0")
    writes = iter(["v1", "v22", None, None])
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # each sleep lets the "editor" write once more
        slept.append(seconds)
        text = next(writes, None)
        if text is not None:
            target.write_text(text)

    assert watch.wait_for_change([tmp_path], interval=1.0, quiet=0.5, sleep=sleep) == \
        [str(target)]
    assert target.read_text() == "v22" and slept == [1.0, 0.5, 0.5]


def test_inputs_cover_tree_and_fragments(tmp_path: Path) -> None:
    frag = tmp_path / "f.config"
    frag.write_text("")
    paths = watch.inputs(str(tmp_path / "linux"), [frag], "tinyconfig")
    assert tmp_path / "linux" in paths and frag in paths
    assert watch.DRIVERS_DIR in paths and watch.SCENARIOS_DIR in paths
