"""The in-tree integration patch of a pvkit driver: drivers/<name> into the kernel tree.

Where the driver goes and what its Kconfig entries say is data, in the driver's own
`drivers/<name>/intree.toml`:

    dir = "drivers/net"                    # the kernel directory it joins: <dir>/<name>
    kconfig_anchor = "endif # NETDEVICES"  # <dir>/Kconfig: the `source` line goes before it
    [[module]]                             # one per obj-m module of the Kbuild
    name = "pvnet-front"                   # the module
    symbol = "PVNET_FRONTEND"              # its Kconfig symbol
    prompt = "..."                         # the tristate prompt
    depends = "XEN"                        # its `depends on`
    help = "..."                           # help text, one paragraph per line group

Rendered against the target tree: new files (the driver's sources, a Kconfig and a Makefile
from jinja2 templates) plus hunks hooking them into <dir>/Kconfig and <dir>/Makefile at
anchors found in that tree. The result is a `patch -p1` / `git apply` patch; pvkit's own
builds use the out-of-tree (M=) build and never apply it.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from pvkit import drivers
from pvkit.errors import PvkitError

TEMPLATES = Path(__file__).parent
DATA_FILE = "intree.toml"
_TOP_KEYS = {"dir", "kconfig_anchor", "module"}
_MODULE_KEYS = {"name", "symbol", "prompt", "depends", "help"}


@dataclass(frozen=True)
class ModuleRule:
    module: str
    symbol: str
    objs: list[str]
    prompt: str
    depends: str
    help: list[str]


@dataclass(frozen=True)
class Placement:
    """Where a driver goes in the tree and how its Kconfig reads."""

    dir: str  # e.g. drivers/net
    kconfig_anchor: str
    modules: dict[str, dict[str, str]]  # module name -> its [[module]] table

    @property
    def kconfig(self) -> str:
        return f"{self.dir}/Kconfig"

    @property
    def makefile(self) -> str:
        return f"{self.dir}/Makefile"


def _fail(path: Path, msg: str) -> PvkitError:
    return PvkitError(f"{path}: {msg}")


def _strings(path: Path, table: Any, keys: set[str], where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise _fail(path, f"{where}: expected a table")
    unknown = sorted(set(table) - keys)
    missing = sorted(keys - set(table))
    if unknown or missing:
        what = f"unknown key '{unknown[0]}'" if unknown else f"missing key '{missing[0]}'"
        raise _fail(path, f"{where}: {what} (keys: {', '.join(sorted(keys))})")
    for key, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, f"{where}, key '{key}': expected a non-empty string")
    return table


def placement(src: Path) -> Placement:
    """The driver's intree.toml, checked: a one-line error names the file and the key."""
    path = src / DATA_FILE
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise _fail(path, f"missing: the driver needs one to be patched into a tree "
                          f"(see {Path(__file__).name})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"not valid TOML: {exc}") from exc
    top = {k: v for k, v in data.items() if k != "module"}
    _strings(path, top, _TOP_KEYS - {"module"}, "top level")
    if not re.fullmatch(r"[a-z0-9_-]+(/[a-z0-9_-]+)*", top["dir"]):
        raise _fail(path, f"key 'dir': not a tree directory: {top['dir']!r}")
    tables = data.get("module")
    if not isinstance(tables, list) or not tables:
        raise _fail(path, "needs [[module]] tables, one per module of the Kbuild")
    modules = {}
    for i, table in enumerate(tables):
        table = _strings(path, table, _MODULE_KEYS, f"[[module]] #{i + 1}")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", table["symbol"]):
            raise _fail(path, f"[[module]] {table['name']!r}, key 'symbol': not a Kconfig "
                              "symbol (upper case, digits, '_')")
        modules[table["name"]] = table
    return Placement(top["dir"], top["kconfig_anchor"], modules)


def module_rules(kbuild: str, place: Placement, src: Path = Path("drivers/?")
                 ) -> list[ModuleRule]:
    """obj-m modules of a Kbuild with their `<module>-y :=` objects and Kconfig entries."""
    rules = []
    for module in drivers.module_names(kbuild):
        m = re.search(rf"^{re.escape(module)}-y\s*:?=\s*(.+)$", kbuild, re.M)
        objs = m.group(1).split() if m else [f"{module}.o"]
        entry = place.modules.get(module)
        if entry is None:
            raise PvkitError(f"{src / DATA_FILE}: no [[module]] for '{module}' (its Kbuild "
                             "builds it)")
        rules.append(ModuleRule(module, entry["symbol"], objs, entry["prompt"],
                                entry["depends"], entry["help"].strip().splitlines()))
    return rules


def _render(template: str, **context: object) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template(template).render(**context)


def _insert_before(text: str, anchor: str, line: str, what: str) -> str:
    lines = text.splitlines(keepends=True)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(anchor):
            return "".join(lines[:i] + [line] + lines[i:])
    raise PvkitError(f"{what}: no line starting with '{anchor}' to anchor the driver's hunk; "
                     "is this a Linux tree?")


def _diff(rel: str, old: str | None, new: str) -> str:
    a = (old or "").splitlines(keepends=True)
    b = new.splitlines(keepends=True)
    head = ("--- /dev/null\n" if old is None else f"--- a/{rel}\n") + f"+++ b/{rel}\n"
    body = list(difflib.unified_diff(a, b, n=3))[2:]
    return head + "".join(body)


def render(name: str, read: Callable[[str], str], directory: Path = drivers.DRIVERS_DIR) -> str:
    """The patch adding drivers/<name> to the tree that `read` (relative path -> text) reads."""
    src = drivers.source_dir(name, directory)
    place = placement(src)
    rules = module_rules((src / "Kbuild").read_text(), place, src)
    dest = f"{place.dir}/{name}"
    try:
        kconfig, makefile = read(place.kconfig), read(place.makefile)
    except FileNotFoundError as exc:
        raise PvkitError(f"the target tree has no {exc}: not a Linux tree") from exc
    parts = [f"pvkit: add {dest} ({', '.join(r.module for r in rules)})\n\n"
             f"Generated by pvkit from drivers/{name}; build with "
             + ", ".join(f"CONFIG_{r.symbol}=m" for r in rules) + ".\n---\n"]
    parts.append(_diff(place.kconfig, kconfig, _insert_before(
        kconfig, place.kconfig_anchor, f'source "{dest}/Kconfig"\n\n', place.kconfig)))
    parts.append(_diff(place.makefile, makefile,
                       makefile.rstrip("\n") + f"\nobj-y\t+= {name}/\n"))
    parts.append(_diff(f"{dest}/Kconfig", None,
                       _render("intree_kconfig.j2", name=name, modules=rules)))
    parts.append(_diff(f"{dest}/Makefile", None,
                       _render("intree_makefile.j2", name=name, modules=rules)))
    for path in drivers.sources(src):
        if path.name != "Kbuild":
            parts.append(_diff(f"{dest}/{path.name}", None, path.read_text()))
    return "".join(parts)
