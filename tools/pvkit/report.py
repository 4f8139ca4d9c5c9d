"""Terminal output for results: one line per scenario and a summary table."""

from __future__ import annotations

from typing import Any


def scenario_line(result: dict[str, Any]) -> str:
    stages = " ".join(f"{s['stage']}@{s['at_s']:.1f}s" for s in result.get("stages", []))
    where = f"\n  results: {result['dir']}" if result.get("dir") else ""
    return (f"{result['status']:5} {result['scenario']} ({result['wall_s']:.1f} s): "
            f"{result['reason']}\n  stages: {stages or '-'}{where}")


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*map(str, row)) for row in rows]
    return "\n".join(out)


def summary_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        cases = [c for doc in r.get("ktap", {}).values() for c in doc["cases"]]
        passed = sum(1 for c in cases if c["status"] != "not ok")
        stages = {s["stage"]: s["at_s"] for s in r.get("stages", [])}
        rows.append([r["scenario"], r["status"], f"{passed}/{len(cases)}",
                     _at(stages, "dom0-userspace", "domU-userspace"),
                     _at(stages, "domU-userspace"), f"{r['wall_s']:.1f}",
                     r.get("clock", "-")])
    return table(["scenario", "verdict", "tests", "userspace", "domU up", "wall s", "clock"],
                 rows)


def _at(stages: dict[str, float], *names: str) -> str:
    for name in names:
        if name in stages:
            return f"{stages[name]:.1f}"
    return "-"
