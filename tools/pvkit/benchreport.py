"""Bench results for people: a terminal table, report.md (the Xen paper's layout) and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pvkit.report import table
from pvkit.util import write_atomic

GROUPS = (("micro", "lmbench-style microbenchmarks (latency: lower is better)"),
          ("macro", "Macro workloads (sysbench, fixed work: total time)"),
          ("io", "Split-driver I/O (domU through blkfront/netfront; baseline: dom0's own "
                 "device)"))


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.3f}"
    return f"{value:.4f}"


LABELS = {"native": "native", "dom0": "dom0", "domU": "domU", "pvh": "PVH domU"}


def places(data: dict[str, Any]) -> list[str]:
    """The places measured in this result set, in report order (older sets have no PVH)."""
    seen = {p for w in data["workloads"].values() for p in w["places"]}
    return [p for p in LABELS if p in seen]


def headers(data: dict[str, Any]) -> list[str]:
    ps = places(data)
    return ["workload", "unit", *(LABELS[p] for p in ps),
            *(f"{LABELS[p]} slowdown" for p in ps if p != "native"), "max spread"]


def rows(data: dict[str, Any], group: str) -> list[list[str]]:
    ps = places(data)
    out = []
    for w in data["workloads"].values():
        if w["group"] != group:
            continue
        cells = [w["label"], w["unit"]]
        for place in ps:
            s = w["places"].get(place)
            cells.append(_num(s["median"]) + ("*" if s and s["noisy"] else "") if s else "-")
        for place in ps:
            if place == "native":
                continue
            ratio = w["slowdown"].get(place)
            cells.append(f"{ratio:.2f}x" if ratio else "-")
        spreads = [s["spread"] for s in w["places"].values()]
        cells.append(f"{100 * max(spreads):.1f}%")
        out.append(cells)
    return out


def terminal(data: dict[str, Any]) -> str:
    meta = data["meta"]
    parts = [header_line(meta)]
    for group, title in GROUPS:
        body = rows(data, group)
        if body:
            parts += ["", title, table(headers(data), body)]
    parts.append("\nslowdown = time in place / time native (bandwidths inverted); "
                 "* = spread above 5% (noisy)")
    return "\n".join(parts)


def header_line(meta: dict[str, Any]) -> str:
    return (f"clock: {meta['clock']} | accel: {meta['accel']} | cpu: {meta['cpu']} | "
            f"{meta['qemu']} | kernel {meta['kernel'].get('domU')} | Xen {meta['xen']} | "
            f"repeats {meta['repeats']}, scale {meta['scale']}")


def markdown(data: dict[str, Any], plots: list[str]) -> str:
    meta = data["meta"]
    lines = ["# pvkit paravirtualization overhead", "",
             "Native: the domU kernel booted directly by QEMU. dom0 and domU: under Xen, in "
             "one boot, dom0's workloads before the domU exists. PVH domU (where measured): "
             "the same kernel and workloads in a PVH guest (hardware-assisted, no device "
             "model; Xen's HVM support emulated by QEMU here), in its own Xen boot. Same QEMU "
             "machine for all.", "",
             "| setting | value |", "|---|---|"]
    settings = [("clock", meta["clock"]), ("accelerator", meta["accel"]),
                ("QEMU", meta["qemu"]), ("CPU model", meta["cpu"]),
                ("memory", f"{meta['memory_mb']} MB"),
                ("kernel (domU / dom0)", f"{meta['kernel'].get('domU')} / "
                 f"{meta['kernel'].get('dom0')}"),
                ("Xen", meta["xen"]), ("repeats, scale", f"{meta['repeats']}, {meta['scale']}"),
                ("date", meta["date"])]
    for profile, cfg in meta.get("configs", {}).items():
        settings.append((f"{profile} config", f"{cfg['base']} + {', '.join(cfg['fragments'])} "
                         f"(sha256 {cfg['config_sha256'][:12]}), patch series: {cfg['series']}"))
    if meta.get("domU_cmdline_extra"):
        settings.append(("extra kernel command line", meta["domU_cmdline_extra"]))
    lines += [f"| {k} | {v} |" for k, v in settings]
    for group, title in GROUPS:
        body = rows(data, group)
        if not body:
            continue
        head = headers(data)
        lines += ["", f"## {title}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        relative = [[r[0], _relative(data, r[0])] for r in body]
        lines += ["", "Relative to native (1.00 = native speed; the paper's Figure 3 score): "
                  + "; ".join(f"{name} {rel}" for name, rel in relative)]
    pv = [w for w in data["workloads"].values() if w.get("pvstat")]
    if pv:
        lines += ["", "## Paravirt ops caused (pvstat, one run at the same scale, program "
                  "start included)", "", "| workload | place | top paravirt ops (calls) |",
                  "|---|---|---|"]
        for w in pv:
            for place, ops in w["pvstat"].items():
                top = sorted(ops.items(), key=lambda kv: -kv[1])[:6]
                lines.append(f"| {w['label']} | {place} | "
                             + ", ".join(f"{op} {n}" for op, n in top) + " |")
    lines += ["", "Medians over repeats; spread = (max - min) / median; * marks a spread above "
              "5%.", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _relative(data: dict[str, Any], label: str) -> str:
    for w in data["workloads"].values():
        if w["label"] == label:
            parts = [f"{p} {1 / r:.2f}" for p, r in w["slowdown"].items() if r]
            return ", ".join(parts) or "-"
    return "-"


def pyplot() -> Any:
    """matplotlib.pyplot with the file-only Agg backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plots(data: dict[str, Any], out: Path) -> list[str]:
    """Figure-3-style relative performance bars, and a microbenchmark slowdown chart."""
    plt = pyplot()
    if plt is None:
        return []
    made = []
    ws = [w for w in data["workloads"].values() if w["slowdown"]]
    if ws:
        fig, ax = plt.subplots(figsize=(max(8, len(ws) * 0.45), 4.5))
        shown = [p for p in places(data) if p != "native"]
        width = 0.8 / max(len(shown), 1)
        for i, place in enumerate(shown):
            vals = [1 / w["slowdown"][place] if w["slowdown"].get(place) else 0 for w in ws]
            ax.bar([x + (i - (len(shown) - 1) / 2) * width for x in range(len(ws))], vals,
                   width, label=LABELS[place])
        ax.axhline(1.0, color="black", linewidth=0.8, label="native (or dom0 for I/O)")
        ax.set_xticks(range(len(ws)), [w["label"] for w in ws], rotation=60, ha="right",
                      fontsize=8)
        ax.set_ylabel("relative performance (1.0 = baseline)")
        ax.set_title(f"Relative performance under Xen ({data['meta']['clock']} clock)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "relative.png", dpi=110)
        plt.close(fig)
        made.append("relative.png")
    micro = [w for w in data["workloads"].values() if w["group"] == "micro" and w["slowdown"]]
    if micro:
        fig, ax = plt.subplots(figsize=(7, max(4, len(micro) * 0.32)))
        ys = range(len(micro))
        shown = [p for p in places(data) if p != "native"]
        height = 0.8 / max(len(shown), 1)
        for i, place in enumerate(shown):
            vals = [w["slowdown"].get(place) or 0 for w in micro]
            ax.barh([y + (i - (len(shown) - 1) / 2) * height for y in ys], vals, height,
                    label=LABELS[place])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(list(ys), [w["label"] for w in micro], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("slowdown vs native (x)")
        ax.set_title("Microbenchmarks: paravirtualization cost")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "micro.png", dpi=110)
        plt.close(fig)
        made.append("micro.png")
    return made


def write_all(data: dict[str, Any], out: Path) -> None:
    made = plots(data, out)
    write_atomic(out / "report.md", markdown(data, made))
    write_atomic(out / "report.txt", terminal(data) + "\n")


def compare_table(rows_: list[dict[str, Any]]) -> str:
    body = [[r["label"], r["place"], _num(r["a"]), _num(r["b"]), r["unit"],
             f"{100 * r['change']:+.1f}%", f"{100 * r['noise']:.1f}%", r["flag"]]
            for r in rows_]
    return table(["workload", "place", "A", "B", "unit", "change", "noise", "flag"], body)
