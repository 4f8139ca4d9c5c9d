"""The numbers of a lifecycle scenario (save-restore, migrate, reboot, resize) as one table.

The guests print metrics under names the lifecycle scenarios share (lib.sh): the time of each
operation (`save_s`, `migrate_s.r2`, `mem_set_160_s`, ...), the downtime dom0's receivers saw
(`downtime_ms.rK`), the longest time a writer or stream got nothing (`*.max_stall_ms`,
`stream.*.max_gap_ms`), what was verified (`*.bytes_verified`, `stream.*.bytes`) and what was
sent (`*_image_mib`, `sent_mib.rK`). `workloads` gathers them in the shape `pvkit bench` results
have (one place: the scenario), so a scenario's results.json goes through `pvkit bench
--compare` as a bench's does, and `table` prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pvkit.report import table as format_table
from pvkit.util import summarize

_REPEAT = r"(?:\.r\d+)?$"
_OPS = (r"checkpoint|save|restore|reattach|migrate|reboot|shutdown|create_to_up|"
        r"mem_set_\d+|vcpu_online|vcpu_unplug")


@dataclass(frozen=True)
class Row:
    pattern: str  # over metric names; group "op" (if any) names a row per operation
    name: str  # the row's workload name ({op} filled in)
    label: str
    unit: str
    combine: str  # "each": every value a repeat; "sum", "max": one value from all matches
    higher_is_better: bool = False
    informational: bool = False  # shown, never flagged by --compare (it follows run length)


ROWS = (
    Row(rf"^(?P<op>{_OPS})_s{_REPEAT}", "{op}_s", "{op} time", "s", "each"),
    Row(rf"^downtime_ms{_REPEAT}", "downtime_ms", "downtime (dom0's receivers)", "ms", "each"),
    Row(r"^(?:.+\.max_stall_ms|stream\..+\.max_gap_ms)$", "io_max_stall_ms",
        "longest I/O stall (guest)", "ms", "max"),
    Row(r"^(?:.+\.bytes_verified|stream\..+\.bytes)$", "bytes_verified", "bytes verified",
        "bytes", "sum", higher_is_better=True, informational=True),
    Row(r"^(?P<op>save|checkpoint)_image_mib$", "{op}_image_mib", "{op} image", "MiB", "each",
        informational=True),
    Row(rf"^sent_mib{_REPEAT}", "sent_mib", "migration stream", "MiB", "each",
        informational=True),
)


def metrics(result: dict[str, Any]) -> dict[str, float]:
    """Every metric of a scenario's results, by name (dom0's and the domU's)."""
    return {name: value for doc in result.get("ktap", {}).values() for case in doc["cases"]
            for name, (value, _unit) in case["metrics"].items()}


def workloads(result: dict[str, Any]) -> dict[str, Any]:
    """The scenario's lifecycle rows in `pvkit bench`'s shape; {} when it measured none."""
    found: dict[str, tuple[Row, str, list[float]]] = {}
    for name, value in sorted(metrics(result).items()):
        for row in ROWS:
            m = re.match(row.pattern, name)
            if m:
                key = row.name.format(**m.groupdict())
                found.setdefault(key, (row, row.label.format(**m.groupdict()), []))[2] \
                    .append(value)
                break
    out: dict[str, Any] = {}
    for key, (row, label, values) in found.items():
        if row.combine == "sum":
            values = [sum(values)]
        elif row.combine == "max":
            values = [max(values)]
        out[key] = {"label": label, "unit": row.unit, "higher_is_better": row.higher_is_better,
                    "informational": row.informational,
                    "places": {result["scenario"]: summarize(values)}}
    return out


def table(result: dict[str, Any]) -> str:
    """The rows as a terminal table: median, range and repeats."""
    rows = []
    for w in result.get("workloads", {}).values():
        for s in w["places"].values():
            span = f"{_num(s['min'])}..{_num(s['max'])}" if len(s["values"]) > 1 else "-"
            rows.append([w["label"], _num(s["median"]), w["unit"], span,
                         str(len(s["values"]))])
    return format_table(["lifecycle", "median", "unit", "range", "n"], rows)


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
