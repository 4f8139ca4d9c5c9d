"""KTAP (the kernel's test output format) as the guests print it on the console.

Guests print one KTAP document per place (dom0, domU). Lines from the domU reach the console
through dom0 with a `[domU] ` prefix; `split_sources` sorts them out. Diagnostic lines of the
form `# metric: NAME VALUE UNIT` attach a measured value to the test that follows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_VERSION = re.compile(r"^\s*(?:KTAP|TAP) version (\d+)")
_PLAN = re.compile(r"^\s*1\.\.(\d+)")
_RESULT = re.compile(
    r"^(?P<indent>\s*)(?P<not>not )?ok (?P<num>\d+)(?: -)?(?: (?P<name>[^#]*?))?\s*"
    r"(?:#\s*(?P<directive>SKIP|TODO)\b\s*(?P<reason>.*))?$"
)
_DIAG = re.compile(r"^\s*# ?(?P<text>.*)$")
_METRIC = re.compile(
    r"^metric: (?P<name>[\w.:/-]+) (?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?: (?P<unit>\S+))?$")


@dataclass
class Case:
    number: int
    name: str
    status: str  # ok / not ok / skip
    diagnostics: list[str] = field(default_factory=list)
    metrics: dict[str, tuple[float, str]] = field(default_factory=dict)
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "skip")


@dataclass
class Document:
    source: str
    plan: int | None = None
    cases: list[Case] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.passed for c in self.cases) and self.complete

    @property
    def complete(self) -> bool:
        return self.plan is not None and len(self.cases) == self.plan


def split_sources(lines: list[str], mode: str) -> dict[str, list[str]]:
    """Console lines by origin: dom0's own and the domU's (prefixed), or native."""
    if mode == "native":
        return {"domU": list(lines)}
    out: dict[str, list[str]] = {"dom0": [], "domU": []}
    for line in lines:
        if line.startswith("[domU] "):
            out["domU"].append(line[len("[domU] "):])
        elif not line.startswith("(XEN)"):
            out["dom0"].append(line)
    return out


def parse(source: str, lines: list[str]) -> Document | None:
    """Parse the first top-level KTAP document in the lines; None if there is none."""
    doc: Document | None = None
    pending: list[str] = []
    for line in lines:
        if doc is None:
            if _VERSION.match(line) and not line.startswith((" ", "\t")):
                doc = Document(source)
            continue
        if doc.plan is None and (m := _PLAN.match(line)) and not line[:1].isspace():
            doc.plan = int(m.group(1))
        elif m := _RESULT.match(line):
            if m.group("indent"):
                continue  # subtest results stay inside their parent's diagnostics
            status = "not ok" if m.group("not") else "ok"
            if m.group("directive") == "SKIP":
                status = "skip"
            case = Case(int(m.group("num")), (m.group("name") or "").strip(), status,
                        reason=(m.group("reason") or "").strip())
            for text in pending:
                if mm := _METRIC.match(text):
                    case.metrics[mm.group("name")] = (float(mm.group("value")),
                                                      mm.group("unit") or "")
                else:  # a malformed metric line stays a diagnostic
                    case.diagnostics.append(text)
            pending = []
            expected = len(doc.cases) + 1
            if case.number != expected:
                doc.errors.append(f"test '{case.name}' numbered {case.number}, expected "
                                  f"{expected}")
            doc.cases.append(case)
            if doc.plan is not None and len(doc.cases) >= doc.plan:
                break
        elif (m := _DIAG.match(line)) and not m.group("text").startswith("Subtest:"):
            pending.append(m.group("text"))
    if doc is not None and doc.plan is None:
        doc.errors.append("no test plan (1..N) line")
    return doc


def parse_console(lines: list[str], mode: str) -> dict[str, Document]:
    docs: dict[str, Document] = {}
    for source, source_lines in split_sources(lines, mode).items():
        doc = parse(source, source_lines)
        if doc is not None:
            docs[source] = doc
    return docs
