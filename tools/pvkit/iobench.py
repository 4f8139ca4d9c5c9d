"""I/O benchmarks of pvkit's split drivers against the upstream pairs, one suite per driver.

A suite is data (`Suite`): the bench scenarios each clock boots, the places its metrics come
from (a ceiling, the upstream pair, pvkit's pair), its jobs and the labels of the report. The
guests print metrics named `<place>_<job>.r<K>`; every place/job gets the median over the
repeats and its spread, and each job the ratio pvkit/upstream (> 1: pvkit is faster) and each
place's share of the ceiling. Every clock asked for gets its own boots. Suites: `blkbench.SUITE`
(fio) and `netbench.SUITE` (iperf3); `pvkit iobench --what blk|net|all` runs them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvkit import bench, benchreport, progress, run
from pvkit.paths import cache_subdir
from pvkit.report import table
from pvkit.util import write_atomic, write_json


@dataclass(frozen=True)
class Suite:
    name: str  # "blk", "net": results go to <out>/<name> when several suites run
    title: str  # report heading
    ours: str  # pvkit's place, e.g. "pvblk"; the ratio is <ours>_vs_upstream
    places: tuple[str, ...]  # column order: the ceiling first, then upstream, then ours
    labels: dict[str, str]  # place -> column label
    jobs: dict[str, str]  # job (metric name without place and repeat) -> row label
    header: str  # first column header, e.g. "fio (MB/s)"
    ylabel: str  # the plot's y axis
    notes: str  # the report's paragraph on method
    scenarios: Callable[[str], tuple[str, ...]]  # clock -> bench scenarios it boots
    plot_file: str
    target: float  # the target for <ours>_vs_upstream
    env: dict[str, str] = field(default_factory=dict)  # for the guests (e.g. PVK_FIO_JOBS)


@dataclass(frozen=True)
class Options:
    repeats: int = 3
    scale: float = 0.1
    clocks: tuple[str, ...] = ("icount", "realtime")
    out: Path | None = None


def ratio_key(suite: Suite) -> str:
    return f"{suite.ours}_vs_upstream"


def split_place(suite: Suite, name: str) -> tuple[str, str] | None:
    """`pvblk_fio_seq_read` -> ("pvblk", "fio_seq_read"); None for other metrics."""
    place, _, job = name.partition("_")
    return (place, job) if place in suite.places and job in suite.jobs else None


def analyse(suite: Suite, metrics: dict[str, list[float]]) -> dict[str, Any]:
    """Per job: each place's summary, pvkit/upstream and each place vs the ceiling."""
    jobs: dict[str, Any] = {}
    ceiling = suite.places[0]
    for name, values in metrics.items():
        if key := split_place(suite, name):
            place, job = key
            jobs.setdefault(job, {"label": suite.jobs[job], "places": {}})["places"][place] = \
                bench.summarize(values)
    for job in jobs.values():
        p = job["places"]
        if suite.ours in p and "upstream" in p and p["upstream"]["median"]:
            job[ratio_key(suite)] = round(p[suite.ours]["median"] / p["upstream"]["median"], 4)
        if ceiling in p and p[ceiling]["median"]:
            job["of_ceiling"] = {k: round(v["median"] / p[ceiling]["median"], 4)
                                 for k, v in p.items() if k != ceiling}
    return dict(sorted(jobs.items(), key=lambda kv: list(suite.jobs).index(kv[0])))


def _boot(suite: Suite, scenario: str, clock: str, opts: Options, out: Path
          ) -> dict[str, Any]:
    env = {"PVK_REPEATS": str(opts.repeats), "PVK_SCALE": str(opts.scale), **suite.env}
    return bench.boot(scenario, run.Options(accel="tcg", icount=clock == "icount", env=env,
                                            out=out), f"{suite.name} bench {scenario} ({clock})")


def run_suite(suite: Suite, opts: Options, out: Path | None = None) -> dict[str, Any]:
    """Boot the suite's scenarios for every clock; write results.json, report.md, the plot."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    out = out or opts.out or cache_subdir("bench", suite.name) / stamp
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"meta": {"suite": suite.name, "date": stamp,
                                     "repeats": opts.repeats, "scale": opts.scale,
                                     "target": suite.target, "runs": {}}, "clocks": {}}
    for clock in opts.clocks:
        metrics: dict[str, list[float]] = {}
        for scenario in suite.scenarios(clock):
            progress.step(f"{suite.name} bench: {scenario} ({clock}, {opts.repeats} repeats)")
            r = _boot(suite, scenario, clock, opts, out / clock / scenario)
            data["meta"]["runs"][f"{clock}/{scenario}"] = r["dir"]
            data["meta"].setdefault("qemu", r["qemu"])
            data["meta"].setdefault("kernels", {}).update(
                {k: v for k, v in r["info"].items() if k.endswith("_kernel")})
            data["meta"].setdefault("xen", r["info"].get("xen"))
            for source in ("dom0", "domU"):
                metrics.update(bench.metrics(r["ktap"].get(source)))
        data["clocks"][clock] = analyse(suite, metrics)
    write_json(out / "results.json", data)
    write_atomic(out / "report.md", markdown(suite, data, plot(suite, data, out)))
    data["dir"] = str(out)
    return data


def run_suites(suites: list[Suite], opts: Options) -> list[dict[str, Any]]:
    """Several suites: each in <out>/<suite name>, plus an index report.md in <out>."""
    if len(suites) == 1:
        return [run_suite(suites[0], opts)]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    out = opts.out or cache_subdir("bench", "io") / stamp
    results = [run_suite(s, opts, out / s.name) for s in suites]
    write_atomic(out / "report.md", "# pvkit I/O benchmarks\n\n" + "".join(
        f"- [{s.title}]({s.name}/report.md)\n" for s in suites))
    return results


def rows(suite: Suite, jobs: dict[str, Any]) -> list[list[str]]:
    out = []
    for job in jobs.values():
        p = job["places"]
        cells = [f"{p[k]['median']:.1f}{'*' if p[k]['noisy'] else ''}" if k in p else "-"
                 for k in suite.places]
        ratio = job.get(ratio_key(suite))
        spread = max((s["spread"] for s in p.values()), default=0.0)
        out.append([job["label"], *cells, f"{ratio:.2f}x" if ratio else "-",
                    f"{100 * spread:.1f}%"])
    return out


def headers(suite: Suite) -> list[str]:
    return [suite.header, *(suite.labels[p] for p in suite.places),
            f"{suite.ours} / upstream", "max spread"]


def target_line(suite: Suite, jobs: dict[str, Any]) -> str:
    """How many jobs reach the target ratio."""
    ratios = [j[ratio_key(suite)] for j in jobs.values() if ratio_key(suite) in j]
    met = sum(r >= suite.target for r in ratios)
    return f"{suite.ours} >= {suite.target}x upstream on {met} of {len(ratios)} jobs"


def terminal(suite: Suite, data: dict[str, Any]) -> str:
    parts = []
    for clock, jobs in data["clocks"].items():
        parts.append(f"{suite.title}, clock: {clock}\n{table(headers(suite), rows(suite, jobs))}"
                     f"\n{target_line(suite, jobs)}")
    return "\n\n".join(parts)


def markdown(suite: Suite, data: dict[str, Any], plots: list[str]) -> str:
    meta = data["meta"]
    lines = [f"# {suite.title}", "",
             f"{meta['date']}; QEMU: {meta.get('qemu')}; Xen: {meta.get('xen')}; kernels: "
             f"{meta.get('kernels')}; repeats {meta['repeats']}, scale {meta['scale']}; "
             f"{suite.notes} * = spread over 5%.", ""]
    for clock, jobs in data["clocks"].items():
        hdr = headers(suite)
        lines += [f"## clock: {clock}", "", "| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        lines += ["| " + " | ".join(r) + " |" for r in rows(suite, jobs)]
        lines += ["", target_line(suite, jobs), ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def plot(suite: Suite, data: dict[str, Any], out: Path) -> list[str]:
    plt = benchreport.pyplot()
    if plt is None:
        progress.notice("matplotlib missing: no plot (pip install .[plot])")
        return []
    clocks = list(data["clocks"])
    width = 0.8 / len(suite.places)
    fig, axes = plt.subplots(1, len(clocks), figsize=(6 * len(clocks), 4), squeeze=False)
    for ax, clock in zip(axes[0], clocks, strict=True):
        jobs = data["clocks"][clock]
        for i, place in enumerate(suite.places):
            xs = [j + width * (i - (len(suite.places) - 1) / 2) for j in range(len(jobs))]
            ys = [job["places"].get(place, {}).get("median", 0) for job in jobs.values()]
            ax.bar(xs, ys, width=width, label=suite.labels[place])
        ax.set_xticks(range(len(jobs)), [job["label"] for job in jobs.values()], rotation=25,
                      ha="right", fontsize=7)
        ax.set_ylabel(suite.ylabel)
        ax.set_title(f"{suite.title}, clock {clock}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / suite.plot_file, dpi=110)
    plt.close(fig)
    return [suite.plot_file]
