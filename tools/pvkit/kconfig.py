"""Kernel configuration with kconfiglib: a base, plus profile fragments, checked symbol by symbol.

A fragment is plain Kconfig syntax (`CONFIG_X=y`, `# CONFIG_X is not set`). After resolution
every requested symbol must hold its requested value; otherwise the error explains which
dependency is false and why, recursively, so a person can fix the fragment.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kconfiglib

from pvkit import progress
from pvkit.errors import PvkitError
from pvkit.paths import PROFILES_DIR, cache_subdir
from pvkit.source import Source
from pvkit.util import first_line, sha256_file, sha256_text, write_atomic

PROFILES = ("dom0", "domU")
BASES = ("tinyconfig", "defconfig", "allnoconfig")
_TRI = {"n": 0, "m": 1, "y": 2}
_LINE_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_LINE_UNSET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")


class KernelKconfig(kconfiglib.Kconfig):
    """kconfiglib 14.1 cannot parse Linux >= 5.13's bare `modules` attribute
    (kernel/module/Kconfig); rewrite it to the older `option modules` while reading."""

    def _open(self, filename: str, mode: str) -> Any:  # type: ignore[override]
        if mode == "r" and os.path.basename(filename).startswith("Kconfig"):
            with open(filename, encoding="utf-8", errors="surrogateescape") as handle:
                text = handle.read()
            return io.StringIO(re.sub(r"(?m)^(\s+)modules\s*$", r"\1option modules", text))
        return super()._open(filename, mode)


@dataclass(frozen=True)
class Assignment:
    name: str
    value: str  # "y" / "m" / "n" / literal for int, hex, string (string unquoted)
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def compiler() -> str:
    """The C compiler of kernel builds: $PVKIT_CC, else gcc (Kconfig and make get the same)."""
    return os.environ.get("PVKIT_CC", "gcc")


def compiler_env() -> dict[str, str]:
    """CC/LD and the version text kbuild would export (it must match make's exactly)."""
    cc = compiler()
    try:
        text = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
        ).stdout
    except FileNotFoundError as exc:
        raise PvkitError(f"compiler '{cc}' not found; run `pvkit setup`") from exc
    return {"CC": cc, "LD": "ld", "CC_VERSION_TEXT": first_line(text).replace("#", "")}


def kbuild_env(src: Source) -> dict[str, str]:
    env = dict(os.environ)
    env.update(compiler_env())
    env.update(
        {
            "srctree": str(src.root),
            "ARCH": "x86_64",
            "SRCARCH": "x86",
            "SUBARCH": "x86",
            "KERNELVERSION": src.version,
            "HOSTCC": "gcc",
            "HOSTCXX": "g++",
            "RUSTC": "rustc",
            "BINDGEN": "bindgen",
            "PAHOLE": "pahole",
            "OBJCOPY": "objcopy",
            "NM": "nm",
            "AR": "ar",
            "LC_ALL": "C",
        }
    )
    return env


def load(src: Source) -> KernelKconfig:
    """Parse the tree's Kconfig files (about two seconds for Linux 6.1)."""
    saved = dict(os.environ)
    os.environ.update(kbuild_env(src))
    cwd = os.getcwd()
    try:
        os.chdir(src.root)
        kconf = KernelKconfig(str(src.root / "Kconfig"), warn_to_stderr=False)
    except kconfiglib.KconfigError as exc:
        raise PvkitError(f"kconfiglib cannot parse {src.root}: {first_line(str(exc))}") from exc
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    return kconf


def parse_fragment(path: Path) -> list[Assignment]:
    """Parse one fragment file; a malformed line is an error naming file:line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PvkitError(f"fragment {path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise PvkitError(f"fragment {path}: not a text file (byte {exc.start} is not UTF-8); "
                         "a fragment holds CONFIG_NAME=value lines") from exc
    out: list[Assignment] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := _LINE_UNSET.match(line):
            out.append(Assignment(m.group(1), "n", path, number))
        elif not line or line.startswith("#"):
            continue
        elif m := _LINE_SET.match(line):
            value = m.group(2).strip()
            if value.startswith('"'):
                if len(value) < 2 or not value.endswith('"'):
                    raise PvkitError(f"{path}:{number}: unterminated string in '{line}'")
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            elif not value:
                raise PvkitError(f"{path}:{number}: no value in '{line}'")
            out.append(Assignment(m.group(1), value, path, number))
        else:
            raise PvkitError(
                f"{path}:{number}: malformed line '{line}': expected CONFIG_NAME=value "
                "or '# CONFIG_NAME is not set'"
            )
    return out


def profile_fragments(profile: str, src: Source | None = None) -> list[Path]:
    """A profile's fragments; pvstat.config too when the tree carries the pvstat patch."""
    if profile not in PROFILES:
        raise PvkitError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}")
    out = [PROFILES_DIR / "common.config", PROFILES_DIR / f"{profile}.config"]
    if src is not None and (src.root / "arch/x86/kernel/pvstat.c").exists():
        out.append(PROFILES_DIR / "pvstat.config")
    return out


def overlay(base: list[Assignment], over: list[Assignment]) -> tuple[list[Assignment], list[str]]:
    """`over` (the user's fragments) on top of `base` (a profile's): a later value wins, as
    with merge_config.sh; returns the assignments and one notice per overridden value."""
    by_name = {a.name: a for a in base}
    notices = []
    for a in over:
        prev = by_name.get(a.name)
        if prev is not None and prev.value != a.value:
            notices.append(f"CONFIG_{a.name}={_shown(a.value)} ({a.where}) overrides "
                           f"CONFIG_{a.name}={_shown(prev.value)} ({prev.where})")
        by_name[a.name] = a
    order = [a.name for a in base] + [a.name for a in over if a.name not in
                                      {b.name for b in base}]
    return [by_name[n] for n in order], notices


def _shown(value: str) -> str:
    return value if value else '""'


def merge_fragments(paths: list[Path]) -> list[Assignment]:
    """All assignments in order; one symbol set differently in two places is an error."""
    seen: dict[str, Assignment] = {}
    merged: list[Assignment] = []
    for path in paths:
        for a in parse_fragment(path):
            prev = seen.get(a.name)
            if prev is not None and prev.value != a.value:
                raise PvkitError(
                    f"CONFIG_{a.name} set twice: {prev.value} at {prev.where}, "
                    f"{a.value} at {a.where}; keep one"
                )
            if prev is None:
                seen[a.name] = a
                merged.append(a)
    return merged


def _apply_base(kconf: KernelKconfig, src: Source, base: str) -> None:
    kconf.warn = False
    if base in ("tinyconfig", "allnoconfig"):
        for sym in kconf.unique_defined_syms:
            sym.set_value(2 if sym.is_allnoconfig_y else 0)
        if base == "tinyconfig":
            for frag in ("kernel/configs/tiny-base.config", "kernel/configs/tiny.config",
                         "arch/x86/configs/tiny.config"):
                if (src.root / frag).exists():
                    kconf.load_config(str(src.root / frag), replace=False)
    elif base == "defconfig":
        kconf.load_config(str(src.root / "arch/x86/configs/x86_64_defconfig"))
    else:
        path = check_base_file(base)
        try:
            kconf.load_config(str(path))
        except (kconfiglib.KconfigError, OSError, UnicodeDecodeError) as exc:
            raise PvkitError(f"--base {base}: kconfiglib cannot read it "
                             f"({first_line(str(exc))})") from exc
    kconf.warn = True


def check_base_file(base: str) -> Path:
    """A --base that is a file must be a kernel .config (text with CONFIG_ lines)."""
    path = Path(base)
    if not path.is_file():
        raise PvkitError(f"--base {base}: not {', '.join(BASES)} and no such file")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise PvkitError(f"--base {base}: not a text file, so not a kernel .config; give "
                         f"{', '.join(BASES)} or a .config") from exc
    except OSError as exc:
        raise PvkitError(f"--base {base}: cannot read ({exc.strerror})") from exc
    if not assignments_of(text):
        raise PvkitError(f"--base {base}: no CONFIG_ lines, so not a kernel .config; give "
                         f"{', '.join(BASES)} or a .config")
    return path


def _closest(kconf: KernelKconfig, name: str) -> str:
    names = [s.name for s in kconf.unique_defined_syms]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return ", ".join(f"CONFIG_{c}" for c in close) if close else "none close"


def _set(kconf: KernelKconfig, a: Assignment) -> None:
    sym = kconf.syms.get(a.name)
    if sym is None or not sym.nodes:
        raise PvkitError(
            f"{a.where}: unknown symbol CONFIG_{a.name} (closest: {_closest(kconf, a.name)})"
        )
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        allowed = ("y", "n") if sym.orig_type == kconfiglib.BOOL else ("y", "m", "n")
        if a.value not in allowed:
            kind = kconfiglib.TYPE_TO_STR[sym.orig_type]
            raise PvkitError(
                f"{a.where}: CONFIG_{a.name} is {kind}; value must be {'/'.join(allowed)}, "
                f"not '{a.value}'"
            )
    elif sym.type == kconfiglib.INT and not re.fullmatch(r"-?\d+", a.value):
        raise PvkitError(f"{a.where}: CONFIG_{a.name} is int; '{a.value}' is not a number")
    elif sym.type == kconfiglib.HEX and not re.fullmatch(r"(0[xX])?[0-9a-fA-F]+", a.value):
        raise PvkitError(f"{a.where}: CONFIG_{a.name} is hex; '{a.value}' is not hex")
    sym.set_value(a.value)


def _sym_value(sym: kconfiglib.Symbol) -> str:
    if sym.orig_type == kconfiglib.STRING:
        return str(sym.str_value)  # "" is a value (CONFIG_SYSTEM_TRUSTED_KEYS="")
    return sym.str_value if sym.str_value else "n"


def _unmet_items(expr: Any) -> list[kconfiglib.Symbol]:
    """Symbols of an expression that hold it false (n where needed, set where negated)."""
    out = []
    for item in kconfiglib.expr_items(expr):
        if isinstance(item, kconfiglib.Symbol) and not item.is_constant and item.nodes:
            out.append(item)
    return out


def explain(sym: kconfiglib.Symbol, want: str, requested: set[str], depth: int = 0,
            seen: set[str] | None = None) -> list[str]:
    """Why `sym` does not hold `want`: the false dependency and its symbols, recursively."""
    seen = seen if seen is not None else set()
    if sym.name in seen or depth > 5:
        return []
    seen.add(sym.name)
    have = _sym_value(sym)
    pad = "  " * depth
    lines: list[str] = []
    if sym.orig_type not in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        lines.append(f"{pad}CONFIG_{sym.name}={want} did not hold: it is {have}")
        if sym.visibility == 0:
            lines[-1] += f"; depends on {kconfiglib.expr_str(sym.direct_dep)}"
        return lines
    wantv = _TRI[want]
    if want == "m" and sym.kconfig.modules.tri_value == 0:
        lines.append(f"{pad}CONFIG_{sym.name}=m did not hold: CONFIG_MODULES=n")
        return lines
    if sym.tri_value > wantv and kconfiglib.expr_value(sym.rev_dep) > wantv:
        lines.append(
            f"{pad}CONFIG_{sym.name}={want} did not hold: it is {have}, selected by "
            f"{kconfiglib.expr_str(sym.rev_dep)}"
        )
        return lines
    dep = sym.direct_dep
    if kconfiglib.expr_value(dep) < wantv:
        items = _unmet_items(dep)
        values = ", ".join(f"{s.name}={_sym_value(s)}" for s in items)
        lines.append(
            f"{pad}CONFIG_{sym.name}={want} did not hold: depends on "
            f"{kconfiglib.expr_str(dep)}; {values}"
        )
        for s in items:
            if s.tri_value == 0 and s.type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
                if s.name in requested:
                    lines += explain(s, "y", requested, depth + 1, seen)
                elif s.visibility:
                    lines.append(f"{pad}  CONFIG_{s.name} is not requested: add CONFIG_{s.name}=y")
                else:
                    lines += explain(s, "y", requested, depth + 1, seen)
        return lines
    conds = [n.prompt[1] for n in sym.nodes if n.prompt]
    if conds and sym.visibility < wantv:
        cond = conds[0]
        lines.append(
            f"{pad}CONFIG_{sym.name}={want} did not hold: its prompt needs "
            f"{kconfiglib.expr_str(cond)}; "
            + ", ".join(f"{s.name}={_sym_value(s)}" for s in _unmet_items(cond))
        )
        return lines
    if not conds and sym.tri_value != wantv:
        lines.append(
            f"{pad}CONFIG_{sym.name}={want} did not hold: it has no prompt, so only its default"
            " or a select sets it"
        )
        return lines
    if sym.choice is not None and sym.tri_value != wantv:
        chosen = sym.choice.selection
        lines.append(
            f"{pad}CONFIG_{sym.name}={want} did not hold: it is in a choice and "
            f"CONFIG_{chosen.name if chosen else '?'} is selected; request it instead"
        )
        return lines
    lines.append(f"{pad}CONFIG_{sym.name}={want} did not hold: it is {have}")
    return lines


@dataclass(frozen=True)
class Resolved:
    text: str  # the .config contents
    sha256: str
    base: str
    fragments: list[str]
    requested: dict[str, str]


def resolve(src: Source, profile: str | None, extra_fragments: list[Path] | None = None,
            base: str = "tinyconfig", kconf: KernelKconfig | None = None) -> Resolved:
    """Resolve base + the profile's fragments + extra ones; every requested symbol must end
    at its requested value."""
    own = profile_fragments(profile, src) if profile else []
    user = [Path(p) for p in extra_fragments or []]
    fragments = own + user
    if base not in BASES:
        check_base_file(base)
    assignments, notices = overlay(merge_fragments(own), merge_fragments(user))
    for notice in notices:
        progress.notice(notice)
    memo = _memo_path(src, base, fragments) if kconf is None else None
    if memo is not None and memo.exists():  # same tree, base and fragments: same answer
        text = memo.read_text()
        return Resolved(text, sha256_text(text), base, [str(p) for p in fragments],
                        {a.name: a.value for a in assignments})
    kconf = kconf or load(src)
    _apply_base(kconf, src, base)
    for a in assignments:
        _set(kconf, a)
    requested = {a.name for a in assignments}
    problems: list[str] = []
    for a in assignments:
        sym = kconf.syms[a.name]
        have = _sym_value(sym)
        ok = have == a.value
        if not ok and sym.type == kconfiglib.HEX:
            ok = int(have or "0", 16) == int(a.value, 16)
        if not ok:
            why = explain(sym, a.value, requested)
            problems.append(f"{a.where}: " + "\n".join(why).lstrip())
    if problems:
        raise PvkitError("requested config did not hold:\n" + "\n".join(problems))
    text = config_text(kconf)
    if memo is not None:
        write_atomic(memo, text)
    return Resolved(
        text=text,
        sha256=sha256_text(text),
        base=base,
        fragments=[str(p) for p in fragments],
        requested={a.name: a.value for a in assignments},
    )


def _memo_path(src: Source, base: str, fragments: list[Path]) -> Path | None:
    """Where a resolution is remembered: keyed by what kconfiglib reads (for a user's tree,
    its Kconfig files and config fragments, by size and time: an edit of a .c file keeps the
    answer, an edit of a Kconfig file does not), the base, the fragments and the compiler."""
    from pvkit.source import fingerprint, kconfig_fingerprint

    tree = fingerprint(src) if src.managed else kconfig_fingerprint(src)
    base_id = sha256_file(Path(base)) if Path(base).is_file() else base
    key = sha256_text(tree, base_id, compiler_env()["CC_VERSION_TEXT"],
                      *(f"{p}:{sha256_file(p)}" for p in fragments))
    return cache_subdir("config") / f"{key[:24]}.config"


def config_text(kconf: KernelKconfig) -> str:
    header = f"#\n# Automatically generated file; DO NOT EDIT.\n# {kconf.mainmenu_text}\n#\n"
    return str(kconf._config_contents(header))


def assignments_of(text: str) -> dict[str, str]:
    """The symbol values of a .config text, comments other than `is not set` dropped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if m := _LINE_SET.match(line):
            out[m.group(1)] = m.group(2)
        elif m := _LINE_UNSET.match(line):
            out[m.group(1)] = "n"
    return out
