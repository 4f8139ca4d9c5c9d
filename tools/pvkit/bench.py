"""The overhead benchmark: the same workloads natively, in dom0 and in a PV domU.

Native is the domU kernel booted directly by QEMU; dom0 and domU run under Xen in one boot
(dom0's workloads run before the domU exists). All three use the same QEMU machine settings.
Every workload is repeated inside the guest; results are medians with their spread, and a
ratio to native (or, for split-driver I/O, to dom0's own device).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvkit import programs, progress, run
from pvkit.errors import PvkitError
from pvkit.paths import PACKAGE_DIR, SCENARIOS_DIR, cache_subdir
from pvkit.util import read_json, summarize, write_json

BENCH_DIR = SCENARIOS_DIR / "bench"
PVBENCH_SRC = PACKAGE_DIR / "bench" / "pvbench.c"
PLACES = ("native", "dom0", "domU", "pvh")


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    group: str  # micro / macro / io
    higher_is_better: bool = False


WORKLOADS = [
    Workload("null_call", "null call", "micro"),
    Workload("stat", "stat", "micro"),
    Workload("open_close", "open/close", "micro"),
    Workload("sig_install", "sig inst", "micro"),
    Workload("sig_handle", "sig hndl", "micro"),
    Workload("fork", "fork proc", "micro"),
    Workload("exec", "exec proc", "micro"),
    Workload("sh", "sh proc", "micro"),
    Workload("ctx_2p", "ctx 2p/0K", "micro"),
    Workload("ctx_8p", "ctx 8p/0K", "micro"),
    Workload("ctx_16p", "ctx 16p/0K", "micro"),
    Workload("pipe_lat", "pipe lat", "micro"),
    Workload("mmap", "mmap lat", "micro"),
    Workload("page_fault", "page fault", "micro"),
    Workload("prot_fault", "prot fault", "micro"),
    Workload("file_create_0k", "0K create", "micro"),
    Workload("file_delete_0k", "0K delete", "micro"),
    Workload("file_create_10k", "10K create", "micro"),
    Workload("file_delete_10k", "10K delete", "micro"),
    Workload("mem_touch_1m", "touch 1 MB", "micro"),
    Workload("mem_bw", "memcpy bw", "micro", higher_is_better=True),
    Workload("cpu_loop", "CPU loop (control)", "micro"),
    Workload("sysbench_cpu", "sysbench cpu", "macro"),
    Workload("sysbench_memory", "sysbench memory", "macro"),
    Workload("sysbench_threads", "sysbench threads", "macro"),
    Workload("fio_seq_read", "fio seq read 1M", "io", higher_is_better=True),
    Workload("fio_seq_write", "fio seq write 1M", "io", higher_is_better=True),
    Workload("fio_rand_read", "fio rand read 4K", "io", higher_is_better=True),
    Workload("fio_rand_write", "fio rand write 4K", "io", higher_is_better=True),
    Workload("iperf3_tcp", "iperf3 TCP", "io", higher_is_better=True),
]
BY_NAME = {w.name: w for w in WORKLOADS}


@dataclass(frozen=True)
class Options:
    repeats: int = 3
    scale: float = 1.0
    micro: tuple[str, ...] = ()  # empty: all of pvbench's
    icount: bool = True
    accel: str = "tcg"
    domu_cmdline: str = ""  # e.g. to inject a slowdown for --compare
    out: Path | None = None
    pvstat: bool = True  # an extra boot with pvstat on: the paravirt ops of each workload
    io: bool = True  # fio and iperf3 through the split drivers
    pvh: bool = True  # an extra Xen boot: the domU workloads in a PVH guest


def compile_pvbench() -> Path:
    """pvbench, statically linked, cached by the hash of its source."""
    return programs.compile_static(PVBENCH_SRC)


def metrics(doc: dict[str, Any] | None) -> dict[str, list[float]]:
    """`name.rK` metrics of a KTAP document, grouped by workload name, K in order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for case in (doc or {}).get("cases", []):
        for key, (value, _unit) in case["metrics"].items():
            name, _, rep = key.rpartition(".r")
            if name and rep.isdigit():
                out.setdefault(name, []).append((int(rep), value))
    return {k: [v for _, v in sorted(vals)] for k, vals in out.items()}


def _pvstat(doc: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """`pvstat:<workload>:<op>` metrics: workload -> op -> calls."""
    out: dict[str, dict[str, int]] = {}
    for case in (doc or {}).get("cases", []):
        for key, (value, _unit) in case["metrics"].items():
            if key.startswith("pvstat:"):
                _, workload, op = key.split(":", 2)
                out.setdefault(workload, {})[op] = int(value)
    return out


def _units(*docs: dict[str, Any] | None) -> dict[str, str]:
    units: dict[str, str] = {}
    for doc in docs:
        for case in (doc or {}).get("cases", []):
            for key, (_value, unit) in case["metrics"].items():
                units[key.rpartition(".r")[0]] = unit
    return units


def slowdown(w: Workload, place: dict[str, Any], base: dict[str, Any]) -> float | None:
    """How many times slower than the baseline (> 1: slower), whatever the unit's direction."""
    if not base["median"] or not place["median"]:
        return None
    ratio = place["median"] / base["median"]
    return round(1 / ratio if w.higher_is_better else ratio, 4)


def analyse(per_place: dict[str, dict[str, list[float]]], units: dict[str, str]
            ) -> dict[str, Any]:
    workloads: dict[str, Any] = {}
    names = [w.name for w in WORKLOADS] + sorted(
        {n for m in per_place.values() for n in m} - set(BY_NAME))
    for name in names:
        w = BY_NAME.get(name, Workload(name, name, "other"))
        places = {p: summarize(v[name]) for p, v in per_place.items() if v.get(name)}
        if not places:
            continue
        base_name = "native" if "native" in places else ("dom0" if w.group == "io" else None)
        ratios = {}
        if base_name:
            for p, s in places.items():
                if p != base_name:
                    ratios[p] = slowdown(w, s, places[base_name])
        workloads[name] = {"label": w.label, "group": w.group, "unit": units.get(name, ""),
                           "higher_is_better": w.higher_is_better, "baseline": base_name,
                           "places": places, "slowdown": ratios}
    return workloads


def _meta(native: dict[str, Any], xen: dict[str, Any], opts: Options) -> dict[str, Any]:
    info = {**native.get("info", {}), **xen.get("info", {})}
    configs = {}
    for profile in ("domU", "dom0"):
        meta = read_json(Path(info.get(f"{profile}_build", "/nonexistent")) / "metadata.json")
        if meta:
            configs[profile] = {"config_sha256": meta["inputs"]["config_sha256"],
                                "base": meta["inputs"]["base"],
                                "fragments": sorted(Path(f).name
                                                    for f in meta["inputs"]["fragments"]),
                                "series": _series_names(meta["inputs"]["series"])}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "clock": xen.get("clock"),
        "accel": xen.get("accel"),
        "qemu": xen.get("qemu"),
        "cpu": _qemu_arg(xen.get("command", []), "-cpu"),
        "memory_mb": _qemu_arg(xen.get("command", []), "-m"),
        "kernel": {"domU": info.get("domU_kernel"), "dom0": info.get("dom0_kernel")},
        "xen": info.get("xen"),
        "configs": configs,
        "repeats": opts.repeats,
        "scale": opts.scale,
        "domU_cmdline_extra": opts.domu_cmdline,
        "runs": {"native": native.get("dir"), "xen": xen.get("dir")},
    }


def _series_names(series: Any) -> str:
    """The patch series a build carried, for people: its patch names."""
    if isinstance(series, dict) and series.get("patches"):
        return ", ".join(series["patches"])
    return "none"


def _qemu_arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else ""


def boot(scenario: str, options: run.Options, what: str, hint: str = "") -> dict[str, Any]:
    """Run qemu-tests/bench/<scenario>.toml; a run that does not pass is an error."""
    r = run.run(str(BENCH_DIR / f"{scenario}.toml"), options)
    if r["status"] != "PASS":
        raise PvkitError(f"{what} failed: {r['reason']} (console: {r['console_log']}){hint}")
    return r


def run_bench(opts: Options) -> dict[str, Any]:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    out = opts.out or cache_subdir("bench", "results") / stamp
    out.mkdir(parents=True, exist_ok=True)
    pvbench = compile_pvbench()
    env = {"PVK_REPEATS": str(opts.repeats), "PVK_SCALE": str(opts.scale),
           "PVK_MICRO": " ".join(opts.micro), "PVK_IO": "1" if opts.io else "0"}
    common = {"accel": opts.accel, "icount": opts.icount, "env": env,
              "files": {"bin/pvbench": pvbench.read_bytes()}, "domu_cmdline": opts.domu_cmdline}
    results = {}
    for place, scenario in (("native", "native"), ("xen", "xen")):
        progress.step(f"bench: {place} run ({opts.repeats} repeats, scale {opts.scale}, "
                      f"{'icount' if opts.icount else 'real time'})")
        options = run.Options(**common, out=out / place)  # type: ignore[arg-type]
        results[place] = boot(scenario, options, f"bench {place} run")
    native, xen = results["native"], results["xen"]
    per_place = {"native": metrics(native["ktap"].get("domU")),
                 "dom0": metrics(xen["ktap"].get("dom0")),
                 "domU": metrics(xen["ktap"].get("domU"))}
    docs = [native["ktap"].get("domU"), xen["ktap"].get("dom0"), xen["ktap"].get("domU")]
    if opts.pvh:
        # the same scenario and workloads, the domU booted as PVH; dom0's are not repeated
        progress.step("bench: PVH domU run (the domU workloads in a PVH guest)")
        options = run.Options(**{**common,  # type: ignore[arg-type]
                                 "env": {**env, "PVK_DOM0": "0"}}, domu_type="pvh",
                              out=out / "pvh")
        pvh = boot("xen", options, "bench PVH domU run",
                   "; does the domU kernel have CONFIG_XEN_PVH?")
        per_place["pvh"] = metrics(pvh["ktap"].get("domU"))
        docs.append(pvh["ktap"].get("domU"))
        results["pvh"] = pvh
    data = {"meta": _meta(native, xen, opts), "workloads": analyse(per_place, _units(*docs))}
    if "pvh" in results:
        data["meta"]["runs"]["pvh"] = results["pvh"]["dir"]
    if opts.pvstat:
        progress.step("bench: pvstat run (the paravirt ops each workload causes; not timed)")
        r = boot("pvstat", run.Options(**{**common, "icount": False},  # type: ignore[arg-type]
                                       out=out / "pvstat"),
                 "bench pvstat run", "; is the pvstat patch applied?")
        for place in ("dom0", "domU"):
            for workload, ops in _pvstat(r["ktap"].get(place)).items():
                if workload in data["workloads"]:
                    data["workloads"][workload].setdefault("pvstat", {})[place] = ops
        data["meta"]["runs"]["pvstat"] = r["dir"]
    write_json(out / "results.json", data)
    from pvkit import benchreport

    benchreport.write_all(data, out)
    data["dir"] = str(out)
    return data


def compare(a: dict[str, Any], b: dict[str, Any], floor: float = 0.02) -> list[dict[str, Any]]:
    """Changes from result set A to B beyond the measured noise (positive: B is slower)."""
    rows = []
    for name, wa in a["workloads"].items():
        wb = b["workloads"].get(name)
        if not wb:
            continue
        for place, sa in wa["places"].items():
            sb = wb["places"].get(place)
            if not sb or not sa["median"]:
                continue
            change = (sb["median"] - sa["median"]) / sa["median"]
            if wa["higher_is_better"]:
                change = -change
            noise = max(3 * max(sa["spread"], sb["spread"]), floor)
            rows.append({"workload": name, "label": wa["label"], "place": place,
                         "a": sa["median"], "b": sb["median"], "unit": wa["unit"],
                         "change": round(change, 4), "noise": round(noise, 4),
                         "flag": ("slower" if change > 0 else "faster")
                         if abs(change) > noise and not wa.get("informational") else ""})
    return rows


def load_results(path: Path) -> dict[str, Any]:
    """A bench results.json, or a lifecycle scenario's (its `workloads`, see lifecycle.py), or
    the directory holding it, checked before it is compared."""
    target = path / "results.json" if path.is_dir() else path
    what = f"{target}: not a pvkit bench or lifecycle results.json"
    if not target.exists():
        raise PvkitError(f"{target}: no such file; give a bench (or lifecycle scenario) "
                         "results directory or its results.json")
    try:
        data = json.loads(target.read_bytes().decode())
    except UnicodeDecodeError as exc:
        raise PvkitError(f"{what} (not UTF-8 text)") from exc
    except json.JSONDecodeError as exc:
        raise PvkitError(f"{what} (not JSON: {exc})") from exc
    except OSError as exc:
        raise PvkitError(f"{target}: cannot read ({exc.strerror})") from exc
    workloads = data.get("workloads") if isinstance(data, dict) else None
    if not isinstance(workloads, dict):
        raise PvkitError(f"{what} (no 'workloads' table)")
    for name, w in workloads.items():
        places = w.get("places") if isinstance(w, dict) else None
        if not isinstance(places, dict) or not all(
                isinstance(p, dict) and _number(p.get("median")) and _number(p.get("spread"))
                for p in places.values()):
            raise PvkitError(f"{what} (workload '{name}' has no places with a median and "
                             "a spread)")
        w.setdefault("label", name)
        w.setdefault("unit", "")
        w.setdefault("higher_is_better", False)
    return data


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
