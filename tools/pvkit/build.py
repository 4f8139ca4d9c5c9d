"""Kernel builds: `make O=<cache>/build/...` with ccache, cached by a content key.

The build directory is named after the source and the configuration; the content key also
covers the tree's fingerprint, the toolchain and this recipe. When `metadata.json` in the build
directory records the same key and its artifacts exist, make is not run at all.
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
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

from pvkit import kconfig, patches, progress
from pvkit import source as source_mod
from pvkit.errors import PvkitError
from pvkit.paths import cache_dir, cache_subdir
from pvkit.util import first_line, read_json, sha256_file, sha256_text, write_atomic, write_json

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
    if src.managed:
        patches.apply(src)
    return src


def toolchain() -> dict[str, str]:
    def version(cmd: list[str]) -> str:
        try:
            return first_line(subprocess.run(cmd, capture_output=True, text=True).stdout)
        except FileNotFoundError:
            return "missing"

    return {
        "gcc": version(["gcc", "--version"]),
        "ld": version(["ld", "--version"]),
        "make": version(["make", "--version"]),
        "ccache": version(["ccache", "--version"]),
    }


def build_env(src: source_mod.Source) -> dict[str, str]:
    """Environment for make: ccache through PATH, pinned build identity for reproducibility."""
    env = dict(os.environ)
    if Path("/usr/lib/ccache").is_dir():
        env["PATH"] = "/usr/lib/ccache:" + env.get("PATH", "")
    env["CCACHE_DIR"] = str(cache_subdir("ccache"))
    env["CCACHE_BASEDIR"] = str(cache_dir())
    env["CCACHE_NOHASHDIR"] = "1"
    env.setdefault("CCACHE_MAXSIZE", "5G")
    stamp = (src.root / "Makefile").stat().st_mtime
    env["KBUILD_BUILD_TIMESTAMP"] = email.utils.formatdate(stamp, usegmt=True)
    env["KBUILD_BUILD_USER"] = "pvkit"
    env["KBUILD_BUILD_HOST"] = "pvkit"
    env["KBUILD_BUILD_VERSION"] = "1"
    env["LC_ALL"] = "C"
    return env


def make_command(src: source_mod.Source, out: Path, *targets: str) -> list[str]:
    return ["make", "-C", str(src.root), f"O={out}", "ARCH=x86_64", f"-j{os.cpu_count() or 1}",
            *targets]


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


def _run_make(cmd: list[str], env: dict[str, str], log: Path, label: str, expect: int) -> None:
    ticker = progress.Ticker(5.0)
    count = 0
    with log.open("a") as logf:
        logf.write(f"$ {shlex.join(cmd)}\n")
        logf.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                logf.write(line)
                if m := _COMPILE_LINE.match(line):
                    count += 1
                    if ticker.due():
                        pct = f" ~{min(99, 100 * count // expect)}%" if expect else ""
                        progress.step(f"build {label}: {count} steps{pct} ({m.group(1)} "
                                      f"{m.group(2)})")
            rc = proc.wait()
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
    if rc != 0:
        raise PvkitError(f"build {label} failed: {_first_error(log)} (full log: {log})")


def _count_steps(log: Path) -> int:
    with log.open(errors="replace") as handle:
        return sum(1 for line in handle if _COMPILE_LINE.match(line))


def build(profile: str, *, tree: str | None = None, fragments: list[Path] | None = None,
          base: str = "tinyconfig", force: bool = False, build_dir: Path | None = None,
          ) -> Build:
    """Configure and build a profile; returns at once when the content key matches."""
    t0 = time.monotonic()
    src = prepare_source(tree)
    fingerprint = source_mod.fingerprint(src)
    resolved = kconfig.resolve(src, profile, fragments, base)
    dir_key, content_key = keys(src, resolved.sha256, fingerprint)
    out = build_dir or cache_subdir("build") / f"{profile}-{dir_key[:16]}"
    with _locked(out):
        meta_path = out / "metadata.json"
        meta = read_json(meta_path) if meta_path.exists() else None
        if (not force and meta and meta.get("content_key") == content_key
                and all((out / a).exists() for a in ARTIFACTS)):
            progress.step(f"build {profile}: up to date ({out})")
            return Build(profile, out, meta)
        return _do_build(profile, src, resolved, out, dir_key, content_key, fingerprint, t0)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One make per build directory: another pvkit process building it is waited for (and
    its result then reused), never raced."""
    lock = out.with_name(out.name + ".lock")
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.step(f"build: waiting for another pvkit building {out.name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _do_build(profile: str, src: source_mod.Source, resolved: kconfig.Resolved, out: Path,
              dir_key: str, content_key: str, fingerprint: str, t0: float) -> Build:
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
    cmd = make_command(src, out, "bzImage", "modules")
    _run_make(cmd, env, log, profile, expect)
    modroot = out / "modroot"
    shutil.rmtree(modroot, ignore_errors=True)
    install = make_command(src, out, "modules_install", f"INSTALL_MOD_PATH={modroot}",
                           "INSTALL_MOD_STRIP=1")
    _run_make(install, env, log, f"{profile} modules_install", 0)
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
        "log": str(log),
        "reproducer": reproducer(src, out, env),
    }
    write_json(meta_path, meta)
    progress.step(f"build {profile}: done in {meta['duration_s']} s, {meta['steps']} steps, "
                  f"ccache {meta['ccache']['hits']} hits / {meta['ccache']['misses']} misses")
    return Build(profile, out, meta)


def _series_of(src: source_mod.Source) -> str:
    record = src.root / ".pvkit-series"
    return record.read_text().strip() if record.exists() else ""


def reproducer(src: source_mod.Source, out: Path, env: dict[str, str]) -> str:
    pinned = " ".join(
        f"{k}={shlex.quote(env[k])}"
        for k in ("KBUILD_BUILD_TIMESTAMP", "KBUILD_BUILD_USER", "KBUILD_BUILD_HOST",
                  "KBUILD_BUILD_VERSION", "CCACHE_BASEDIR", "CCACHE_DIR")
    )
    make = shlex.join(make_command(src, out, "bzImage", "modules"))
    return f"cp {out}/.config <config>; {pinned} PATH=/usr/lib/ccache:$PATH {make}"


def find(profile: str, *, tree: str | None = None) -> Build:
    """The up-to-date build of a profile, or an error naming the command that makes it."""
    src = prepare_source(tree)
    resolved = kconfig.resolve(src, profile)
    dir_key, content_key = keys(src, resolved.sha256, source_mod.fingerprint(src))
    out = cache_dir() / "build" / f"{profile}-{dir_key[:16]}"
    meta = read_json(out / "metadata.json")
    if not meta or meta.get("content_key") != content_key:
        raise PvkitError(f"no up-to-date {profile} kernel build; run `pvkit build --profile "
                         f"{profile}`")
    return Build(profile, out, meta)
