"""Summaries of scenario results for people and CI: a terminal table with one line per
failure, a markdown table (GitHub's step summary, a report artifact) and GitHub annotations.

Every failure is told the same way everywhere: the scenario, the stage the run had reached
and the reason, then the failed KTAP tests with their diagnostics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pvkit import report
from pvkit.errors import PvkitError
from pvkit.util import read_json


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    """Results from results.json files, or from every results.json under directories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("results.json"))
        elif path.exists():
            found.append(path)
        else:
            raise PvkitError(f"{path}: no such file or directory")
    if not found:
        raise PvkitError(f"no results.json under {', '.join(map(str, paths))} (did the run "
                         "start? see the log above)")
    results = []
    for path in found:
        data = read_json(path)
        if not isinstance(data, dict) or "scenario" not in data or "status" not in data:
            raise PvkitError(f"{path}: not a pvkit results.json")
        results.append(data)
    return results


def stage(result: dict[str, Any]) -> str:
    """The last stage the run reached."""
    stages = result.get("stages") or []
    return str(stages[-1]["stage"]) if stages else "start"


def run_name(result: dict[str, Any]) -> str:
    """The scenario, or the CI cell it ran in when its directory names one
    (`out/runs/<cell>/<scenario>/`, a cell id starting with the scenario's name)."""
    where = Path(result.get("dir") or "")
    for name in (where.parent.name, where.name):
        if name.startswith(f"{result['scenario']}-"):
            return name
    return str(result["scenario"])


def failed_cases(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(source, case) for source, doc in sorted(result.get("ktap", {}).items())
            for case in doc["cases"] if case["status"] == "not ok"]


def failure_text(result: dict[str, Any]) -> str:
    return f"stage '{stage(result)}': {result['reason']}"


def text(results: list[dict[str, Any]]) -> str:
    lines = [report.summary_table(results)]
    for r in results:
        if r["status"] != "PASS":
            lines.append(f"FAIL {run_name(r)}: {failure_text(r)}")
            for source, case in failed_cases(r):
                detail = "; ".join(case["diagnostics"][-3:])
                lines.append(f"  {source} test {case['name']} failed" +
                             (f": {detail}" if detail else ""))
            if r.get("console_log"):
                lines.append(f"  console: {r['console_log']}")
    passed = sum(r["status"] == "PASS" for r in results)
    lines.append(f"{passed} passed, {len(results) - passed} failed")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(results: list[dict[str, Any]]) -> str:
    passed = sum(r["status"] == "PASS" for r in results)
    out = [f"### pvkit: {passed} of {len(results)} runs passed", "",
           "| run | verdict | tests | stage reached | wall s | clock | reason |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        cases = [c for doc in r.get("ktap", {}).values() for c in doc["cases"]]
        ok = sum(c["status"] != "not ok" for c in cases)
        mark = "✅ PASS" if r["status"] == "PASS" else f"❌ {r['status']}"
        out.append(f"| {_cell(run_name(r))} | {mark} | {ok}/{len(cases)} | "
                   f"{_cell(stage(r))} | {r['wall_s']:.1f} | {_cell(r.get('clock', '-'))} | "
                   f"{_cell(r['reason'])} |")
    for r in results:
        if r["status"] == "PASS":
            continue
        out += ["", f"<details><summary>{_cell(run_name(r))}: {_cell(failure_text(r))}"
                    "</summary>", ""]
        for source, case in failed_cases(r):
            out.append(f"- {source} test `{case['name']}` failed: "
                       f"{_cell('; '.join(case['diagnostics'][-3:])) or 'no diagnostics'}")
        tail = r.get("boot", {}).get("tail") or []
        if tail:
            out += ["", "```", *tail[-20:], "```"]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github_annotations(results: list[dict[str, Any]]) -> str:
    """`::error` workflow commands: one per failed run, one per failed KTAP test."""
    out = []
    for r in results:
        if r["status"] == "PASS":
            continue
        name = run_name(r)
        where = f" (console: {r['console_log']})" if r.get("console_log") else ""
        out.append(f"::error title={_escape_property(f'pvkit {name}')}::"
                   f"{_escape_data(failure_text(r) + where)}")
        for source, case in failed_cases(r):
            detail = "\n".join(case["diagnostics"][-10:]) or "no diagnostics"
            title = f"pvkit {name}: {source} test {case['name']}"
            out.append(f"::error title={_escape_property(title)}::{_escape_data(detail)}")
    return "\n".join(out) + ("\n" if out else "")
