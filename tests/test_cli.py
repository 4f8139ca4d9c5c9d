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


def test_run_out_gives_each_scenario_its_directory(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from pvkit import run

    seen: dict[str, Path] = {}

    def fake_run(name: str, opts: run.Options) -> dict:
        seen[name] = opts.out
        return {"scenario": name, "status": "PASS", "reason": "ok", "stages": [],
                "wall_s": 0.0, "dir": str(opts.out)}

    monkeypatch.setattr(run, "run", fake_run)
    assert cli.main(["run", "--scenario", "smoke", "--scenario", "native", "--out",
                     str(tmp_path)]) == 0
    assert seen == {"smoke": tmp_path / "smoke", "native": tmp_path / "native"}


def test_run_env_reaches_the_guests(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from pvkit import run

    seen: dict[str, dict[str, str]] = {}

    def fake_run(name: str, opts: run.Options) -> dict:
        seen[name] = opts.env
        return {"scenario": name, "status": "PASS", "reason": "ok", "stages": [],
                "wall_s": 0.0, "dir": ""}

    monkeypatch.setattr(run, "run", fake_run)
    assert cli.main(["run", "--scenario", "smoke", "--env", "PVK_MIGRATE_REPEATS=10",
                     "--env", "PVK_PVBLK_FRONT_ARGS=a=1 b=2"]) == 0
    assert seen == {"smoke": {"PVK_MIGRATE_REPEATS": "10", "PVK_PVBLK_FRONT_ARGS": "a=1 b=2"}}
    with pytest.raises(SystemExit):
        cli.main(["run", "--scenario", "smoke", "--env", "no-equals"])
    assert "'no-equals' is not NAME=VALUE" in capsys.readouterr().err


def test_kernel_selection_reaches_every_verb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`--tree/--fragment/--base` pick the same build in build, inspect, images, drivers,
    boot and run (a build made with a fragment is found by the verbs that use it)."""
    from pvkit import build, run

    frag = tmp_path / "f.config"
    frag.write_text("CONFIG_XEN=y\n")
    want = {"tree": "/t", "fragments": [frag], "base": "defconfig"}
    calls: list[dict] = []

    def fake_find(profile: str, **kw: object) -> object:
        kw.pop("force", None)
        calls.append(kw)
        raise cli.PvkitError("stop here")

    monkeypatch.setattr(build, "find", fake_find)
    monkeypatch.setattr(build, "build", fake_find)
    sel = ["--tree", "/t", "--fragment", str(frag), "--base", "defconfig"]
    for argv in (["build", "--profile", "domU"], ["inspect"], ["images"],
                 ["drivers", "pvblk"]):
        assert cli.main([*argv, *sel]) == 2
        assert calls.pop() == want, argv
    options: list[run.Options] = []
    monkeypatch.setattr(run, "run", lambda name, opts: options.append(opts) or {
        "scenario": name, "status": "PASS", "reason": "", "stages": [], "wall_s": 0.0,
        "dir": ""})
    for verb in ("boot", "run"):
        assert cli.main([verb, "--scenario", "native", *sel]) == 0
        opts = options.pop()
        assert (opts.tree, list(opts.fragments), opts.base) == ("/t", [frag], "defconfig")
        assert opts.build_missing == (verb == "run")
