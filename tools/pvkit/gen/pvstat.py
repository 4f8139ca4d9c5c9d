"""pvstat: counting wrappers for paravirt_ops, generated from the tree's paravirt_types.h.

The parser reads `struct paravirt_patch_template` to find the op groups, then each group's
struct: function-pointer members (with their exact parameter types), callee-save thunks,
nested structs (`lazy_mode`), and the preprocessor conditions around them. Every op that can
be wrapped safely gets a counting wrapper; the others are listed with the reason.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from pvkit.errors import PvkitError
from pvkit.source import Source

HEADER = "arch/x86/include/asm/paravirt_types.h"
HOOK_FILE = "arch/x86/kernel/alternative.c"
KCONFIG_FILE = "arch/x86/Kconfig"
MAKEFILE = "arch/x86/kernel/Makefile"
C_FILE = "arch/x86/kernel/pvstat.c"
H_FILE = "arch/x86/include/asm/pvstat.h"
TEMPLATES = Path(__file__).resolve().parent

CALLEE_SAVE = ("callee-save thunk (PV_CALLEE_SAVE): its callers keep values in registers "
               "a C wrapper would clobber")
# ops that must not be wrapped although their C signature would allow it, and why
UNSAFE: dict[str, str] = {
    "cpu.iret": "jumped to from entry assembly, not called: not a C function",
    "cpu.usergs_sysret64": "jumped to from entry assembly, not called: not a C function",
    "cpu.usergs_sysret32": "jumped to from entry assembly, not called: not a C function",
    "cpu.irq_enable_sysexit": "jumped to from entry assembly, not called: not a C function",
    "cpu.swapgs": "used from entry assembly before the kernel GS base is valid",
    "cpu.get_debugreg": "called from noinstr #DB entry code (local_db_save)",
    "cpu.set_debugreg": "called from noinstr #DB entry code (local_db_restore)",
    "mmu.write_cr2": "called from noinstr NMI entry code (exc_nmi restores CR2)",
    "irq.safe_halt": "called from the idle loop (__cpuidle), where RCU is not watching",
    "irq.halt": "called from the idle loop (__cpuidle), where RCU is not watching",
    "init.patch": "the paravirt patcher itself",
    "time.sched_clock": "sched_clock is called from noinstr code and from tracing",
}


@dataclass(frozen=True)
class Op:
    path: str  # "mmu.lazy_mode.enter"
    ret: str
    params: tuple[str, ...]
    cond: str  # C preprocessor condition ("" when unconditional)
    callee_save: bool = False

    @property
    def ident(self) -> str:
        return self.path.replace(".", "_")

    def _args(self) -> list[str]:
        return [_typed(t, f"a{i}") for i, t in enumerate(self.params)] or ["void"]

    def signature(self, name: str) -> str:
        return f"{self.ret} {name}({', '.join(self._args())})"

    def definition(self, prefix: str, name: str) -> str:
        """`prefix signature`, its parameters wrapped and aligned (kernel style) if long."""
        head = f"{prefix}{self.ret} {name}("
        args = self._args()
        line = prefix + self.signature(name)
        if len(line) <= 100:
            return line
        indent = "\t" * (len(head) // 8) + " " * (len(head) % 8)
        out, current = [], head
        for i, arg in enumerate(args):
            piece = arg + (")" if i == len(args) - 1 else ",")
            if current not in (head, indent) and len(current.expandtabs()) + 1 + len(piece) > 100:
                out.append(current.rstrip())
                current = indent
            current += ("" if current in (head, indent) else " ") + piece
        out.append(current)
        return "\n".join(out)

    def orig_declaration(self) -> str:
        line = f"static typeof(pv_ops.{self.path}) pvstat_orig_{self.ident} __ro_after_init;"
        if len(line) <= 100:
            return line
        return (f"static typeof(pv_ops.{self.path})\n"
                f"\tpvstat_orig_{self.ident} __ro_after_init;")

    @property
    def call_args(self) -> str:
        return ", ".join(f"a{i}" for i in range(len(self.params)))


@dataclass
class Parsed:
    groups: list[str]
    ops: list[Op] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) unparsed


def _typed(ptype: str, name: str) -> str:
    return f"{ptype}{name}" if ptype.endswith("*") else f"{ptype} {name}"


_TYPE_WORDS = {"int", "long", "short", "char", "unsigned", "signed", "void", "bool", "float",
               "double", "const", "volatile"}


def param_type(arg: str) -> str:
    """The type of one parameter declaration, without its name."""
    arg = " ".join(arg.split())
    tokens = re.findall(r"[A-Za-z_]\w*|\*", arg)
    if not tokens or tokens[-1] == "*" or len(tokens) == 1:
        return _norm(arg)
    last, before = tokens[-1], tokens[-2]
    if last in _TYPE_WORDS or before in ("struct", "union", "enum"):
        return _norm(arg)
    return _norm(arg[: arg.rfind(last)])


def _norm(t: str) -> str:
    t = re.sub(r"\s*\*\s*", " *", " ".join(t.split())).strip()
    t = re.sub(r"\* \*", "**", t)
    # bare `unsigned` is `unsigned int`: the same type, in the kernel's preferred spelling
    return re.sub(r"\bunsigned(?!\s+(?:int|long|short|char)\b)", "unsigned int", t)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _struct_body(text: str, name: str) -> str | None:
    m = re.search(rf"struct\s+{name}\s*\{{(.*?)\n\}}", text, flags=re.S)
    return m.group(1) if m else None


def _cond(stack: list[str]) -> str:
    return " && ".join(stack)


def parse(text: str) -> Parsed:
    text = strip_comments(text)
    template = _struct_body(text, "paravirt_patch_template")
    if template is None:
        raise PvkitError(f"{HEADER}: no struct paravirt_patch_template; not an x86 "
                         "paravirt_types.h this generator knows")
    members = re.findall(r"struct\s+(\w+)\s+(\w+)\s*;", template)
    parsed = Parsed(groups=[g for _, g in members])
    for struct, group in members:
        _parse_struct(text, struct, group, [], parsed)
    return parsed


def _parse_struct(text: str, struct: str, prefix: str, outer: list[str],
                  parsed: Parsed) -> None:
    body = _struct_body(text, struct)
    if body is None:
        parsed.skipped.append((prefix, f"struct {struct} not found"))
        return
    stack: list[str] = []
    statement = ""
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            directive = line[1:].strip()
            word, _, rest = directive.partition(" ")
            rest = rest.strip()
            if word == "ifdef":
                stack.append(f"defined({rest})")
            elif word == "ifndef":
                stack.append(f"!defined({rest})")
            elif word == "if":
                stack.append(f"({rest})")
            elif word == "else" and stack:
                stack[-1] = f"!{stack[-1]}" if not stack[-1].startswith("!") else stack[-1][1:]
            elif word == "elif" and stack:
                stack[-1] = f"!{stack[-1]} && ({rest})"
            elif word == "endif" and stack:
                stack.pop()
            continue
        statement += " " + line
        while ";" in statement:
            decl, statement = statement.split(";", 1)
            decl = " ".join(decl.split())
            if decl:
                _declaration(text, decl, prefix, outer + stack, parsed)


_FUNC = re.compile(r"^(?P<ret>.+?)\(\s*\*\s*(?P<name>\w+)\s*\)\s*\((?P<args>.*)\)$")


def _declaration(text: str, decl: str, prefix: str, cond: list[str], parsed: Parsed) -> None:
    if m := re.fullmatch(r"struct paravirt_callee_save (\w+)", decl):
        parsed.ops.append(Op(f"{prefix}.{m.group(1)}", "", (), _cond(cond), callee_save=True))
        return
    if m := re.fullmatch(r"struct (\w+) (\w+)", decl):
        _parse_struct(text, m.group(1), f"{prefix}.{m.group(2)}", cond, parsed)
        return
    m = _FUNC.match(decl)
    if not m:
        parsed.skipped.append((f"{prefix}.?", f"not a function pointer: '{decl}'"))
        return
    args = m.group("args").strip()
    if "(" in args:
        parsed.skipped.append((f"{prefix}.{m.group('name')}", "has a function-pointer "
                               "parameter the generator does not wrap"))
        return
    params = () if args in ("", "void") else tuple(param_type(a) for a in args.split(","))
    parsed.ops.append(Op(f"{prefix}.{m.group('name')}", _norm(m.group("ret")), params,
                         _cond(cond)))


def classify(parsed: Parsed) -> tuple[list[Op], list[tuple[str, str]]]:
    wrapped: list[Op] = []
    skipped = list(parsed.skipped)
    for op in parsed.ops:
        if op.callee_save:
            skipped.append((op.path, CALLEE_SAVE))
        elif op.path in UNSAFE:
            skipped.append((op.path, UNSAFE[op.path]))
        else:
            wrapped.append(op)
    return wrapped, skipped


def _diff(path: str, old: str, new: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}", n=3)
    return f"diff --git a/{path} b/{path}\n" + "".join(lines)


def _new_file(path: str, content: str) -> str:
    lines = content.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n"
            f"+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}")


def _insert(text: str, path: str, anchor: str, addition: str, before: bool) -> str:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if re.search(anchor, line):
            at = i if before else i + 1
            return "".join(lines[:at]) + addition + "".join(lines[at:])
    raise PvkitError(f"{path}: no line matching '{anchor}' to hook pvstat into")


KCONFIG = (
    "config PVSTAT\n"
    '\tbool "Count paravirt_ops calls (pvstat, generated by pvkit)"\n'
    "\tdepends on PARAVIRT && DEBUG_FS\n"
    "\thelp\n"
    "\t  Wrap the paravirt_ops that can be wrapped safely with counting\n"
    "\t  wrappers, installed before the paravirt call sites are patched\n"
    '\t  when the kernel is booted with "pvstat". Per-op counts are in\n'
    "\t  /sys/kernel/debug/pvstat/counts; write to .../reset to zero them.\n"
    "\n"
    "\t  If unsure, say N.\n"
    "\n"
)


def render_c(wrapped: list[Op], skipped: list[tuple[str, str]], version: str) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template("pvstat.c.j2").render(ops=wrapped, skipped=skipped,
                                                  version=version)


HEADER_H = """/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_PVSTAT_H
#define _ASM_X86_PVSTAT_H

#ifdef CONFIG_PVSTAT
void pvstat_install(void);
#else
static inline void pvstat_install(void) { }
#endif

#endif /* _ASM_X86_PVSTAT_H */
"""


def context(src: Source, read: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Everything the patch template needs, computed from the target tree (read through
    `read`, which gives the pristine content of files an applied series changed)."""
    reader = read or (lambda rel: (src.root / rel).read_text())

    def need(rel: str) -> str:
        try:
            return reader(rel)
        except FileNotFoundError as exc:
            raise PvkitError(f"{src.root}: no {rel}, which the pvstat patch reads or changes; "
                             "pvstat needs a complete x86 Linux tree with PARAVIRT") from exc
        except UnicodeDecodeError as exc:
            raise PvkitError(f"{src.root}/{rel}: not UTF-8 text; is this a Linux tree?") \
                from exc

    parsed = parse(need(HEADER))
    wrapped, skipped = classify(parsed)
    hook = need(HOOK_FILE)
    hooked = _insert(hook, HOOK_FILE, r"^\s*paravirt_set_cap\(\);", "\tpvstat_install();\n",
                     before=True)
    hooked = _insert(hooked, HOOK_FILE, r"^#include <asm/paravirt.h>", "#include <asm/pvstat.h>\n",
                     before=False)
    kconfig = need(KCONFIG_FILE)
    makefile = need(MAKEFILE)
    diffs = [
        _diff(KCONFIG_FILE, kconfig, _insert(kconfig, KCONFIG_FILE, r"^config PARAVIRT_DEBUG\b",
                                             KCONFIG, before=True)),
        _diff(MAKEFILE, makefile, _insert(makefile, MAKEFILE,
                                          r"^obj-\$\(CONFIG_PARAVIRT\)\s+\+= paravirt\.o",
                                          "obj-$(CONFIG_PVSTAT)\t\t+= pvstat.o\n",
                                          before=False)),
        _new_file(H_FILE, HEADER_H),
        _diff(HOOK_FILE, hook, hooked),
        _new_file(C_FILE, render_c(wrapped, skipped, src.version)),
    ]
    return {
        "version": src.version,
        "groups": parsed.groups,
        "wrapped": wrapped,
        "skipped": skipped,
        "diffs": diffs,
        "date": dt.datetime(2026, 1, 1, tzinfo=dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
    }
