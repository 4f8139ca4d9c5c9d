"""The CLI: thin verbs, one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pvkit import cli


def test_config_error_is_one_line(profile_tree: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    frag = tmp_path / "bad.config"
    frag.write_text("CONFIG_XEN=y\nCONFIG_XEN_DOMO=y\n")
    rc = cli.main(["config", "--tree", str(profile_tree), "--profile", "domU", "--fragment",
                   str(frag)])
    err = capsys.readouterr().err
    assert rc == 2
    # the tree knows every profile symbol: the error is the user's typo, at its line
    assert err == (f"pvkit: error: {frag}:2: unknown symbol CONFIG_XEN_DOMO (closest: "
                   "CONFIG_XEN_DOM0)\n")


def test_source_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["source", "--tree", str(data_dir / "kconfig-tree"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == "9.8.7-fixture"


def test_doctor_json(capsys: pytest.CaptureFixture[str], isolated_cache: Path) -> None:
    rc = cli.main(["doctor", "--json"])
    checks = json.loads(capsys.readouterr().out)
    names = {c["name"] for c in checks}
    assert {"qemu-system-x86_64", "gcc", "ccache", "mmdebstrap", "disk"} <= names
    assert rc == (0 if all(c["ok"] for c in checks) else 1)


def test_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """Every scenario name is checked before anything is built or booted."""
    rc = cli.main(["boot", "--scenario", "smoke", "--scenario", "smok"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert "no scenario 'smok': did you mean 'smoke'?" in captured.err
