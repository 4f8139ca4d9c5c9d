"""Xen PV wire protocols, each described once in a spec: drivers/<driver>/<protocol>.spec.toml.

One generator serves every spec (blkif for pvblk, netif for pvnet; `specs()` finds them).
`load_spec` reads and checks a spec and computes every struct's x86_64 layout (C alignment
rules, `packed` aggregates, nested aggregates flattened to `u.rw.id` paths); `render_c` makes
the kernel/user-space C header `drivers/<driver>/<prefix>_proto.h`, `render_py` the Python
mirror `pvkit.<prefix>_proto`, and `generate` writes both (`generate_all`: every spec;
`pvkit gen` runs it).

Spec format
  [meta]        protocol: the protocol's name (the kernel's io/<protocol>.h);
                prefix: C names (struct <prefix>_<name>, <PREFIX>_<CONSTANT>) and the output
                file names; kernel_prefix: the kernel's names for the same structs
                (struct <kernel_prefix>_<name>); abi: "x86_64"
  [typedefs]    the protocol's typedefs, expanded to their base type in generated code
  [[constants]] a group of constants; each has `value` (an integer or a string) or `expr`
                (integer arithmetic over earlier constants: + - * // << >> | &,
                sizeof(<struct>), max(a, b), rounddown_pow2(x)); `kernel` is the kernel's C
                expression for the same value, if it has one
  [[struct]]    structs and unions in C order. kind: "struct" (default) or "union"; packed:
                __attribute__((__packed__)); anonymous: emitted inline where used (like
                blkif_request's union u); size: the expected sizeof, checked. Field types: u8
                u16 u32 u64 s8 s16 s32 s64, a typedef, or an earlier struct/union; count:
                array length (integer or constant name)
  [[xenstore]]  XenStore keys: C <PREFIX>_XS_<name>; writer: who writes the key

Layout rules (x86_64): scalars are naturally aligned; a packed aggregate puts its members at
alignment 1 (a member struct keeps its own inner layout and size); an aggregate's size is
rounded up to its alignment.
"""

from __future__ import annotations

import ast
import re
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from pvkit.errors import PvkitError
from pvkit.paths import DRIVERS_DIR, PACKAGE_DIR, REPO_ROOT

SPEC_GLOB = "*/*.spec.toml"
TEMPLATES = Path(__file__).resolve().parent

# base type -> (size, alignment, signed); x86_64
SCALARS: dict[str, tuple[int, int, bool]] = {
    "u8": (1, 1, False), "u16": (2, 2, False), "u32": (4, 4, False), "u64": (8, 8, False),
    "s8": (1, 1, True), "s16": (2, 2, True), "s32": (4, 4, True), "s64": (8, 8, True),
}
WRITERS = ("frontend", "backend", "both", "toolstack")
TOP_KEYS = {"meta", "typedefs", "constants", "struct", "xenstore"}
META_KEYS = {"protocol", "prefix", "kernel_prefix", "abi"}
GROUP_KEYS = {"group", "doc", "values"}
CONST_KEYS = {"name", "value", "expr", "kernel", "doc"}
STRUCT_KEYS = {"name", "kind", "packed", "anonymous", "doc", "size", "fields"}
FIELD_KEYS = {"name", "type", "count", "doc"}
XS_KEYS = {"name", "key", "writer", "doc"}
_IDENT = re.compile(r"[a-z_][a-z0-9_]*\Z")
_CONST_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")


@dataclass(frozen=True)
class Constant:
    name: str
    value: int | str
    doc: str = ""
    kernel: str | None = None  # the kernel's C expression for the same value
    expr: str | None = None  # how the value was derived, if it was


@dataclass(frozen=True)
class Group:
    name: str
    doc: str
    constants: tuple[Constant, ...]


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # as written in the spec: a base type, a typedef or an aggregate
    base: str  # the base type or aggregate name it resolves to
    count: int  # array length; 1 for a plain member
    count_name: str | None  # the constant the length was given as
    array: bool
    doc: str = ""


@dataclass(frozen=True)
class Member:
    """One field of a laid-out aggregate: offset from the aggregate's start, element size."""

    offset: int
    size: int
    count: int


@dataclass(frozen=True)
class Layout:
    size: int
    align: int
    members: dict[str, Member]  # "id", "u", "u.rw", "u.rw.id", ... in declaration order


@dataclass(frozen=True)
class Aggregate:
    name: str
    kind: str  # "struct" or "union"
    packed: bool
    anonymous: bool
    doc: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class XsKey:
    name: str
    key: str
    writer: str
    doc: str


@dataclass(frozen=True)
class Spec:
    path: Path
    source: str  # the spec's path as named in generated files
    protocol: str
    prefix: str
    kernel_prefix: str
    abi: str
    typedefs: dict[str, str]
    groups: tuple[Group, ...]
    aggregates: tuple[Aggregate, ...]
    layouts: dict[str, Layout]
    xenstore: tuple[XsKey, ...]

    @property
    def constants(self) -> dict[str, Constant]:
        return {c.name: c for g in self.groups for c in g.constants}

    @property
    def structs(self) -> tuple[Aggregate, ...]:
        """The named (non-anonymous) aggregates: the ones C and the kernel can name."""
        return tuple(a for a in self.aggregates if not a.anonymous)

    @property
    def c_out(self) -> str:
        """The generated C header, as named in generated files (beside the spec)."""
        return f"{Path(self.source).parent.as_posix()}/{self.prefix}_proto.h"

    def aggregate(self, name: str) -> Aggregate:
        return next(a for a in self.aggregates if a.name == name)

    def c_name(self, agg: Aggregate) -> str:
        return f"{agg.kind} {self.prefix}_{agg.name}"

    def kernel_name(self, agg: Aggregate) -> str:
        return f"{agg.kind} {self.kernel_prefix}_{agg.name}"


# ---------------------------------------------------------------------------------------------
# loading and checking


class _Ctx:
    """Error reporting: every message names the spec file and where in it the problem is."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, msg: str) -> PvkitError:
        return PvkitError(f"{self.path}: {where}: {msg}")

    def table(self, value: Any, where: str, allowed: set[str], required: set[str]
              ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")
        missing = sorted(required - set(value))
        if missing:
            raise self.fail(where, f"missing key {missing[0]!r}")
        return value

    def get(self, table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
            default: Any = None) -> Any:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) and kind is not bool and bool not in _tuple(kind):
            raise self.fail(f"{where}, key {key!r}", f"expected {_kinds(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(f"{where}, key {key!r}",
                            f"expected {_kinds(kind)}, got {type(value).__name__}")
        return value

    @staticmethod
    def label(table: Any, what: str, index: int) -> str:
        """`what 'name'` if the table has a string name, else `what #index`."""
        name = table.get("name") if isinstance(table, dict) else None
        return f"{what} {name!r}" if isinstance(name, str) else f"{what} #{index}"

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"expected an array, got {type(value).__name__}")
        return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kinds(kind: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "bool": "a boolean", "list": "an array",
             "dict": "a table"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in _tuple(kind))


def load_spec(path: Path) -> Spec:
    """Read, check and lay out the spec at `path`; PvkitError names the file and key on error."""
    path = Path(path)
    ctx = _Ctx(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PvkitError(f"{path}: cannot read the protocol spec: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PvkitError(f"{path}: not valid TOML: {exc}") from exc
    ctx.table(data, "top level", TOP_KEYS, TOP_KEYS - {"xenstore"})
    meta = ctx.table(data["meta"], "[meta]", META_KEYS, META_KEYS)
    for key in sorted(META_KEYS):
        ctx.get(meta, key, str, "[meta]")
    if meta["abi"] != "x86_64":
        raise ctx.fail("[meta], key 'abi'", f"only 'x86_64' is supported, not {meta['abi']!r}")
    typedefs = _typedefs(ctx, data["typedefs"])
    raw_consts = _raw_constants(ctx, data["constants"])
    aggregates = _aggregates(ctx, data["struct"], typedefs, raw_consts)
    resolver = _Resolver(ctx, raw_consts, aggregates)
    layouts = {a.name: resolver.layout(a.name) for a in aggregates}
    for raw in data["struct"]:
        if "size" in raw and layouts[raw["name"]].size != raw["size"]:
            raise ctx.fail(f"struct {raw['name']!r}, key 'size'",
                           f"the spec says {raw['size']} but the fields lay out to "
                           f"{layouts[raw['name']].size} bytes")
    groups = tuple(
        Group(g["group"], g.get("doc", ""),
              tuple(resolver.constant(c["name"]) for c in g["values"]))
        for g in data["constants"])
    xenstore = _xenstore(ctx, data.get("xenstore"))
    spec = Spec(path=path, source=_source_name(path), protocol=meta["protocol"],
                prefix=meta["prefix"], kernel_prefix=meta["kernel_prefix"], abi=meta["abi"],
                typedefs=typedefs, groups=groups, aggregates=aggregates, layouts=layouts,
                xenstore=xenstore)
    _check_c_names(ctx, spec)
    return spec


def _source_name(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def _typedefs(ctx: _Ctx, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ctx.fail("[typedefs]", "expected a table of name = base type")
    for name, base in raw.items():
        if not _IDENT.match(name) or name in SCALARS:
            raise ctx.fail(f"[typedefs], key {name!r}", "not a valid typedef name")
        if base not in SCALARS:
            raise ctx.fail(f"[typedefs], key {name!r}",
                           f"unknown type {base!r} (base types: {', '.join(SCALARS)})")
    return dict(raw)


def _raw_constants(ctx: _Ctx, raw: Any) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (its table, where it is) for every constant, checked for shape."""
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for i, group in enumerate(ctx.items(raw, "[[constants]]")):
        gwhere = f"[[constants]] #{i + 1}"
        ctx.table(group, gwhere, GROUP_KEYS, {"group", "values"})
        gname = ctx.get(group, "group", str, gwhere)
        gwhere = f"constants group {gname!r}"
        ctx.get(group, "doc", str, gwhere)
        for j, const in enumerate(ctx.items(group["values"], f"{gwhere}, key 'values'")):
            where = ctx.label(const, "constant", j + 1)
            if where.startswith("constant #"):
                where = f"{gwhere}, value #{j + 1}"
            ctx.table(const, where, CONST_KEYS, {"name"})
            name = ctx.get(const, "name", str, where)
            if not _CONST_NAME.match(name):
                raise ctx.fail(where, "constant names are UPPER_CASE identifiers")
            if name in out:
                raise ctx.fail(where, "defined twice")
            if ("value" in const) == ("expr" in const):
                raise ctx.fail(where, "needs exactly one of 'value' and 'expr'")
            ctx.get(const, "value", (int, str), where)
            ctx.get(const, "expr", str, where)
            ctx.get(const, "kernel", str, where)
            ctx.get(const, "doc", str, where)
            out[name] = (const, where)
    return out


def _aggregates(ctx: _Ctx, raw: Any, typedefs: dict[str, str],
                consts: dict[str, tuple[dict[str, Any], str]]) -> tuple[Aggregate, ...]:
    out: list[Aggregate] = []
    for i, table in enumerate(ctx.items(raw, "[[struct]]")):
        where = ctx.label(table, "struct", i + 1)
        if where.startswith("struct #"):
            where = f"[[struct]] #{i + 1}"
        ctx.table(table, where, STRUCT_KEYS, {"name", "fields"})
        name = ctx.get(table, "name", str, where)
        if not _IDENT.match(name):
            raise ctx.fail(where, "struct names are lower_case identifiers")
        if any(a.name == name for a in out):
            raise ctx.fail(where, "defined twice")
        kind = ctx.get(table, "kind", str, where, "struct")
        if kind not in ("struct", "union"):
            raise ctx.fail(f"{where}, key 'kind'", f"must be 'struct' or 'union', not {kind!r}")
        ctx.get(table, "size", int, where)
        fields = _fields(ctx, table, where, typedefs, consts, out)
        out.append(Aggregate(name=name, kind=kind,
                             packed=ctx.get(table, "packed", bool, where, False),
                             anonymous=ctx.get(table, "anonymous", bool, where, False),
                             doc=ctx.get(table, "doc", str, where, ""), fields=fields))
    _check_anonymous_use(ctx, out)
    return tuple(out)


def _fields(ctx: _Ctx, table: dict[str, Any], where: str, typedefs: dict[str, str],
            consts: dict[str, tuple[dict[str, Any], str]], earlier: list[Aggregate]
            ) -> tuple[Field, ...]:
    raw = ctx.items(table["fields"], f"{where}, key 'fields'")
    if not raw:
        raise ctx.fail(f"{where}, key 'fields'", "a struct needs at least one field")
    fields: list[Field] = []
    for j, ftable in enumerate(raw):
        fwhere = f"{where}, {ctx.label(ftable, 'field', j + 1)}"
        ctx.table(ftable, fwhere, FIELD_KEYS, {"name", "type"})
        fname = ctx.get(ftable, "name", str, fwhere)
        if not _IDENT.match(fname):
            raise ctx.fail(fwhere, "field names are lower_case identifiers")
        if any(f.name == fname for f in fields):
            raise ctx.fail(fwhere, "defined twice")
        ftype = ctx.get(ftable, "type", str, fwhere)
        base = typedefs.get(ftype, ftype)
        if base not in SCALARS and not any(a.name == base for a in earlier):
            raise ctx.fail(f"{fwhere}, key 'type'",
                           f"unknown type {ftype!r} (a base type {', '.join(SCALARS)}, a "
                           "typedef, or a struct defined earlier in the file)")
        count, count_name, array = _count(ctx, ftable, fwhere, consts)
        fields.append(Field(name=fname, type=ftype, base=base, count=count,
                            count_name=count_name, array=array,
                            doc=ctx.get(ftable, "doc", str, fwhere, "")))
    return tuple(fields)


def _count(ctx: _Ctx, ftable: dict[str, Any], fwhere: str,
           consts: dict[str, tuple[dict[str, Any], str]]) -> tuple[int, str | None, bool]:
    """(length, the constant it was named by, whether the field is an array)."""
    if "count" not in ftable:
        return 1, None, False
    count = ctx.get(ftable, "count", (int, str), fwhere)
    name = None
    if isinstance(count, str):
        if count not in consts or type(consts[count][0].get("value")) is not int:
            raise ctx.fail(f"{fwhere}, key 'count'",
                           f"{count!r} is not an integer constant with a literal value")
        name, count = count, consts[count][0]["value"]
    if count < 1:
        raise ctx.fail(f"{fwhere}, key 'count'", f"array length must be positive, not {count}")
    return count, name, True


def _check_anonymous_use(ctx: _Ctx, aggs: list[Aggregate]) -> None:
    for agg in aggs:
        if not agg.anonymous:
            continue
        uses = [(a.name, f) for a in aggs for f in a.fields if f.base == agg.name]
        if len(uses) != 1 or uses[0][1].array:
            raise ctx.fail(f"struct {agg.name!r}, key 'anonymous'",
                           "an anonymous aggregate must be used exactly once, as a non-array "
                           f"member (used {len(uses)} times)")


def _xenstore(ctx: _Ctx, raw: Any) -> tuple[XsKey, ...]:
    out: list[XsKey] = []
    for i, table in enumerate(ctx.items(raw, "[[xenstore]]")):
        where = ctx.label(table, "xenstore key", i + 1)
        if where.startswith("xenstore key #"):
            where = f"[[xenstore]] #{i + 1}"
        ctx.table(table, where, XS_KEYS, {"name", "key", "writer"})
        name = ctx.get(table, "name", str, where)
        if not _CONST_NAME.match(name) or any(x.name == name for x in out):
            raise ctx.fail(where, "names are unique UPPER_CASE identifiers")
        writer = ctx.get(table, "writer", str, where)
        if writer not in WRITERS:
            raise ctx.fail(f"{where}, key 'writer'", f"must be one of {', '.join(WRITERS)}")
        out.append(XsKey(name=name, key=ctx.get(table, "key", str, where), writer=writer,
                         doc=ctx.get(table, "doc", str, where, "")))
    return tuple(out)


def _check_c_names(ctx: _Ctx, spec: Spec) -> None:
    seen: dict[str, str] = {}
    names = [(c.name, f"constant {c.name!r}") for c in spec.constants.values()]
    names += [(f"XS_{x.name}", f"xenstore key {x.name!r}") for x in spec.xenstore]
    for macro, where in names:
        if macro in seen:
            raise ctx.fail(where, f"{spec.prefix.upper()}_{macro} clashes with {seen[macro]}")
        seen[macro] = where


# ---------------------------------------------------------------------------------------------
# layout and constant evaluation


class _Resolver:
    """Lays out aggregates and evaluates constants on demand (each may need the other)."""

    def __init__(self, ctx: _Ctx, consts: dict[str, tuple[dict[str, Any], str]],
                 aggregates: tuple[Aggregate, ...]) -> None:
        self.ctx = ctx
        self.raw = consts
        self.aggs = {a.name: a for a in aggregates}
        self.done: dict[str, Constant] = {}
        self.layouts: dict[str, Layout] = {}
        self.busy: set[str] = set()

    def constant(self, name: str) -> Constant:
        if name in self.done:
            return self.done[name]
        table, where = self.raw[name]
        if name in self.busy:
            raise self.ctx.fail(where, "its expression depends on itself")
        self.busy.add(name)
        if "expr" in table:
            value: int | str = self._eval(table["expr"], f"{where}, key 'expr'")
        else:
            value = table["value"]
        self.busy.discard(name)
        const = Constant(name=name, value=value, doc=table.get("doc", ""),
                         kernel=table.get("kernel"), expr=table.get("expr"))
        self.done[name] = const
        return const

    def layout(self, name: str) -> Layout:
        if name not in self.layouts:
            self.layouts[name] = _lay_out(self.aggs[name], self.layout)
        return self.layouts[name]

    def _eval(self, text: str, where: str) -> int:
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise self.ctx.fail(where, f"cannot parse {text!r}: {exc.msg}") from exc
        return self._node(tree.body, text, where)

    def _node(self, node: ast.AST, text: str, where: str) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node.id, where)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left = self._node(node.left, text, where)
            right = self._node(node.right, text, where)
            if isinstance(node.op, ast.FloorDiv) and right == 0:
                raise self.ctx.fail(where, f"division by zero in {text!r}")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self._call(node.func.id, node.args, text, where)
        raise self.ctx.fail(where, f"unsupported expression {ast.unparse(node)!r} in {text!r}")

    def _name(self, name: str, where: str) -> int:
        if name not in self.raw:
            raise self.ctx.fail(where, f"unknown constant {name!r}")
        value = self.constant(name).value
        if not isinstance(value, int):
            raise self.ctx.fail(where, f"constant {name!r} is not an integer")
        return value

    def _call(self, func: str, args: list[ast.expr], text: str, where: str) -> int:
        if func == "sizeof":
            if len(args) != 1 or not isinstance(args[0], ast.Name) or args[0].id not in self.aggs:
                raise self.ctx.fail(where, f"sizeof() takes a struct name, in {text!r}")
            return self.layout(args[0].id).size
        values = [self._node(a, text, where) for a in args]
        if func == "max" and values:
            return max(values)
        if func == "rounddown_pow2" and len(values) == 1 and values[0] > 0:
            return 1 << (values[0].bit_length() - 1)
        raise self.ctx.fail(where, f"unsupported call {func}() in {text!r}")


_BINOPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b, ast.LShift: lambda a, b: a << b,
    ast.RShift: lambda a, b: a >> b, ast.BitOr: lambda a, b: a | b,
    ast.BitAnd: lambda a, b: a & b,
}


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def _lay_out(agg: Aggregate, layout_of: Callable[[str], Layout]) -> Layout:
    """C layout on x86_64: natural alignment, or alignment 1 for members of packed ones."""
    members: dict[str, Member] = {}
    offset = size = 0
    align = 1
    for fld in agg.fields:
        inner = layout_of(fld.base) if fld.base not in SCALARS else None
        esize, ealign = (inner.size, inner.align) if inner else SCALARS[fld.base][:2]
        ealign = 1 if agg.packed else ealign
        start = 0 if agg.kind == "union" else _align_up(offset, ealign)
        members[fld.name] = Member(start, esize, fld.count)
        if inner and not fld.array:
            for path, m in inner.members.items():
                members[f"{fld.name}.{path}"] = Member(start + m.offset, m.size, m.count)
        offset = start + esize * fld.count
        size = max(size, offset)
        align = max(align, ealign)
    return Layout(size=_align_up(size, align), align=align, members=members)


# ---------------------------------------------------------------------------------------------
# rendering


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["pyrepr"] = _quoted
    env.globals["define"] = _c_define
    env.globals["assign"] = _py_assign
    env.globals["comment"] = _py_comment
    return env


def _quoted(value: str) -> str:
    """A double-quoted literal, valid both in C and in Python (the spec's strings are ASCII)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tab_to(text: str, column: int) -> str:
    """`text` followed by tabs up to `column` (at least one)."""
    width = len(text.expandtabs())
    tabs = max(1, (column - width + 7) // 8)
    return text + "\t" * tabs


def _c_define(name: str, value: str, doc: str) -> str:
    line = _tab_to(f"#define {name}", 48) + value
    if not doc:
        return line
    full = f"{_tab_to(line, 56)}/* {doc} */"
    return full if len(full.expandtabs()) <= 100 else f"/* {doc} */\n{line}"


def _py_assign(name: str, value: str, doc: str) -> str:
    line = f"{name} = {value}"
    if doc and len(line) + len(doc) + 4 <= 100:
        return f"{line}  # {doc}"
    return f"# {doc}\n{line}" if doc else line


def _py_comment(text: str) -> str:
    return "\n".join(f"# {line}" for line in textwrap.wrap(text, 98))


def _c_const(const: Constant) -> str:
    value = const.value
    if isinstance(value, str):
        return _quoted(value)
    return f"({value})" if value < 0 else str(value)


def _c_type(spec: Spec, fld: Field) -> str:
    if fld.base in SCALARS:
        return fld.base
    return spec.c_name(spec.aggregate(fld.base))


def _c_comment(decl: str, fld: Field) -> str:
    parts = [fld.type] if fld.type != fld.base else []
    parts += [fld.doc] if fld.doc else []
    if not parts:
        return decl
    full = f"{_tab_to(decl, 40)}/* {': '.join(parts)} */"
    if len(full.expandtabs()) <= 100:
        return full
    tabs = decl[:len(decl) - len(decl.lstrip("\t"))]
    return f"{tabs}/* {': '.join(parts)} */\n{decl}"


def _c_field_lines(spec: Spec, fld: Field, indent: int) -> Iterator[str]:
    tabs = "\t" * indent
    dims = ""
    if fld.array:
        dims = f"[{spec.prefix.upper()}_{fld.count_name}]" if fld.count_name else f"[{fld.count}]"
    if fld.base in SCALARS or not spec.aggregate(fld.base).anonymous:
        yield _c_comment(f"{tabs}{_c_type(spec, fld)} {fld.name}{dims};", fld)
        return
    agg = spec.aggregate(fld.base)
    yield f"{tabs}{agg.kind} {{"
    for inner in agg.fields:
        yield from _c_field_lines(spec, inner, indent + 1)
    yield f"{tabs}}}{' __packed' if agg.packed else ''} {fld.name}{dims};"


def _c_block_comment(text: str) -> str:
    """`/* text */`, or a kernel-style block comment wrapped at 80 columns if that is long."""
    if len(text) + 6 <= 100:
        return f"/* {text} */"
    lines = textwrap.wrap(text, 77)
    return "\n".join(["/*", *(f" * {line}" for line in lines), " */"])


def _c_structs(spec: Spec) -> list[dict[str, Any]]:
    out = []
    for agg in spec.structs:
        layout = spec.layouts[agg.name]
        lines = [line for fld in agg.fields for line in _c_field_lines(spec, fld, 1)]
        checks = [(path, m.offset, m.size * m.count) for path, m in layout.members.items()]
        out.append({"name": agg.name, "c_name": spec.c_name(agg), "doc": agg.doc,
                    "comment": _c_block_comment(f"{spec.kernel_name(agg)}: {agg.doc}"),
                    "kernel_name": spec.kernel_name(agg), "packed": agg.packed,
                    "lines": lines, "size": layout.size, "checks": checks})
    return out


def render_c(spec: Spec) -> str:
    """The C header <prefix>_proto.h: constants, XenStore keys, structs, layout assertions."""
    groups = [{"doc": g.doc, "consts": [(c.name, _c_const(c), c) for c in g.constants]}
              for g in spec.groups]
    xs = [(x.name, _quoted(x.key), x) for x in spec.xenstore]
    return _env().get_template("proto.h.j2").render(
        spec=spec, P=spec.prefix.upper(), groups=groups, xenstore=xs,
        structs=_c_structs(spec), guard=f"_{spec.prefix.upper()}_PROTO_H")


def _py_layouts(spec: Spec) -> list[dict[str, Any]]:
    out = []
    for agg in spec.structs:
        layout = spec.layouts[agg.name]
        out.append({"ident": agg.name.upper(), "name": agg.name, "doc": agg.doc,
                    "c_name": spec.c_name(agg), "kernel_name": spec.kernel_name(agg),
                    "size": layout.size,
                    "members": [(p, (m.offset, m.size, m.count))
                                for p, m in layout.members.items()]})
    return out


def _py_value(value: int | str) -> str:
    return _quoted(value) if isinstance(value, str) else str(value)


def render_py(spec: Spec) -> str:
    """The Python mirror module: constants, XenStore keys and field layouts."""
    groups = [{"doc": g.doc, "consts": [(c.name, _py_value(c.value), c) for c in g.constants]}
              for g in spec.groups]
    return _env().get_template("proto_py.j2").render(
        spec=spec, groups=groups, xenstore=spec.xenstore, structs=_py_layouts(spec))


def specs(directory: Path = DRIVERS_DIR) -> list[Path]:
    """Every protocol spec of the drivers: drivers/<driver>/<protocol>.spec.toml."""
    return sorted(directory.glob(SPEC_GLOB))


def outputs(spec_path: Path) -> tuple[Path, Path]:
    """(C header, Python mirror) generated from the spec at `spec_path`, by its [meta] prefix."""
    spec = load_spec(spec_path)
    return (Path(spec_path).parent / f"{spec.prefix}_proto.h",
            PACKAGE_DIR / f"{spec.prefix}_proto.py")


def generate(spec_path: Path, out_c: Path | None = None, out_py: Path | None = None
             ) -> tuple[Path, Path]:
    """Regenerate the C header and the Python mirror from one spec; returns their paths."""
    spec = load_spec(spec_path)
    default_c, default_py = outputs(spec_path)
    out_c, out_py = out_c or default_c, out_py or default_py
    c_text, py_text = render_c(spec), render_py(spec)
    Path(out_c).write_text(c_text)
    Path(out_py).write_text(py_text)
    return Path(out_c), Path(out_py)


def generate_all(directory: Path = DRIVERS_DIR) -> list[Path]:
    """Regenerate the outputs of every spec under `directory`; the files written."""
    found = specs(directory)
    if not found:
        raise PvkitError(f"no protocol spec ({SPEC_GLOB}) under {directory}")
    return [path for spec in found for path in generate(spec)]
