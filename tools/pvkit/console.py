"""The serial console: recognise boot stages and failures in the lines a guest prints.

`Monitor` is pure logic fed with (time, line) pairs, so golden console logs test it;
`qemu.run` drives a real QEMU process through it. A console log as pvkit writes it (one
timestamped line per console line, then an end record) can be read back (`read_log`) and
replayed through a fresh Monitor (`replay`): that is how every verdict is reached, live or
offline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

STAGE_MARK = re.compile(r"PVKIT-STAGE (?P<name>[\w.-]+)")
DONE_MARK = "PVKIT-DONE"
DOMU_PREFIX = "[domU] "
_ESCAPES = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[A-Za-z@=>])")

# stages recognised from the hypervisor's and kernels' own messages, besides PVKIT-STAGE marks
KERNEL_STAGES: dict[str, list[tuple[str, str]]] = {
    "xen": [
        ("xen", r"\(XEN\) Xen version \d"),
        ("dom0-kernel", r"^(?!\[domU\]|\(XEN\)).*\bLinux version \d"),
        ("domU-kernel", r"^\[domU\] .*\bLinux version \d"),
    ],
    "native": [
        ("kernel", r"\bLinux version \d"),
    ],
}

FAILURES: list[tuple[str, str]] = [
    ("Xen panic", r"\(XEN\) Panic on CPU"),
    ("Xen crash", r"\(XEN\) (?:FATAL TRAP|Assertion '.*' failed)"),
    ("kernel panic", r"Kernel panic - not syncing"),
    ("kernel Oops", r"\bOops\b(?::|\s*-)"),
    ("kernel BUG", r"\bkernel BUG at\b|\bBUG: (?!.*\bbad page\b)"),
    ("general protection fault", r"general protection fault"),
    ("libxl error", r"libxl: error:"),
    ("pvkit fatal", r"PVKIT-FATAL\b"),
]


@dataclass
class Verdict:
    status: str  # PASS / FAIL
    reason: str
    line: str = ""


@dataclass
class Monitor:
    """Feed console lines; it records stages and stops at the first failure or at the end."""

    mode: str = "xen"  # "xen" or "native"
    stall_s: float = 90.0
    timeout_s: float = 600.0
    allow: list[str] = field(default_factory=list)  # failure lines the scenario expects
    stages: list[tuple[str, float]] = field(default_factory=list)
    lines: list[tuple[float, str]] = field(default_factory=list)
    failure: Verdict | None = None
    done_at: float | None = None
    last_output: float = 0.0

    def __post_init__(self) -> None:
        self._kernel = [(n, re.compile(p)) for n, p in KERNEL_STAGES[self.mode]]
        self._fail = [(n, re.compile(p)) for n, p in FAILURES]
        self._allow = [re.compile(p) for p in self.allow]

    @property
    def stage(self) -> str:
        return self.stages[-1][0] if self.stages else "start"

    @property
    def finished(self) -> bool:
        return self.failure is not None or self.done_at is not None

    def _reach(self, name: str, t: float) -> str | None:
        if name not in {s for s, _ in self.stages}:
            self.stages.append((name, t))
            return name
        return None

    def feed(self, t: float, line: str) -> str | None:
        """Record one line; returns the name of a stage reached by it, if any."""
        line = _ESCAPES.sub("", line.rstrip("\r\n").replace("\r", ""))
        self.lines.append((t, line))
        self.last_output = t
        if self.finished:
            return None  # after the end marker only the shutdown is left: not judged
        for name, pattern in self._fail:
            if pattern.search(line) and not any(a.search(line) for a in self._allow):
                who = self.where(line)
                self.failure = Verdict("FAIL", f"{who}{name}", line)
                return None
        if line.startswith(DONE_MARK):
            self.done_at = t
            return self._reach("done", t)
        if m := STAGE_MARK.search(line):
            return self._reach(m.group("name"), t)
        for name, pattern in self._kernel:
            if pattern.search(line):
                return self._reach(name, t)
        return None

    def where(self, line: str) -> str:
        if self.mode == "native":
            return ""
        if line.startswith(DOMU_PREFIX):
            return "domU "
        if "(XEN)" in line:
            return ""
        return "dom0 "

    def tick(self, t: float) -> Verdict | None:
        """Check the clock: a stall (no output) or the overall timeout ends the run."""
        if self.finished:
            return None
        if t - self.last_output > self.stall_s:
            self.failure = Verdict(
                "FAIL", f"hang: no console output for {self.stall_s:.0f} s after stage "
                f"'{self.stage}'")
        elif t > self.timeout_s:
            self.failure = Verdict(
                "FAIL", f"timeout: scenario not done after {self.timeout_s:.0f} s (last stage "
                f"'{self.stage}')")
        return self.failure

    def tail(self, count: int = 25) -> list[str]:
        return [line for _, line in self.lines[-count:]]

    def stage_timings(self) -> list[dict[str, float | str]]:
        out: list[dict[str, float | str]] = []
        prev = 0.0
        for name, t in self.stages:
            out.append({"stage": name, "at_s": round(t, 2), "took_s": round(t - prev, 2)})
            prev = t
        return out


END_MARK = "#pvkit-end "  # the end record pvkit appends to a console log after a run
_TIMESTAMPED = re.compile(r"^\[\s*(\d+\.\d+)\] ?(.*)$")
_SUBTEST = re.compile(r"^(?:\[domU\] )?# Subtest: (?P<name>[\w.-]+)\.(?:dom0|domU)\s*$")


@dataclass
class ConsoleLog:
    """A console log read back: its lines and, if the run ended normally, its end record
    (wall time, QEMU's exit status, the scenario and the run's context)."""

    lines: list[tuple[float, str]]
    end: dict[str, Any] | None = None

    @property
    def scenario(self) -> str | None:
        """The scenario named by the end record, else by the first KTAP `# Subtest: NAME.place`."""
        if self.end and self.end.get("scenario"):
            return str(self.end["scenario"])
        for _, line in self.lines:
            if m := _SUBTEST.match(line):
                return m.group("name")
        return None



def parse_timestamped(text: str) -> list[tuple[float, str]]:
    """Read a console log written by pvkit (`[   1.234] line`) back into (time, line)."""
    return read_log(text).lines


def read_log(text: str) -> ConsoleLog:
    log = ConsoleLog([])
    for raw in text.splitlines():
        if m := _TIMESTAMPED.match(raw):
            log.lines.append((float(m.group(1)), m.group(2)))
        elif raw.startswith(END_MARK):
            try:
                log.end = json.loads(raw[len(END_MARK):])
            except json.JSONDecodeError:
                log.end = None  # a damaged record: judged like a log cut short
    return log


def format_line(t: float, line: str) -> str:
    return f"[{t:8.3f}] {line}"


def end_line(record: dict[str, Any]) -> str:
    """The end record appended to a console log: one line of JSON after END_MARK."""
    return END_MARK + json.dumps(record, sort_keys=True, separators=(",", ":"))


def replay(monitor: Monitor, lines: list[tuple[float, str]], end_s: float | None) -> Monitor:
    """Feed a recorded console to a fresh monitor as `qemu.run` fed the live one: the clock
    is checked before each line (silence before it may already be a hang) and after it,
    and finally at `end_s`, when the run ended (None: the log was cut short, no final check).
    """
    for t, line in lines:
        monitor.tick(t)
        monitor.feed(t, line)
        monitor.tick(t)
    if end_s is not None:
        monitor.tick(end_s)
    return monitor
