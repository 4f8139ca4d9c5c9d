"""`pvkit matrix`: the CI matrix derived from a scenario directory and options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pvkit import cli, matrix
from pvkit.errors import PvkitError

FIXTURES = Path(__file__).parent / "data" / "matrix"


def derive(*patterns: str, trees: list[str] | None = None,
           clocks: list[str] | None = None) -> matrix.Matrix:
    return matrix.derive(list(patterns), trees, clocks, directory=FIXTURES)


def test_boot_kind_decides_the_kernels() -> None:
    m = derive()
    boots = {b.scenario: b for b in m.boots}
    assert sorted(boots) == ["alpha", "beta", "beta-dom0"]
    assert boots["alpha"].profiles == ["domU", "dom0"]
    assert boots["beta"].profiles == ["domU"]
    assert boots["beta-dom0"].profiles == ["domU", "dom0"]
    assert boots["alpha"].needs == ["domU-debian", "dom0-debian"]
    assert [b.id for b in m.builds] == ["domU-debian", "dom0-debian"]
    assert boots["alpha"].args == "--scenario alpha --icount"  # icount: the default clock
    assert m.clocks == ["icount"]


def test_only_the_kernels_the_selected_boots_need() -> None:
    m = derive("beta")
    assert [b.id for b in m.builds] == ["domU-debian"]
    assert [b.args for b in m.builds] == ["--profile domU"]


def test_globs_trees_and_clocks_multiply() -> None:
    m = derive("beta*", trees=["mine=/srv/linux", "/src/linux-next/"],
               clocks=["icount,realtime", "icount"])
    assert [t.name for t in m.trees] == ["mine", "linux_next"]
    assert m.clocks == ["icount", "realtime"]
    assert len(m.boots) == 2 * 2 * 2
    cell = next(b for b in m.boots if b.id == "beta-mine-realtime")
    assert cell.args == "--scenario beta --tree /srv/linux"
    assert cell.needs == ["domU-mine"]
    assert {b.id for b in m.builds} == {"domU-mine", "dom0-mine", "domU-linux_next",
                                        "dom0-linux_next"}
    assert next(b for b in m.builds if b.id == "dom0-linux_next").args == \
        "--profile dom0 --tree /src/linux-next/"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"patterns": ["gamma*"]}, "--scenario 'gamma\\*' matches no scenario"),
    ({"clocks": ["icount,wallclock"]}, "--clock 'wallclock': choose from icount, realtime"),
    ({"trees": ["debian=/x"]}, "not 'debian'"),
    ({"trees": ["a-b=/x"]}, "tree name 'a-b' must be"),
    ({"trees": ["/a/x", "/b/x"]}, "two trees have the same name"),
    ({"trees": ["x="]}, "give NAME=PATH or PATH"),
    ({"trees": ["x=/a b"]}, "must not contain white space"),
])
def test_bad_options_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(PvkitError, match=message):
        matrix.derive(kwargs.get("patterns"), kwargs.get("trees"), kwargs.get("clocks"),
                      directory=FIXTURES)


def test_github_outputs_are_strategy_matrices() -> None:
    m = derive(clocks=["icount,realtime"])
    lines = dict(line.split("=", 1) for line in matrix.github_outputs(m).splitlines())
    assert sorted(lines) == ["boots", "builds"]
    boots = json.loads(lines["boots"])["include"]
    assert len(boots) == 6 and {"id", "scenario", "tree", "clock", "args", "needs"} <= set(
        boots[0])
    assert [b["id"] for b in json.loads(lines["builds"])["include"]] == [
        "domU-debian", "dom0-debian"]


def test_gitlab_child_pipeline() -> None:
    m = derive(clocks=["realtime"])
    doc = yaml.safe_load(matrix.gitlab_pipeline(m))
    assert doc["include"] == [{"local": "ci/gitlab/templates.yml"}]
    assert doc["build-dom0-debian"] == {"extends": ".pvkit-build", "variables": {
        "PVKIT_CELL": "dom0-debian", "PVKIT_ARGS": "--profile dom0"}}
    boot = doc["boot-beta-debian-realtime"]
    assert boot["needs"] == ["build-domU-debian"]
    assert boot["variables"]["PVKIT_ARGS"] == "--scenario beta"
    assert doc["summary"]["needs"] == [f"boot-{b.id}" for b in m.boots]
    jobs = [k for k in doc if k not in ("include", "stages")]
    assert len(jobs) == 2 + 3 + 1


def test_to_yaml_round_trips() -> None:
    obj = {"a b": ["x: y", {"k": "v", "n": [1, 2]}, []], "e": {}, "s": "it's \"q\"\n"}
    assert yaml.safe_load(matrix.to_yaml(obj)) == obj


def test_cli_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the shipped scenarios: every one is a boot cell
    from pvkit import scenarios

    assert cli.main(["matrix", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(b["scenario"] for b in data["boots"]) == scenarios.available()
    child = tmp_path / "child.yml"
    assert cli.main(["matrix", "--scenario", "smoke", "--gitlab-pipeline", str(child)]) == 0
    assert "1 boots" in capsys.readouterr().out
    assert "boot-smoke-debian-icount" in yaml.safe_load(child.read_text())
    assert cli.main(["matrix", "--scenario", "nope"]) == 2
    assert "matches no scenario" in capsys.readouterr().err


def test_a_scenario_with_fragments_gets_its_own_build_cell(tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        shutil.copy(FIXTURES / f"{name}.toml", tmp_path)
    (tmp_path / "smp.config").write_text("CONFIG_SMP=y\n")
    (tmp_path / "gamma.toml").write_text('[kernel]\ndomU = ["smp.config"]\n'
                                         '[[test]]\nname = "t"\nrun = "true"\n')
    m = matrix.derive([], None, None, directory=tmp_path)
    builds = {b.id: b.args for b in m.builds}
    assert builds == {"domU-debian": "--profile domU", "dom0-debian": "--profile dom0",
                      "domU-smp-debian": f"--profile domU --fragment {tmp_path / 'smp.config'}"}
    gamma = next(b for b in m.boots if b.scenario == "gamma")
    assert gamma.needs == ["domU-smp-debian", "dom0-debian"]
    resize = matrix.derive(["resize"])
    assert [b.args for b in resize.builds][0] == \
        "--profile domU --fragment qemu-tests/smp-balloon.config"
