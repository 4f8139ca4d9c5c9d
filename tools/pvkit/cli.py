"""pvkit's command line: argparse and thin cmd_* functions over the library."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pvkit import procs, progress
from pvkit.errors import PvkitError


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _show_report(args: argparse.Namespace, data: dict[str, Any],
                 terminal: Callable[[dict[str, Any]], str], plots: str) -> int:
    """A benchmark's results: JSON, or its terminal table and where the report is."""
    if args.json:
        _print_json(data)
    else:
        print(terminal(data))
        print(f"\nreport: {data['dir']}/report.md  ({plots}, results.json beside it)")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from pvkit import host

    installed = host.setup()
    print("installed: " + " ".join(installed) if installed else "host is ready")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from pvkit import host

    results = host.checks()
    if args.json:
        _print_json(host.as_json(results))
    else:
        print(host.report(results))
    return 0 if all(c.ok for c in results) else 1


def cmd_source(args: argparse.Namespace) -> int:
    from pvkit import source

    src = source.resolve(args.tree, update=args.update)
    if args.json:
        _print_json(src.to_json())
    else:
        print(f"Linux {src.version} at {src.root} ({src.origin})")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from pvkit import kconfig, source
    from pvkit.util import write_atomic

    src = source.resolve(args.tree)
    resolved = kconfig.resolve(src, args.profile, args.fragment, args.base)
    if args.output:
        write_atomic(Path(args.output), resolved.text)
    if args.json:
        _print_json({"profile": args.profile, "sha256": resolved.sha256, "base": resolved.base,
                     "fragments": resolved.fragments, "requested": resolved.requested,
                     "output": args.output})
    elif args.output:
        print(f"{args.profile}: {len(resolved.requested)} requested symbols hold; "
              f"wrote {args.output}")
    else:
        sys.stdout.write(resolved.text)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from pvkit import build

    results = {}
    for profile in args.profile or ["domU", "dom0"]:
        b = build.build(profile, **_kernel(args), force=args.force)
        results[profile] = b.metadata | {"dir": str(b.dir)}
    if args.json:
        _print_json(results)
    else:
        for profile, meta in results.items():
            print(f"{profile}: {meta['kernel']['release']} in {meta['dir']} "
                  f"({meta['duration_s']} s, {meta['warnings']} warnings)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from pvkit import build, elf

    target = Path(args.path) if args.path else build.find(args.profile, **_kernel(args)).vmlinux
    if args.diff:
        diff = elf.size_diff(Path(args.diff), target)
        _print_json(diff) if args.json else print(elf.format_diff(diff))
        return 0
    if target.suffix == ".ko":
        b = build.find(args.profile, **_kernel(args))
        from pvkit.kconfig import assignments_of

        ok, message = elf.check_module(target, b.release, assignments_of(
            (b.dir / ".config").read_text()))
        _print_json({"module": str(target), "ok": ok, "message": message}) if args.json \
            else print(message)
        return 0 if ok else 1
    report = elf.inspect_kernel(target)
    _print_json(report) if args.json else print(elf.format_kernel(report))
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from pvkit import build, images

    dom0 = build.find("dom0", **_kernel(args))
    domu = build.find("domU", **_kernel(args))
    xen, version = images.xen_binary()
    out = {"xen": str(xen), "xen_version": version, "dom0_image": str(images.dom0_image(dom0)),
           "domU_initramfs": str(images.domu_initramfs(domu, ("iperf3",)))}
    _print_json(out) if args.json else print("\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def _run_options(args: argparse.Namespace, build_missing: bool, name: str) -> Any:
    from pvkit.run import Options

    out = Path(args.out) / Path(name).stem if args.out else None
    return Options(accel=args.accel, icount=args.icount, tree=args.tree,
                   fragments=tuple(args.fragment), base=args.base,
                   build_missing=build_missing, out=out, env=dict(args.env))


def _scenario_runs(args: argparse.Namespace, names: list[str], build_missing: bool) -> int:
    from pvkit import lifecycle, report, run, scenarios

    for name in names:  # every name is checked before anything is built or booted
        scenarios.find(name)
    results = []
    for name in names:
        try:
            result = run.run(name, _run_options(args, build_missing, name))
        except PvkitError as exc:
            result = {"scenario": name, "status": "ERROR", "reason": str(exc), "stages": [],
                      "wall_s": 0.0, "dir": ""}
        results.append(result)
        # with --json, stdout is the JSON document alone: the lines go to stderr
        out = sys.stderr if args.json else sys.stdout
        print(report.scenario_line(result), file=out, flush=True)
        if result.get("workloads"):
            print(lifecycle.table(result), file=out, flush=True)
        if result["status"] == "FAIL" and result.get("boot", {}).get("tail"):
            print("  console tail:\n    " + "\n    ".join(result["boot"]["tail"][-15:]),
                  file=out)
    if args.json:
        _print_json(results)
    else:
        print(report.summary_table(results))
    return 0 if all(r["status"] == "PASS" for r in results) else 1


def cmd_boot(args: argparse.Namespace) -> int:
    return _scenario_runs(args, args.scenario, build_missing=False)


def cmd_run(args: argparse.Namespace) -> int:
    from pvkit import scenarios, watch

    names = args.scenario or scenarios.available()
    rc = _scenario_runs(args, names, build_missing=True)
    if not args.watch:
        return rc
    paths = watch.inputs(args.tree, args.fragment, args.base)
    while True:  # until Ctrl-C (the error boundary reports it)
        progress.notice(f"watching {len(paths)} places for changes (Ctrl-C to stop)")
        files = watch.wait_for_change(paths)
        progress.notice(f"changed: {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}")
        try:
            _scenario_runs(args, names, build_missing=True)
        except PvkitError as exc:  # a broken edit: report it and keep watching
            print(f"pvkit: error: {exc}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    from pvkit import bench, benchreport

    if args.compare:
        a, b = (bench.load_results(Path(p)) for p in args.compare)
        rows = bench.compare(a, b)
        flagged = [r for r in rows if r["flag"]]
        if args.json:
            _print_json(rows)
        else:
            print(benchreport.compare_table(rows))
            print(f"{len(flagged)} change(s) beyond the measured noise")
        return 1 if any(r["flag"] == "slower" for r in rows) else 0
    opts = bench.Options(repeats=args.repeats, scale=args.scale, micro=tuple(args.micro),
                         icount=not args.realtime, accel="tcg" if not args.realtime
                         else args.accel, domu_cmdline=args.cmdline_extra,
                         pvstat=not args.no_pvstat, pvh=not args.no_pvh,
                         out=Path(args.out) if args.out else None)
    data = bench.run_bench(opts)
    return _show_report(args, data, benchreport.terminal, "plots")


def cmd_patch(args: argparse.Namespace) -> int:
    from pvkit import patches, source
    from pvkit.paths import cache_subdir
    from pvkit.util import write_atomic

    src = source.resolve(args.tree)
    if args.action == "list":
        rows = patches.status(src)
        _print_json(rows) if args.json else print(
            "\n".join(f"{r['status']:<12} {r['kind']:<9} {r['patch']}" for r in rows)
            or "empty series")
    elif args.action == "gen":
        out = Path(args.out) if args.out else cache_subdir("patches", "rendered")
        for p in patches.materialize(src):
            write_atomic(out / p.name, p.text)
            print(out / p.name)
    elif args.action == "check":
        rows = patches.check(src)
        _print_json(rows) if args.json else print(
            "\n".join(f"{r['status']}: {r['patch']}" for r in rows) or "empty series")
        return 0 if all(not r["status"].startswith("fails") for r in rows) else 1
    elif args.action == "apply":
        print(patches.apply(src))
    else:
        print(patches.revert(src))
    return 0


def cmd_drivers(args: argparse.Namespace) -> int:
    from pvkit import build, drivers

    names = args.name or drivers.available()
    if args.intree_patch:
        from pvkit import patches, source
        from pvkit.gen import intree
        from pvkit.paths import cache_subdir
        from pvkit.util import write_atomic

        read = patches.pristine_reader(source.resolve(args.tree))
        for name in names:
            out = Path(args.intree_patch) if args.intree_patch != "-" and len(names) == 1 \
                else cache_subdir("patches", "rendered") / f"{name}-in-tree.patch"
            try:
                write_atomic(out, intree.render(name, read))
            except OSError as exc:
                why = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
                raise PvkitError(f"--intree-patch {out}: cannot write it ({why})") from exc
            print(out)
        return 0
    if args.checkpatch:
        root = build.prepare_source(args.tree).root
        problems = [p for n in names for p in drivers.checkpatch(n, root)]
        print("\n".join(problems) if problems else
              f"checkpatch --strict: clean ({', '.join(names)})")
        return 1 if problems else 0
    kernels = {p: build.find(p, **_kernel(args)) for p in args.profile or ["dom0", "domU"]}
    builds = drivers.build_all(names, kernels)
    rows = [{"driver": b.name, "profile": b.profile, "kernel": b.metadata["kernel"]["release"],
             "modules": {m: str(path) for m, path in b.modules.items()},
             "warnings": len(b.metadata["warnings"])}
            for bs in builds.values() for b in bs]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        for module, path in r["modules"].items():
            print(f"{r['profile']:<5} {module:<14} {path}  ({r['warnings']} warnings)")
    return 0


def cmd_blkbench(args: argparse.Namespace) -> int:
    from pvkit import blkbench

    clocks = ("icount", "realtime") if args.clock == "both" else (args.clock,)
    data = blkbench.run_blkbench(blkbench.Options(
        repeats=args.repeats, scale=args.scale, clocks=clocks,
        out=Path(args.out) if args.out else None))
    return _show_report(args, data, blkbench.terminal, "blk.png")


def cmd_iobench(args: argparse.Namespace) -> int:
    from pvkit import blkbench, iobench, netbench

    suites = {"blk": [blkbench.SUITE], "net": [netbench.SUITE],
              "all": [blkbench.SUITE, netbench.SUITE]}[args.what]
    clocks = ("icount", "realtime") if args.clock == "both" else (args.clock,)
    results = iobench.run_suites(suites, iobench.Options(
        repeats=args.repeats, scale=args.scale, clocks=clocks,
        out=Path(args.out) if args.out else None))
    if args.json:
        _print_json(results)
        return 0
    for suite, data in zip(suites, results, strict=True):
        print(iobench.terminal(suite, data))
        print(f"\nreport: {data['dir']}/report.md  ({suite.plot_file}, results.json beside it)\n")
    return 0


def cmd_gen(args: argparse.Namespace) -> int:
    from pvkit.gen import proto

    for path in proto.generate_all():
        print(path)
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from pvkit import matrix
    from pvkit.util import write_atomic

    m = matrix.derive(args.scenario, args.tree, args.clock)
    if args.gitlab_pipeline:
        write_atomic(Path(args.gitlab_pipeline), matrix.gitlab_pipeline(m))
    if args.json:
        _print_json(m.to_json())
    elif args.github_output:
        sys.stdout.write(matrix.github_outputs(m))
    else:
        print(matrix.table(m))
        if args.gitlab_pipeline:
            print(f"child pipeline: {args.gitlab_pipeline}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from pvkit import report, run

    result = run.parse(Path(args.console_log), args.scenario,
                       Path(args.out) if args.out else None)
    if args.json:
        _print_json(result)
    else:
        print(report.scenario_line(result))
    return 0 if result["status"] == "PASS" else 1


def cmd_summary(args: argparse.Namespace) -> int:
    from pvkit import summary

    results = summary.collect([Path(p) for p in args.results])
    if args.markdown:
        sys.stdout.write(summary.markdown(results))
    elif args.github_annotations:
        sys.stdout.write(summary.github_annotations(results))
    else:
        print(summary.text(results))
    return 0 if all(r["status"] == "PASS" for r in results) else 1


def cmd_bundle(args: argparse.Namespace) -> int:
    from pvkit import bundle

    if args.action == "export":
        if len(args.dir) != 1:
            raise PvkitError("bundle export: give one directory to write the bundle to")
        rows = [bundle.export(args.profile, Path(args.dir[0]), tree=args.tree,
                              fragments=args.fragment)]
    else:
        rows = [bundle.import_(Path(d)) for d in args.dir]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['profile']}: {r.get('status', 'exported')} {r['release']} "
                  f"({r['bytes'] / 1e6:.1f} MB) in {r['dir']}")
    return 0


def _add_tree(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", help="use this kernel tree instead of Debian's linux-source")


def _add_kernel(p: argparse.ArgumentParser) -> None:
    """The options that pick a kernel build: the same on every verb that builds or uses one."""
    _add_tree(p)
    p.add_argument("--fragment", action="append", type=Path, default=[],
                   help="extra Kconfig fragment (CONFIG_X=y lines); later fragments win over "
                   "the profile's values")
    p.add_argument("--base", default="tinyconfig",
                   help="tinyconfig (default), defconfig, allnoconfig or a .config file")


def _kernel(args: argparse.Namespace) -> dict[str, Any]:
    return {"tree": args.tree, "fragments": list(args.fragment), "base": args.base}


def _add_boot_options(p: argparse.ArgumentParser) -> None:
    _add_kernel(p)
    p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto",
                   help="auto: KVM only if a probe boot of the kernel works, else TCG")
    p.add_argument("--icount", action="store_true",
                   help="deterministic guest time (QEMU -icount shift=0,sleep=off; TCG)")
    p.add_argument("--out", help="results directory: DIR/<scenario>/ per scenario (default: in "
                   "the cache)")
    p.add_argument("--env", action="append", type=_env_pair, default=[], metavar="NAME=VALUE",
                   help="exported to the guests' tests (e.g. PVK_MIGRATE_REPEATS=10)")
    p.add_argument("--json", action="store_true")


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE (a shell variable name)")
    return name, value


def _add_iobench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scale", type=float, default=0.1, help="fio size: 256 MiB x scale, "
                   "clamped to 64..128 MiB (the block suite)")
    p.add_argument("--clock", choices=("icount", "realtime", "both"), default="both")
    p.add_argument("--out", help="results directory (default: in the cache)")
    p.add_argument("--json", action="store_true")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pvkit", description=__doc__)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = ap.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("setup", help="install the host tools pvkit needs (apt-get, as root)")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("doctor", help="check host tools, disk and accelerator")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("source", help="fetch/extract the kernel source, print its version")
    _add_tree(p)
    p.add_argument("--update", action="store_true",
                   help="ask apt for the newest linux-source (default: the one in the cache)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_source)

    for name, func, helptext in (("config", cmd_config, "resolve a profile's .config"),
                                 ("build", cmd_build, "build kernels (cached)")):
        p = sub.add_parser(name, help=helptext)
        _add_kernel(p)
        p.add_argument("--profile", choices=("dom0", "domU"), required=name == "config",
                       action="append" if name == "build" else "store")
        p.add_argument("--json", action="store_true")
        if name == "config":
            p.add_argument("-o", "--output", help="write the .config here")
        else:
            p.add_argument("--force", action="store_true", help="run make even if up to date")
        p.set_defaults(func=func)

    p = sub.add_parser("inspect", help="ELF checks: Xen notes, paravirt sites, sizes, vermagic")
    _add_kernel(p)
    p.add_argument("path", nargs="?", help="vmlinux or .ko (default: the profile's vmlinux)")
    p.add_argument("--profile", choices=("dom0", "domU"), default="domU")
    p.add_argument("--diff", metavar="OTHER", help="size diff of OTHER (old) against the target")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("patch", help="the paravirt_ops patch series: list, gen, check, "
                       "apply, revert")
    p.add_argument("action", choices=("list", "gen", "check", "apply", "revert"))
    _add_tree(p)
    p.add_argument("--out", help="with gen: directory for the rendered patches")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_patch)

    p = sub.add_parser("drivers", help="build drivers/ (Kbuild, M=) against the built kernels, "
                       "or --checkpatch them")
    p.add_argument("name", nargs="*", help="drivers/<name> (default: all)")
    _add_kernel(p)
    p.add_argument("--profile", choices=("dom0", "domU"), action="append")
    p.add_argument("--checkpatch", action="store_true",
                   help="run the kernel's scripts/checkpatch.pl --strict on the sources")
    p.add_argument("--intree-patch", nargs="?", const="-", metavar="FILE",
                   help="render the in-tree integration patch (drivers/<name> into the tree "
                   "directory its intree.toml names, with Kconfig and Makefile), to FILE or the "
                   "cache")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drivers)

    p = sub.add_parser("gen", help="generate each protocol's C header and Python mirror from "
                       "its spec, drivers/*/*.spec.toml (blkif, netif)")
    p.set_defaults(func=cmd_gen)

    p = sub.add_parser("images", help="assemble Xen, the dom0 image and the domU initramfs")
    _add_kernel(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("boot", help="boot scenarios with the kernels already built")
    p.add_argument("--scenario", action="append", required=True)
    _add_boot_options(p)
    p.set_defaults(func=cmd_boot)

    p = sub.add_parser("bench", help="overhead: native vs dom0 vs PV domU; or --compare A B")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scale", type=float, default=0.1,
                   help="work per repeat, times pvbench's base counts (0.05: quick)")
    p.add_argument("--micro", action="append", default=[], help="only these microbenchmarks")
    p.add_argument("--realtime", action="store_true",
                   help="wall-clock guest time instead of icount (for KVM hosts)")
    p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto",
                   help="with --realtime: accelerator")
    p.add_argument("--cmdline-extra", default="",
                   help="append to the guest kernel command line (e.g. to inject a slowdown)")
    p.add_argument("--no-pvstat", action="store_true",
                   help="skip the pvstat pass (the paravirt ops each workload causes)")
    p.add_argument("--no-pvh", action="store_true",
                   help="skip the PVH domU boot (the domU workloads in a PVH guest)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="compare two results (dirs or results.json); exit 1 if B is slower")
    p.add_argument("--out", help="results directory (default: in the cache)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("blkbench", help="fio over pvblk vs upstream xen-blkfront/blkback, "
                       "virtio-blk natively as the ceiling (= iobench --what blk)")
    _add_iobench_options(p)
    p.set_defaults(func=cmd_blkbench)

    p = sub.add_parser("matrix", help="the CI matrix (kernel builds and boot cells) derived "
                       "from qemu-tests/")
    p.add_argument("--scenario", action="append", default=[], metavar="GLOB",
                   help="scenarios to boot (glob; repeatable; default: all in qemu-tests/)")
    p.add_argument("--tree", action="append", default=[], metavar="[NAME=]PATH",
                   help="a kernel tree to build and boot (repeatable; default: Debian's "
                   "linux-source)")
    p.add_argument("--clock", action="append", default=[], metavar="icount,realtime",
                   help="clocks to boot under (default: icount)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--github-output", action="store_true",
                     help="print `builds=` and `boots=` lines for $GITHUB_OUTPUT "
                     "(strategy.matrix JSON)")
    p.add_argument("--gitlab-pipeline", metavar="FILE",
                   help="write the GitLab child pipeline (build, boot and summary jobs) to FILE")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("parse", help="re-derive results.json and junit.xml from a saved "
                       "console log")
    p.add_argument("console_log", metavar="CONSOLE_LOG")
    p.add_argument("--scenario", help="the scenario the log is from (default: named in the "
                   "log)")
    p.add_argument("--out", help="write results.json and junit.xml here (default: beside the "
                   "log)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("summary", help="summarise results: table, --markdown or "
                       "--github-annotations; exit 1 if a run failed")
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results.json files or directories holding them")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true",
                     help="a markdown table with the failures' details ($GITHUB_STEP_SUMMARY)")
    fmt.add_argument("--github-annotations", action="store_true",
                     help="::error lines naming the scenario, stage and reason")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("bundle", help="carry a built kernel between CI jobs: export it to "
                       "a directory, import it into this cache")
    p.add_argument("action", choices=("export", "import"))
    p.add_argument("dir", nargs="+", metavar="DIR")
    p.add_argument("--profile", choices=("dom0", "domU"), default="domU",
                   help="with export: the kernel to export")
    _add_tree(p)
    p.add_argument("--fragment", action="append", type=Path, default=[],
                   help="with export: the build with this extra Kconfig fragment (as a "
                   "scenario's [kernel] table or `pvkit build --fragment` names it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("iobench", help="the split drivers against the upstream pairs: fio over "
                       "pvblk (blk), iperf3 over pvnet (net), or both (all)")
    p.add_argument("--what", choices=("blk", "net", "all"), default="all")
    _add_iobench_options(p)
    p.set_defaults(func=cmd_iobench)

    p = sub.add_parser("run", help="build what is missing, then run scenarios (default: all)")
    p.add_argument("--scenario", action="append")
    p.add_argument("--watch", action="store_true",
                   help="then run them again on every change of the tree (--tree), drivers, "
                   "scenarios, guest scripts, profiles or fragments")
    _add_boot_options(p)
    p.set_defaults(func=cmd_run)
    return ap


def main(argv: list[str] | None = None) -> int:
    """The one error boundary: a PvkitError (or an OS error naming a file) is one line on
    stderr and status 2; SIGINT, SIGTERM and SIGHUP end pvkit with its children killed."""
    args = parser().parse_args(argv)
    progress.set_quiet(args.quiet)
    if threading.current_thread() is threading.main_thread():
        procs.install_signal_handlers()
    try:
        return int(args.func(args))
    except PvkitError as exc:
        print(f"pvkit: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pvkit: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (e.g. `pvkit inspect | head`): not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except procs.Interrupted as exc:
        print(f"pvkit: interrupted ({exc.args[0]}); stopped what was running",
              file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("pvkit: interrupted; stopped what was running", file=sys.stderr)
        return 130


def _one_line(message: str) -> str:
    """Errors are one line, except where the message itself is a list (kconfig's
    explanations), which stays as it is."""
    return message if message.startswith("requested config did not hold:") else \
        " ".join(message.split("\n"))
