"""`pvkit summary`: the table, markdown and GitHub annotations for results of real-looking
runs (derived from golden console logs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvkit import cli, run, summary
from pvkit.errors import PvkitError

GOLDEN = Path(__file__).parent / "data" / "console"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two CI cells as the pipelines lay them out (`pvkit boot --out out/runs/<cell>`): a pass
    and a dom0 panic."""
    out = tmp_path / "runs"
    run.parse(GOLDEN / "xen-smoke-pass.log", "smoke", out / "smoke-debian-icount" / "smoke")
    run.parse(GOLDEN / "xen-dom0-panic.log", "smoke", out / "smoke-mine-icount" / "smoke")
    return out


def test_collect_and_text(runs: Path) -> None:
    results = summary.collect([runs])
    assert [summary.run_name(r) for r in results] == ["smoke-debian-icount",
                                                      "smoke-mine-icount"]
    text = summary.text(results)
    assert "FAIL smoke-mine-icount: stage 'dom0-kernel': dom0 kernel panic" in text
    assert text.endswith("1 passed, 1 failed")


def test_markdown(runs: Path) -> None:
    md = summary.markdown(summary.collect([runs]))
    assert md.startswith("### pvkit: 1 of 2 runs passed\n")
    assert "| smoke-debian-icount | ✅ PASS | 11/11 | done |" in md
    assert "| smoke-mine-icount | ❌ FAIL | 0/0 | dom0-kernel |" in md
    assert "<summary>smoke-mine-icount: stage 'dom0-kernel': dom0 kernel panic</summary>" in md
    assert "Kernel panic - not syncing" in md  # the console tail


def test_github_annotations_escape_and_name_the_failure(runs: Path) -> None:
    results = summary.collect([runs])
    lines = summary.github_annotations(results).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("::error title=pvkit smoke-mine-icount::stage 'dom0-kernel': "
                               "dom0 kernel panic (console: ")
    failing = dict(results[0], status="FAIL", reason="domU tests failed: a",
                   ktap={"domU": {"plan": 1, "errors": [], "cases": [
                       {"number": 1, "name": "a", "status": "not ok", "reason": "",
                        "diagnostics": ["50% lost", "x,y: z"], "metrics": {}}]}})
    lines = summary.github_annotations([failing]).splitlines()
    assert lines[1] == "::error title=pvkit smoke-debian-icount%3A domU test a::50%25 lost%0Ax,y: z"


def test_cli_exit_codes(runs: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["summary", str(runs / "smoke-debian-icount")]) == 0
    assert cli.main(["summary", str(runs), "--markdown"]) == 1
    assert "### pvkit" in capsys.readouterr().out
    assert cli.main(["summary", str(tmp_path / "empty")]) == 2
    (tmp_path / "empty").mkdir()
    assert cli.main(["summary", str(tmp_path / "empty")]) == 2
    assert "no results.json under" in capsys.readouterr().err
    bad = tmp_path / "results.json"
    bad.write_text("{}")
    with pytest.raises(PvkitError, match="not a pvkit results.json"):
        summary.collect([bad])
