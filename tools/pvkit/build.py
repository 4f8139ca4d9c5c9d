"""Kernel builds: `make O=<cache>/build/...` with ccache, cached by a content key.

The build directory is named after the source and the configuration; the content key also
covers the tree's fingerprint, the toolchain and this recipe. When `metadata.json` in the build
directory records the same key and its artifacts exist, make is not run at all.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvkit import kconfig, patches, procs, progress
from pvkit import source as source_mod
from pvkit.errors import PvkitError
from pvkit.paths import cache_dir, cache_subdir
from pvkit.util import (
    first_line,
    flocked,
    read_json,
    sha256_file,
    sha256_text,
    write_atomic,
    write_json,
)

RECIPE_VERSION = "1"
ARTIFACTS = ("arch/x86/boot/bzImage", "vmlinux", "System.map", ".config")
_COMPILE_LINE = re.compile(r"^  ([A-Z][A-Z0-9_]*(?: \[M\])?)\s+(\S+)")
ERROR_LINE = re.compile(
    r"^(?P<file>[^\s:]+):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<msg>.*)")


@dataclass(frozen=True)
class Build:
    profile: str
    dir: Path
    metadata: dict[str, Any]

    @property
    def bzimage(self) -> Path:
        return self.dir / "arch/x86/boot/bzImage"

    @property
    def vmlinux(self) -> Path:
        return self.dir / "vmlinux"

    @property
    def modroot(self) -> Path:
        return self.dir / "modroot"

    @property
    def release(self) -> str:
        return str(self.metadata["kernel"]["release"])


def prepare_source(tree: str | None) -> source_mod.Source:
    """The source to build: pvkit's own copy of linux-source carries the patch series (applied
    atomically, a no-op when already applied); a user's --tree is used as it is."""
    src = source_mod.resolve(tree)
    if src.managed and not series_current(src):
        patches.apply(src)
    return src


def series_current(src: source_mod.Source) -> bool:
    """Does pvkit's own tree carry exactly the repository's series (read-only)?"""
    series = patches.materialize(src)
    if not series:
        return patches.state_of(src) == "none"
    return patches.applied_id(src) == patches.series_id(series)


def toolchain() -> dict[str, str]:
    def version(cmd: list[str]) -> str:
        try:
            return first_line(subprocess.run(cmd, capture_output=True, text=True).stdout)
        except FileNotFoundError:
            return "missing"

    return {
        "gcc": version([kconfig.compiler(), "--version"]),
        "ld": version(["ld", "--version"]),
        "make": version(["make", "--version"]),
        "ccache": version(["ccache", "--version"]),
    }


def build_env(src: source_mod.Source) -> dict[str, str]:
    """Environment for make: ccache through PATH, pinned build identity for reproducibility.

    No CCACHE_BASEDIR: every compile names the tree through the profile's slot (see
    `make_command`), the same absolute path for any tree, so ccache hits across trees."""
    env = dict(os.environ)
    if Path("/usr/lib/ccache").is_dir():
        env["PATH"] = "/usr/lib/ccache:" + env.get("PATH", "")
    env["CCACHE_DIR"] = str(cache_subdir("ccache"))
    env.pop("CCACHE_BASEDIR", None)
    env["CCACHE_NOHASHDIR"] = "1"
    env.setdefault("CCACHE_MAXSIZE", "5G")
    stamp = (src.root / "Makefile").stat().st_mtime
    env["KBUILD_BUILD_TIMESTAMP"] = email.utils.formatdate(stamp, usegmt=True)
    env["KBUILD_BUILD_USER"] = "pvkit"
    env["KBUILD_BUILD_HOST"] = "pvkit"
    env["KBUILD_BUILD_VERSION"] = "1"
    env["LC_ALL"] = "C"
    return env


def slot(profile: str) -> Path:
    """The path every build of `profile` names its source tree by (a symlink to the tree being
    built, re-pointed under a lock by each build): compile commands, and so ccache keys, are
    then the same for any copy of a tree wherever it lives."""
    return cache_subdir("slots") / profile


def make_command(src: source_mod.Source, out: Path, *targets: str,
                 srctree: Path | None = None, jobs: int | None = None) -> list[str]:
    cmd = ["make", "-C", str(src.root), f"O={out}", "ARCH=x86_64", f"CC={kconfig.compiler()}",
           f"-j{jobs or os.cpu_count() or 1}"]
    if srctree is not None:
        cmd.append(f"srctree={srctree}")
    return [*cmd, *targets]


def _ccache_stats(env: dict[str, str]) -> dict[str, int]:
    try:
        text = subprocess.run(
            ["ccache", "--print-stats"], capture_output=True, text=True, env=env
        ).stdout
    except FileNotFoundError:
        return {}
    stats: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        if value.strip().isdigit():
            stats[key] = int(value)
    return stats


def _ccache_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    hits = ("direct_cache_hit", "preprocessed_cache_hit")
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in (*hits, "cache_miss")}
    return {"hits": delta[hits[0]] + delta[hits[1]], "misses": delta["cache_miss"]}


def keys(src: source_mod.Source, config_sha: str, fingerprint: str) -> tuple[str, str]:
    """(build directory key, content key)."""
    dir_key = sha256_text(src.origin, fingerprint if src.managed else "", config_sha)
    tools = toolchain()
    content_key = sha256_text(dir_key, fingerprint, tools["gcc"], tools["ld"], RECIPE_VERSION)
    return dir_key, content_key


def _first_error(log: Path) -> str:
    fallback = ""
    with log.open(errors="replace") as handle:
        for line in handle:
            if m := ERROR_LINE.match(line):
                return f"{m['file']}:{m['line']}: {m['msg'].strip()}"
            if not fallback and ("*** " in line or "Error " in line):
                fallback = line.strip()
    return fallback or "see the log"


def _run_make(cmd: list[str], env: dict[str, str], log: Path, label: str, expect: int,
              keep_fds: tuple[int, ...] = ()) -> None:
    """Run make, tethered to pvkit (procs); `keep_fds` (the locks) stay held by make and its
    children, so a lock cannot be released while an orphan could still write the build."""
    ticker = progress.Ticker(5.0)
    count = 0
    with log.open("a") as logf:
        logf.write(f"$ {shlex.join(cmd)}\n")
        logf.flush()
        with procs.tethered(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", pass_fds=keep_fds) as child:
            assert child.proc.stdout is not None
            for line in child.proc.stdout:
                logf.write(line)
                if m := _COMPILE_LINE.match(line):
                    count += 1
                    if ticker.due():
                        pct = f" ~{min(99, 100 * count // expect)}%" if expect else ""
                        progress.step(f"build {label}: {count} steps{pct} ({m.group(1)} "
                                      f"{m.group(2)})")
            rc = child.wait()
    if rc != 0:
        raise PvkitError(f"build {label} failed: {_first_error(log)} (full log: {log})")


def _count_steps(log: Path) -> int:
    with log.open(errors="replace") as handle:
        return sum(1 for line in handle if _COMPILE_LINE.match(line))


def _hint(profile: str, tree: str | None, fragments: list[Path] | None, base: str) -> str:
    """The `pvkit build` command that makes this build."""
    args = [f"--profile {profile}"] + ([f"--tree {tree}"] if tree else [])
    args += [f"--fragment {f}" for f in fragments or []]
    args += [f"--base {base}"] if base != "tinyconfig" else []
    return "pvkit build " + " ".join(args)


def up_to_date(profile: str, *, tree: str | None = None, fragments: list[Path] | None = None,
               base: str = "tinyconfig") -> bool:
    """Would `build` return without running make? (read-only, like `find`)"""
    try:
        find(profile, tree=tree, fragments=fragments, base=base)
    except PvkitError:
        return False
    return True


def build(profile: str, *, tree: str | None = None, fragments: list[Path] | None = None,
          base: str = "tinyconfig", force: bool = False, build_dir: Path | None = None,
          jobs: int | None = None) -> Build:
    """Configure and build a profile; returns at once when the content key matches."""
    t0 = time.monotonic()
    src = prepare_source(tree)
    # a shared hold on the tree: nobody applies or reverts patches while it is read and built
    with source_mod.tree_lock(src, exclusive=False) as tree_fd:
        fingerprint = source_mod.fingerprint(src)
        resolved = kconfig.resolve(src, profile, fragments, base)
        dir_key, content_key = keys(src, resolved.sha256, fingerprint)
        out = build_dir or cache_subdir("build") / f"{profile}-{dir_key[:16]}"
        with _locked(out) as out_fd:
            meta_path = out / "metadata.json"
            meta = read_json(meta_path) if meta_path.exists() else None
            if (not force and meta and meta.get("content_key") == content_key
                    and all((out / a).exists() for a in ARTIFACTS)):
                progress.step(f"build {profile}: up to date ({out})")
                return Build(profile, out, meta)
            return _do_build(profile, src, resolved, out, dir_key, content_key, fingerprint,
                             t0, (tree_fd, out_fd), jobs)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[int]:
    """One make per build directory: another pvkit process building it is waited for (and
    its result then reused), never raced."""
    def waiting() -> None:
        progress.step(f"build: waiting for another pvkit building {out.name}")

    with flocked(out.with_name(out.name + ".lock"), on_wait=waiting) as fd:
        yield fd


@contextlib.contextmanager
def _slot_for(profile: str, src: source_mod.Source) -> Iterator[tuple[Path, int]]:
    """The profile's slot pointed at `src` for as long as the block runs (see `slot`)."""
    link = slot(profile)

    def waiting() -> None:
        progress.step(f"build: waiting for another pvkit building a {profile} kernel")

    with flocked(link.with_name(link.name + ".lock"), on_wait=waiting) as fd:
        if not link.is_symlink() or Path(os.readlink(link)) != src.root:
            tmp = link.with_name(f".{link.name}.{os.getpid()}")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(src.root)
            os.replace(tmp, link)
        yield link, fd


def _do_build(profile: str, src: source_mod.Source, resolved: kconfig.Resolved, out: Path,
              dir_key: str, content_key: str, fingerprint: str, t0: float,
              locks: tuple[int, ...] = (), jobs: int | None = None) -> Build:
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "metadata.json"
    meta_path.unlink(missing_ok=True)  # a stale record must never vouch for a partial build
    config = out / ".config"
    if not config.exists() or config.read_text() != resolved.text:
        write_atomic(config, resolved.text)
    env = build_env(src)
    log = out / "build.log"
    log.write_text("")
    previous = [read_json(p) for p in out.parent.glob(f"{profile}-*/metadata.json")]
    expect = max((m.get("steps", 0) for m in previous if m), default=0)
    before = _ccache_stats(env)
    progress.step(f"build {profile}: make bzImage modules in {out}")
    modroot = out / "modroot"
    with _slot_for(profile, src) as (srctree, slot_fd):
        keep = (*locks, slot_fd)
        cmd = make_command(src, out, "bzImage", "modules", srctree=srctree, jobs=jobs)
        _run_make(cmd, env, log, profile, expect, keep)
        built = _built_modules(out)
        stamp = modroot / ".pvkit-installed"
        if not stamp.is_file() or stamp.read_text() != built:
            # a kernel edit that leaves every module as it was skips this second make
            shutil.rmtree(modroot, ignore_errors=True)
            install = make_command(src, out, "modules_install", f"INSTALL_MOD_PATH={modroot}",
                                   "INSTALL_MOD_STRIP=1", srctree=srctree, jobs=jobs)
            _run_make(install, env, log, f"{profile} modules_install", 0, keep)
            write_atomic(stamp, built)
    _unslot(out, src, profile)
    after = _ccache_stats(env)
    if kconfig.assignments_of(config.read_text()) != kconfig.assignments_of(resolved.text):
        raise PvkitError(f"build {profile}: make rewrote {config}; kconfiglib and kbuild "
                         "disagree (compare it with `pvkit config` output)")
    release = (out / "include/config/kernel.release").read_text().strip()
    log_text = log.read_text(errors="replace")
    modules = sorted(str(p.relative_to(modroot)) for p in modroot.rglob("*.ko"))
    meta = {
        "profile": profile,
        "content_key": content_key,
        "dir_key": dir_key,
        "kernel": {"version": src.version, "release": release},
        "inputs": {
            "source": src.to_json(),
            "source_fingerprint": fingerprint,
            "series": _series_of(src),
            "base": resolved.base,
            "fragments": {f: sha256_file(Path(f)) for f in resolved.fragments},
            "config_sha256": resolved.sha256,
        },
        "toolchain": toolchain(),
        "duration_s": round(time.monotonic() - t0, 2),
        "steps": _count_steps(log),
        "warnings": len(re.findall(r"\bwarning:", log_text)),
        "ccache": _ccache_delta(before, after),
        "artifacts": {a: sha256_file(out / a) for a in ARTIFACTS},
        "modules": modules,
        # what the images and driver builds depend on: they are re-made only when it changes
        "modules_sha256": tree_digest(modroot),
        "module_abi": module_abi(src, out),
        "log": str(log),
        "reproducer": reproducer(src, out, env, profile),
    }
    script = out / "reproducer.sh"
    write_atomic(script, meta["reproducer"])
    script.chmod(0o755)
    write_json(meta_path, meta)
    progress.step(f"build {profile}: done in {meta['duration_s']} s, {meta['steps']} steps, "
                  f"ccache {meta['ccache']['hits']} hits / {meta['ccache']['misses']} misses")
    return Build(profile, out, meta)


def _unslot(out: Path, src: source_mod.Source, profile: str) -> None:
    """Point the build directory's own Makefile and `source` link (which kbuild wrote with
    the slot's path) at the real tree, so `make -C <build dir>` works on its own, whatever
    tree the slot points at later."""
    makefile = out / "Makefile"
    if makefile.is_file():
        link = str(slot(profile))
        text = makefile.read_text()
        if link in text:
            write_atomic(makefile, text.replace(link, str(src.root)))
    source_link = out / "source"
    if source_link.is_symlink() and Path(os.readlink(source_link)) != src.root:
        tmp = out / ".source.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(src.root)
        os.replace(tmp, source_link)


def _built_modules(out: Path) -> str:
    """The modules make left in the build directory: names, sizes and times (modules.order)."""
    order = out / "modules.order"
    names = order.read_text().split() if order.is_file() else []
    parts = [order.read_text() if order.is_file() else ""]
    for name in names:
        ko = out / name.removesuffix(".o")
        ko = ko.with_suffix(".ko")
        st = ko.stat() if ko.exists() else None
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}" if st else f"{name}:missing")
    return sha256_text(*parts)


def tree_digest(root: Path) -> str:
    """The content of a directory tree (paths and file contents; stamps excluded)."""
    if not root.is_dir():
        return sha256_text("empty")
    parts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith(".pvkit-"):
            parts.append(f"{path.relative_to(root)}:{sha256_file(path)}")
        elif path.is_symlink():
            parts.append(f"{path.relative_to(root)}->{os.readlink(path)}")
    return sha256_text(*parts)


def module_abi(src: source_mod.Source, out: Path) -> str:
    """What an out-of-tree module build against this kernel sees: the exported symbols, the
    configuration, the release, the generated headers and the tree's headers (their sizes and
    times). An edit of a kernel .c file leaves it unchanged, so driver builds are reused."""
    parts = [(out / "include/config/kernel.release").read_text()]
    for rel in ("Module.symvers", ".config", "include/generated/autoconf.h",
                "include/generated/utsrelease.h"):
        path = out / rel
        parts.append(f"{rel}:{sha256_file(path) if path.is_file() else 'missing'}")
    for top in (src.root / "include", src.root / "arch/x86/include",
                out / "arch/x86/include/generated"):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                st = os.stat(os.path.join(dirpath, name))
                parts.append(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}")
    return sha256_text(*parts)


def _series_of(src: source_mod.Source) -> dict[str, Any]:
    """The series the tree carried: its id and patch names ({} for none)."""
    state = patches.applied_id(src)
    if state is None:
        return {}
    return {"id": state, "patches": [p.removesuffix(".j2") for p in
                                     patches.applied_patches(src)]}


def reproducer(src: source_mod.Source, out: Path, env: dict[str, str], profile: str) -> str:
    """A shell script that re-runs this build's make exactly (the .config is in place)."""
    pinned = [f"export {k}={shlex.quote(env[k])}"
              for k in ("KBUILD_BUILD_TIMESTAMP", "KBUILD_BUILD_USER", "KBUILD_BUILD_HOST",
                        "KBUILD_BUILD_VERSION", "CCACHE_DIR", "CCACHE_NOHASHDIR", "LC_ALL")]
    link = slot(profile)
    make = shlex.join(make_command(src, out, "bzImage", "modules", srctree=link))
    return "\n".join([
        "#!/bin/sh",
        f"# pvkit build {profile}: re-run its make in {out}",
        "set -e",
        *pinned,
        'export PATH="/usr/lib/ccache:$PATH"',
        "# the compiles name the tree through this slot (one path for every tree: ccache hits)",
        f"ln -sfn {shlex.quote(str(src.root))} {shlex.quote(str(link))}",
        make,
        "",
    ])


def find(profile: str, *, tree: str | None = None, fragments: list[Path] | None = None,
         base: str = "tinyconfig") -> Build:
    """The up-to-date build of a profile, or an error naming the command that makes it.
    A lookup only reads: it never applies or reverts the patch series."""
    src = source_mod.resolve(tree)
    hint = _hint(profile, tree, fragments, base)
    with source_mod.tree_lock(src, exclusive=False):
        if src.managed and not series_current(src):
            raise PvkitError(f"no up-to-date {profile} kernel build: the patch series in "
                             f"kernel-patches/ is not the one the source carries; run `{hint}`")
        resolved = kconfig.resolve(src, profile, fragments, base)
        dir_key, content_key = keys(src, resolved.sha256, source_mod.fingerprint(src))
    out = cache_dir() / "build" / f"{profile}-{dir_key[:16]}"
    meta = read_json(out / "metadata.json")
    if not meta or meta.get("content_key") != content_key:
        raise PvkitError(f"no up-to-date {profile} kernel build; run `{hint}`")
    return Build(profile, out, meta)
