"""Scenarios: what to boot and what to run, as TOML data files in qemu-tests/.

A scenario file is checked against the schema below; a typo names the file and line.
`render_*` turn a scenario into the shell scripts the guests run.
"""

from __future__ import annotations

import difflib
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvkit.errors import PvkitError
from pvkit.paths import SCENARIOS_DIR, require

TOP_KEYS = {"description", "boot", "timeout", "stall", "allow", "domU", "test", "xen", "needs",
            "tools", "drivers", "native", "programs", "kernel"}
NATIVE_KEYS = {"kernel", "scratch_mb"}
DOMU_KEYS = {"memory", "vcpus", "config", "cmdline", "setup", "type"}
DOMU_TYPES = ("pv", "pvh")  # hvm: see _domu_type
XEN_KEYS = {"cmdline", "dom0_cmdline"}
KERNEL_KEYS = {"domU", "dom0"}  # [kernel] <profile> = [fragment files, next to the scenario]
TEST_KEYS = {"name", "where", "when", "timeout", "run"}
BOOTS = ("xen", "native")
WHERES = ("dom0", "domU")
WHENS = ("before", "during", "after")
DOMU_NAME = "pvkit-domU"


@dataclass(frozen=True)
class Test:
    name: str
    where: str
    when: str
    timeout: int
    run: str


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    description: str
    boot: str
    timeout: int
    stall: int
    allow: list[str]
    tests: list[Test]
    domu_memory: int = 256
    domu_vcpus: int = 1
    domu_type: str = "pv"  # [domU] type: pv or pvh (both direct kernel boot)
    domu_config: list[str] = field(default_factory=list)
    domu_cmdline: str = ""
    domu_setup: str = ""
    xen_cmdline: str = ""
    dom0_cmdline: str = ""
    needs: list[str] = field(default_factory=list)  # extra guest programs, e.g. "iperf3"
    tools: list[str] = field(default_factory=list)  # big programs on dom0's tools disk (vdc)
    drivers: list[str] = field(default_factory=list)  # drivers/<name>: modules in both payloads
    programs: list[str] = field(default_factory=list)  # guest/<name>.c: /pvkit/bin, both guests
    native_kernel: str = "domU"  # [native] kernel: the profile a native boot runs
    native_scratch_mb: int = 0  # [native] scratch_mb: a blank virtio disk (after the tools disk)
    # [kernel] domU/dom0: Kconfig fragments on top of that profile's (the user's --fragment
    # ones still win): a scenario that needs SMP, say, boots its own build of the profile
    kernel: dict[str, list[Path]] = field(default_factory=dict)

    def tests_in(self, where: str, when: str | None = None) -> list[Test]:
        return [t for t in self.tests if t.where == where and (when is None or t.when == when)]


class _Where:
    """Line numbers of the keys of a TOML text, by table: "" (top level), "domU",
    "test[2]" (the third [[test]]), so an error blames the key where it is, not the first
    key of that name in the file."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.keys: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        counters: dict[str, int] = {}
        table = ""
        quote = ""
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if quote:  # inside a multi-line string: no keys here
                if line.count(quote) % 2:
                    quote = ""
                continue
            if m := re.match(r"^\[\[\s*([\w.-]+)\s*\]\]", line):
                counters[m.group(1)] = counters.get(m.group(1), -1) + 1
                table = f"{m.group(1)}[{counters[m.group(1)]}]"
                self.tables[table] = number
            elif m := re.match(r"^\[\s*([\w.-]+)\s*\]", line):
                table = m.group(1)
                self.tables[table] = number
            elif m := re.match(r'^([\w-]+|"[^"]*")\s*=(.*)$', line):
                self.keys.setdefault((table, m.group(1).strip('"')), number)
                rest = m.group(2)
                for q in ("\'\'\'", '"""'):
                    if rest.count(q) % 2:
                        quote = q

    def line(self, table: str, key: str | None = None) -> int:
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        return self.tables.get(table, 1)

    def fail(self, table: str, key: str | None, msg: str) -> PvkitError:
        return PvkitError(f"{self.path}:{self.line(table, key)}: {msg}")


def _label(table: str) -> str:
    if not table:
        return "the scenario"
    name, _, index = table.partition("[")
    return f"[[{name}]] #{int(index.rstrip(']')) + 1}" if index else f"[{name}]"


def _check_keys(where: _Where, table: str, data: dict[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise where.fail(table, key, f"unknown key '{key}' in {_label(table)}{hint}")


_KINDS = {str: "a string", int: "an integer", list: "an array", dict: "a table"}


def _want(where: _Where, table: str, data: dict[str, Any], key: str, kind: type,
          default: Any = None, item: type | None = None) -> Any:
    """data[key], checked to be a `kind` (and, for arrays, every element an `item`)."""
    if key not in data:
        if default is None:
            raise where.fail(table, None, f"missing required key '{key}' in {_label(table)}")
        return default
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise where.fail(table, key, f"'{key}' must be {_KINDS[kind]}")
    if item is not None:
        for i, element in enumerate(value):
            if not isinstance(element, item) or isinstance(element, bool):
                raise where.fail(table, key, f"'{key}' must be an array of "
                                 f"{_KINDS[item].split(' ', 1)[1]}s; element {i + 1} is "
                                 f"{element!r}")
    return value


def _regexes(where: _Where, patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise where.fail("", "allow", f"'allow' pattern {pattern!r} is not a regular "
                             f"expression ({exc})") from exc
    return patterns


def _domu_type(where: _Where, kind: str) -> str:
    if kind == "hvm":  # xl would start a QEMU device model in dom0 for it
        raise where.fail("domU", "type", "[domU] type 'hvm' needs a device model "
                         "(qemu-system-xen) in dom0, which pvkit's dom0 image does not carry; "
                         "use 'pvh' (hardware-assisted, no device model) or 'pv'")
    if kind not in DOMU_TYPES:
        raise where.fail("domU", "type", f"[domU] type must be one of {DOMU_TYPES}")
    return kind


def _drivers(where: _Where, names: list[str]) -> list[str]:
    from pvkit.drivers import available as known_drivers

    known = known_drivers()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise where.fail("", "drivers", f"no driver '{name}' in drivers/: {hint}known: "
                             f"{', '.join(known) or 'none'}")
    return names


def _kernel(where: _Where, path: Path, data: dict[str, Any]) -> dict[str, list[Path]]:
    _check_keys(where, "kernel", data, KERNEL_KEYS)
    out: dict[str, list[Path]] = {}
    for profile in sorted(data):
        files = [path.parent / name for name in _want(where, "kernel", data, profile, list,
                                                      item=str)]
        for f in files:
            if not f.is_file():
                raise where.fail("kernel", profile, f"[kernel] {profile}: no fragment file "
                                 f"{f} (a path relative to the scenario's directory)")
        out[profile] = files
    return out


def fragments(scn: Scenario, profile: str) -> list[Path]:
    """The Kconfig fragments the scenario adds to `profile` (its [kernel] table)."""
    return scn.kernel.get(profile, [])


def load(path: Path) -> Scenario:
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise PvkitError(f"{path}: not a text file (not UTF-8), so not a scenario") from exc
    except OSError as exc:
        raise PvkitError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PvkitError(f"{path}: {exc}") from exc
    w = _Where(path, text)
    _check_keys(w, "", data, TOP_KEYS)
    boot = _want(w, "", data, "boot", str, "xen")
    if boot not in BOOTS:
        raise w.fail("", "boot", f"boot must be one of {BOOTS}")
    domu = _want(w, "", data, "domU", dict, {})
    _check_keys(w, "domU", domu, DOMU_KEYS)
    xen = _want(w, "", data, "xen", dict, {})
    _check_keys(w, "xen", xen, XEN_KEYS)
    native = _want(w, "", data, "native", dict, {})
    _check_keys(w, "native", native, NATIVE_KEYS)
    native_kernel = _want(w, "native", native, "kernel", str, "domU")
    if native_kernel not in ("domU", "dom0"):
        raise w.fail("native", "kernel", "[native] kernel must be 'domU' or 'dom0'")
    tests: list[Test] = []
    names: set[str] = set()
    for index, raw in enumerate(_want(w, "", data, "test", list, [], item=dict)):
        table = f"test[{index}]"
        _check_keys(w, table, raw, TEST_KEYS)
        name = _want(w, table, raw, "name", str)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise w.fail(table, "name", f"test name '{name}' must be letters, digits, '_', "
                         "'.', '-'")
        if name in names:
            raise w.fail(table, "name", f"test name '{name}' used twice")
        names.add(name)
        where = _want(w, table, raw, "where", str, "domU")
        when = _want(w, table, raw, "when", str, "after" if where == "dom0" else "during")
        if where not in WHERES:
            raise w.fail(table, "where", f"test '{name}': where must be one of {WHERES}")
        if when not in WHENS:
            raise w.fail(table, "when", f"test '{name}': when must be one of {WHENS}")
        if boot == "native" and where == "dom0":
            raise w.fail(table, "where", f"test '{name}': a native scenario has no dom0")
        timeout = _want(w, table, raw, "timeout", int, 60)
        if timeout <= 0:
            raise w.fail(table, "timeout", f"test '{name}': timeout must be positive")
        tests.append(Test(name, where, when, timeout, _want(w, table, raw, "run", str)))
    return Scenario(
        name=path.stem,
        path=path,
        description=_want(w, "", data, "description", str, ""),
        boot=boot,
        timeout=_want(w, "", data, "timeout", int, 300),
        stall=_want(w, "", data, "stall", int, 90),
        allow=_regexes(w, _want(w, "", data, "allow", list, [], item=str)),
        tests=tests,
        domu_type=_domu_type(w, _want(w, "domU", domu, "type", str, "pv")),
        domu_memory=_want(w, "domU", domu, "memory", int, 256),
        domu_vcpus=_want(w, "domU", domu, "vcpus", int, 1),
        domu_config=_want(w, "domU", domu, "config", list, [], item=str),
        domu_cmdline=_want(w, "domU", domu, "cmdline", str, ""),
        domu_setup=_want(w, "domU", domu, "setup", str, ""),
        xen_cmdline=_want(w, "xen", xen, "cmdline", str, ""),
        dom0_cmdline=_want(w, "xen", xen, "dom0_cmdline", str, ""),
        needs=_want(w, "", data, "needs", list, [], item=str),
        tools=_want(w, "", data, "tools", list, [], item=str),
        drivers=_drivers(w, _want(w, "", data, "drivers", list, [], item=str)),
        programs=_want(w, "", data, "programs", list, [], item=str),
        native_kernel=native_kernel,
        native_scratch_mb=_want(w, "native", native, "scratch_mb", int, 0),
        kernel=_kernel(w, path, _want(w, "", data, "kernel", dict, {})),
    )


def available(directory: Path = SCENARIOS_DIR) -> list[str]:
    return sorted(p.stem for p in require(directory, "the scenarios (qemu-tests/)")
                  .glob("*.toml"))


def find(name: str, directory: Path = SCENARIOS_DIR) -> Scenario:
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        return load(path)
    candidate = directory / f"{name}.toml"
    if not candidate.exists():
        names = available(directory)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise PvkitError(f"no scenario '{name}': {hint}known: {', '.join(names)}")
    return load(candidate)


def _test_file(test: Test) -> str:
    return f"#!/bin/sh\n. /pvkit/lib.sh\nset -e\n{test.run.strip()}\n"


def _runner(name: str, tests: list[Test], prefix: str) -> list[str]:
    return [f"pvk_run {shlex.quote(t.name)} {t.timeout} /pvkit/{prefix}/{i:02d}.sh"
            for i, t in enumerate(tests)]


def render_domu(scn: Scenario) -> dict[str, str]:
    """Files for the domU payload (appended to its initramfs), by path under /pvkit."""
    tests = scn.tests_in("domU")
    files = {f"domU-tests/{i:02d}.sh": _test_file(t) for i, t in enumerate(tests)}
    body = [". /pvkit/lib.sh", f"pvk_begin {scn.name}.domU {len(tests)}",
            *_runner(scn.name, tests, "domU-tests")]
    files["domU.sh"] = "\n".join(body) + "\n"
    return files


def domu_xl_config(scn: Scenario) -> str:
    lines = [
        f'name = "{DOMU_NAME}"',
        f'type = "{scn.domu_type}"',
        'kernel = "/pvkit/domU/vmlinux"',
        'ramdisk = "/pvkit/domU/initrd"',
        f'extra = "console=hvc0 panic=-1 {scn.domu_cmdline}"',
        f"memory = {scn.domu_memory}",
        f"vcpus = {scn.domu_vcpus}",
        'on_crash = "preserve"',
        *(HVM_XL if scn.domu_type != "pv" else []),
        *scn.domu_config,
    ]
    return "\n".join(lines) + "\n"


# Hardware-assisted guests (PVH, HVM) under Xen on QEMU's TCG: TCG's SVM gives Xen no next-RIP
# for an intercepted RDTSCP and Xen's fallback length decoder fails on it ("SVM Insn len
# emulation failed ... 0f 01 f9"), which crashes the guest early in boot. With the TSC in
# native mode Xen does not intercept RDTSC/RDTSCP at all.
HVM_XL = ['tsc_mode = "native"']


_BUILTIN_CREATE = """\
xl create /pvkit/domU.cfg
pvk_stage domU-created
info domid $(pvk_domid)
"""
# dom0 waits for the domU without polling: under icount whatever dom0 runs meanwhile is
# guest time taken from the domU's measurements (a grep + sleep every 2 s cost several ms of
# dom0 work, i.e. up to a third of a short file-system benchmark). Three blocking waiters
# report into a FIFO: the done marker in the console log (tail follows the log with one
# cheap stat per second and exits with this script), a domain release (@releaseDomain
# fires when a domain dies; `xl list` runs only then) and the time limit.
_BUILTIN_WAIT = """\
fifo=/run/pvk-wait.$$
rm -f "$fifo"
mkfifo "$fifo"
( tail --pid=$$ -n +1 -F "$PVK_GUEST_LOG" 2>/dev/null | {{
	grep -q -m 1 'PVKIT-STAGE domU-done' && [ -p "$fifo" ] && echo done > "$fifo"
}} ) &
waiters=$!
( xenstore-watch @releaseDomain 2>/dev/null | while read -r _; do
	state=$(pvk_domu_state)
	case "$state" in
	gone|*c*|*d*|*s*) [ -p "$fifo" ] && echo "stopped $state" > "$fifo"; break;;
	esac
done ) &
waiters="$waiters $!"
( sleep {timeout}; [ -p "$fifo" ] && echo timeout > "$fifo" ) &
waiters="$waiters $!"
read -r what < "$fifo"
rm -f "$fifo"
kill $waiters 2>/dev/null || true
case "$what" in
done) ;;
stopped*) echo "domU stopped before finishing its tests (state '${{what#stopped }}')"; exit 1;;
*) echo "domU not done after {timeout} s"; exit 1;;
esac
"""
# dom0 writes nothing to its ext4 root while guests are measured: without this, the journal
# commit and writeback of boot-time and xl/xenconsoled writes (about 10 ms of dom0 work) land
# in a measurement 5 s later. Logs and xl's state go to tmpfs; no atime updates, no periodic
# journal commit or writeback.
_QUIET_DOM0 = """\
mount -o remount,noatime,commit=3600 / 2>/dev/null || true
mount -t tmpfs tmpfs /var/log/xen && mkdir -p /var/log/xen/console
mount -t tmpfs tmpfs /var/lib/xen
echo 0 > /proc/sys/vm/dirty_writeback_centisecs 2>/dev/null || true
sync"""
_BUILTIN_DESTROY = """\
if [ "$(pvk_domu_state)" != gone ]; then
	xl destroy "$PVK_DOMU"
fi
pvk_wait 30 sh -c '[ -z "$(xl list | grep pvkit-domU)" ]'
"""


def render_dom0(scn: Scenario) -> dict[str, str]:
    """Files for the dom0 payload disk: the orchestration script and its tests."""
    wait_timeout = max(30, scn.timeout - 30)
    steps: list[Test] = [
        *scn.tests_in("dom0", "before"),
        Test("domU_setup", "dom0", "before", 120, scn.domu_setup or "true"),
        Test("domU_create", "dom0", "before", 120, _BUILTIN_CREATE),
        *scn.tests_in("dom0", "during"),
        Test("domU_tests_done", "dom0", "before", wait_timeout + 10,
             _BUILTIN_WAIT.format(timeout=wait_timeout)),
        *scn.tests_in("dom0", "after"),
        Test("domU_destroy", "dom0", "after", 60, _BUILTIN_DESTROY),
    ]
    files = {f"dom0-tests/{i:02d}.sh": _test_file(t) for i, t in enumerate(steps)}
    relay = (
        "( tail -n +1 -F \"$PVK_GUEST_LOG\" 2>/dev/null "
        "| sed -u -e 's/\\r//g' -e 's/^/[domU] /' > /dev/console ) &"
    )
    body = [". /pvkit/lib.sh", _QUIET_DOM0, relay, f"pvk_begin {scn.name}.dom0 {len(steps)}",
            *_runner(scn.name, steps, "dom0-tests"), "sleep 1", "echo PVKIT-DONE"]
    files["dom0.sh"] = "\n".join(body) + "\n"
    files["domU.cfg"] = domu_xl_config(scn)
    return files


def profiles(scn: Scenario) -> list[str]:
    """The kernel profiles a scenario boots: the domU kernel always (as the PV guest, or booted
    natively), the dom0 kernel under Xen or when a native scenario boots it."""
    return ["domU"] + (["dom0"] if scn.boot == "xen" or scn.native_kernel == "dom0" else [])
