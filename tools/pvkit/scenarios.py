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
from pvkit.paths import SCENARIOS_DIR

TOP_KEYS = {"description", "boot", "timeout", "stall", "allow", "domU", "test", "xen", "needs",
            "tools", "drivers", "native", "programs"}
NATIVE_KEYS = {"kernel", "scratch_mb"}
DOMU_KEYS = {"memory", "vcpus", "config", "cmdline", "setup"}
XEN_KEYS = {"cmdline", "dom0_cmdline"}
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

    def tests_in(self, where: str, when: str | None = None) -> list[Test]:
        return [t for t in self.tests if t.where == where and (when is None or t.when == when)]


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*(?:\[+)?\s*{re.escape(key)}\s*[=\]]", line):
            return number
    return 1


def _check_keys(path: Path, text: str, table: dict[str, Any], allowed: set[str],
                where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PvkitError(f"{path}:{_line_of(text, key)}: unknown key '{key}' in {where}{hint}")


def _want(path: Path, text: str, table: dict[str, Any], key: str, kind: type,
          default: Any = None) -> Any:
    if key not in table:
        if default is None:
            raise PvkitError(f"{path}: missing required key '{key}'")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PvkitError(f"{path}:{_line_of(text, key)}: '{key}' must be a {kind.__name__}")
    return value


def load(path: Path) -> Scenario:
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PvkitError(f"{path}: {exc}") from exc
    _check_keys(path, text, data, TOP_KEYS, "the scenario")
    boot = _want(path, text, data, "boot", str, "xen")
    if boot not in BOOTS:
        raise PvkitError(f"{path}:{_line_of(text, 'boot')}: boot must be one of {BOOTS}")
    domu = _want(path, text, data, "domU", dict, {})
    _check_keys(path, text, domu, DOMU_KEYS, "[domU]")
    xen = _want(path, text, data, "xen", dict, {})
    _check_keys(path, text, xen, XEN_KEYS, "[xen]")
    native = _want(path, text, data, "native", dict, {})
    _check_keys(path, text, native, NATIVE_KEYS, "[native]")
    native_kernel = _want(path, text, native, "kernel", str, "domU")
    if native_kernel not in ("domU", "dom0"):
        raise PvkitError(f"{path}:{_line_of(text, 'kernel')}: [native] kernel must be "
                         "'domU' or 'dom0'")
    tests: list[Test] = []
    names: set[str] = set()
    for raw in _want(path, text, data, "test", list, []):
        _check_keys(path, text, raw, TEST_KEYS, "[[test]]")
        name = _want(path, text, raw, "name", str)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise PvkitError(f"{path}:{_line_of(text, 'name')}: test name '{name}' must be "
                             "letters, digits, '_', '.', '-'")
        if name in names:
            raise PvkitError(f"{path}: test name '{name}' used twice")
        names.add(name)
        where = _want(path, text, raw, "where", str, "domU")
        when = _want(path, text, raw, "when", str, "after" if where == "dom0" else "during")
        if where not in WHERES or when not in WHENS:
            raise PvkitError(f"{path}: test '{name}': where must be {WHERES}, when {WHENS}")
        if boot == "native" and where == "dom0":
            raise PvkitError(f"{path}: test '{name}': a native scenario has no dom0")
        tests.append(Test(name, where, when, _want(path, text, raw, "timeout", int, 60),
                          _want(path, text, raw, "run", str)))
    return Scenario(
        name=path.stem,
        path=path,
        description=_want(path, text, data, "description", str, ""),
        boot=boot,
        timeout=_want(path, text, data, "timeout", int, 300),
        stall=_want(path, text, data, "stall", int, 90),
        allow=_want(path, text, data, "allow", list, []),
        tests=tests,
        domu_memory=_want(path, text, domu, "memory", int, 256),
        domu_vcpus=_want(path, text, domu, "vcpus", int, 1),
        domu_config=_want(path, text, domu, "config", list, []),
        domu_cmdline=_want(path, text, domu, "cmdline", str, ""),
        domu_setup=_want(path, text, domu, "setup", str, ""),
        xen_cmdline=_want(path, text, xen, "cmdline", str, ""),
        dom0_cmdline=_want(path, text, xen, "dom0_cmdline", str, ""),
        needs=_want(path, text, data, "needs", list, []),
        tools=_want(path, text, data, "tools", list, []),
        drivers=_want(path, text, data, "drivers", list, []),
        programs=_want(path, text, data, "programs", list, []),
        native_kernel=native_kernel,
        native_scratch_mb=_want(path, text, native, "scratch_mb", int, 0),
    )


def available(directory: Path = SCENARIOS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


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
        'type = "pv"',
        'kernel = "/pvkit/domU/vmlinux"',
        'ramdisk = "/pvkit/domU/initrd"',
        f'extra = "console=hvc0 panic=-1 {scn.domu_cmdline}"',
        f"memory = {scn.domu_memory}",
        f"vcpus = {scn.domu_vcpus}",
        'on_crash = "preserve"',
        *scn.domu_config,
    ]
    return "\n".join(lines) + "\n"


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
