"""ELF inspection of kernels and modules: Xen notes, paravirt sites, sizes, vermagic.

Library only; the CLI formats and prints what these functions return.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from pvkit.errors import PvkitError

# xen/include/public/elfnote.h
XEN_ELFNOTES: dict[int, str] = {
    0: "XEN_ELFNOTE_INFO",
    1: "XEN_ELFNOTE_ENTRY",
    2: "XEN_ELFNOTE_HYPERCALL_PAGE",
    3: "XEN_ELFNOTE_VIRT_BASE",
    4: "XEN_ELFNOTE_PADDR_OFFSET",
    5: "XEN_ELFNOTE_XEN_VERSION",
    6: "XEN_ELFNOTE_GUEST_OS",
    7: "XEN_ELFNOTE_GUEST_VERSION",
    8: "XEN_ELFNOTE_LOADER",
    9: "XEN_ELFNOTE_PAE_MODE",
    10: "XEN_ELFNOTE_FEATURES",
    11: "XEN_ELFNOTE_BSD_SYMTAB",
    12: "XEN_ELFNOTE_HV_START_LOW",
    13: "XEN_ELFNOTE_L1_MFN_VALID",
    14: "XEN_ELFNOTE_SUSPEND_CANCEL",
    15: "XEN_ELFNOTE_INIT_P2M",
    16: "XEN_ELFNOTE_MOD_START_PFN",
    17: "XEN_ELFNOTE_SUPPORTED_FEATURES",
    18: "XEN_ELFNOTE_PHYS32_ENTRY",
}
# INFO is documented as a string ("NAME=VALUE" pairs) too.
STRING_NOTES = frozenset(
    f"XEN_ELFNOTE_{n}"
    for n in ("INFO", "XEN_VERSION", "GUEST_OS", "GUEST_VERSION", "LOADER", "PAE_MODE",
              "FEATURES", "BSD_SYMTAB")
)
# xen/include/public/features.h
XENFEAT: dict[int, str] = {
    0: "writable_page_tables",
    1: "writable_descriptor_tables",
    2: "auto_translated_physmap",
    3: "supervisor_mode_kernel",
    4: "pae_pgdir_above_4gb",
    5: "mmu_pt_update_preserve_ad",
    6: "highmem_assist",
    7: "gnttab_map_avail_bits",
    8: "hvm_callback_vector",
    9: "hvm_safe_pvclock",
    10: "hvm_pirqs",
    11: "dom0",
    12: "grant_map_identity",
    13: "memory_op_vnode_supported",
    14: "ARM_SMCCC_supported",
    15: "linux_rsdp_unrestricted",
    16: "not_direct_mapped",
    17: "direct_mapped",
}
# arch/x86/include/asm/vermagic.h: MODULE_PROC_FAMILY of 32-bit CPU choices, in #elif order.
X86_32_PROC_FAMILY: dict[str, str] = {
    "M486SX": "486SX ", "M486": "486 ", "M586": "586 ", "M586TSC": "586TSC ",
    "M586MMX": "586MMX ", "MCORE2": "CORE2 ", "MATOM": "ATOM ", "M686": "686 ",
    "MPENTIUMII": "PENTIUMII ", "MPENTIUMIII": "PENTIUMIII ", "MPENTIUMM": "PENTIUMM ",
    "MPENTIUM4": "PENTIUM4 ", "MK6": "K6 ", "MK7": "K7 ", "MK8": "K8 ", "MELAN": "ELAN ",
    "MCRUSOE": "CRUSOE ", "MEFFICEON": "EFFICEON ", "MWINCHIPC6": "WINCHIPC6 ",
    "MWINCHIP3D": "WINCHIP3D ", "MCYRIXIII": "CYRIXIII ", "MVIAC3_2": "VIAC3-2 ",
    "MVIAC7": "VIAC7 ", "MGEODEGX1": "GEODEGX1 ", "MGEODE_LX": "GEODE ",
}
PARAINSTRUCTIONS = ".parainstructions"
_NUMERIC_SIZES = {1, 2, 4, 8}
_SYM_SUFFIX = re.compile(r"\.\d+(?=\.|$)")  # like bloat-o-meter: foo.isra.0 -> foo.isra
_SYM_TYPES = {1, 2}  # STT_OBJECT, STT_FUNC


# --- opening -------------------------------------------------------------------------------

@contextmanager
def _open_elf(path: Path) -> Iterator[ELFFile]:
    """An ELFFile for path; PvkitError for missing, unreadable, non-ELF or corrupt files."""
    path = Path(path)
    if not path.exists():
        raise PvkitError(f"{path}: no such file")
    if not path.is_file():
        raise PvkitError(f"{path}: not a regular file; give the path of an ELF file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise PvkitError(f"{path}: cannot read ({exc.strerror})") from exc
    with handle:
        if handle.read(4) != b"\x7fELF":
            raise PvkitError(f"{path}: not an ELF file")
        handle.seek(0)
        try:
            yield ELFFile(handle)
        except (ELFError, struct.error, ValueError) as exc:
            raise PvkitError(f"{path}: corrupt ELF file ({exc}); rebuild or re-copy it") from exc


def _endian(elf: ELFFile) -> str:
    return "<" if elf.little_endian else ">"


# --- Xen notes -----------------------------------------------------------------------------

def _align(n: int, to: int) -> int:
    return (n + to - 1) & ~(to - 1)


def _iter_notes(data: bytes, endian: str, align: int) -> Iterator[tuple[str, int, bytes]]:
    """(name, raw type, desc) of each note in a note section/segment body. The name and the
    descriptor each start at an `align`-aligned offset (4, or 8 for 8-aligned note sections
    such as .note.gnu.property): the offset is aligned, not the size."""
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(endian + "III", data, off)
        off += 12
        if off + namesz > len(data):
            raise ValueError(f"note name of type {ntype} runs past the end")
        name = data[off:off + namesz].split(b"\0", 1)[0].decode("ascii", "replace")
        off = _align(off + namesz, align)
        if off + descsz > len(data):
            raise ValueError(f"note '{name}' type {ntype} runs past the end")
        yield name, ntype, data[off:off + descsz]
        off = _align(off + descsz, align)


def _note_blobs(elf: ELFFile) -> Iterator[tuple[bytes, int]]:
    """(body, alignment) of SHT_NOTE sections, or of PT_NOTE segments if there are none."""
    sections = [s for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE"]
    if sections:
        for sec in sections:
            yield sec.data(), 8 if sec["sh_addralign"] == 8 else 4
        return
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_NOTE":
            yield seg.data(), 8 if seg["p_align"] == 8 else 4


def _decode_int(desc: bytes, endian: str) -> int | str:
    if len(desc) in _NUMERIC_SIZES:
        return int.from_bytes(desc, "little" if endian == "<" else "big")
    return desc.hex()


def _decode_note(key: str, desc: bytes, endian: str) -> object:
    if key in STRING_NOTES:
        return desc.rstrip(b"\0").decode("utf-8", "replace")
    if key == "XEN_ELFNOTE_L1_MFN_VALID":
        step = 8 if len(desc) % 8 == 0 else 4
        return [_decode_int(desc[i:i + step], endian) for i in range(0, len(desc), step)]
    if key.removeprefix("XEN_ELFNOTE_").isdigit():
        return desc.hex()
    return _decode_int(desc, endian)


def _xen_notes(elf: ELFFile, path: Path) -> dict[str, object]:
    endian = _endian(elf)
    notes: dict[str, object] = {}
    try:
        for blob, align in _note_blobs(elf):
            for name, ntype, desc in _iter_notes(blob, endian, align):
                if name != "Xen":
                    continue
                key = XEN_ELFNOTES.get(ntype, f"XEN_ELFNOTE_{ntype}")
                notes.setdefault(key, _decode_note(key, desc, endian))
    except ValueError as exc:
        raise PvkitError(f"{path}: malformed ELF note ({exc}); rebuild the file") from exc
    return notes


def xen_notes(path: Path) -> dict[str, object]:
    """The "Xen" ELF notes, keyed by XEN_ELFNOTE_* name; the first of a repeated type wins.

    Strings -> str, numbers -> int (1/2/4/8-byte desc, file endianness), L1_MFN_VALID ->
    list of ints, unknown types (and odd-sized numbers) -> hex string of the desc bytes.
    """
    with _open_elf(path) as elf:
        return _xen_notes(elf, Path(path))


def xenfeat_names(mask: int) -> list[str]:
    """XENFEAT_* names (without prefix) of the bits set in a SUPPORTED_FEATURES mask."""
    return [XENFEAT.get(bit, f"bit{bit}") for bit in range(mask.bit_length()) if mask >> bit & 1]


# --- paravirt patch sites ------------------------------------------------------------------

def _parainstructions(elf: ELFFile, path: Path) -> int | None:
    sec = elf.get_section_by_name(PARAINSTRUCTIONS)
    if sec is None:
        return None
    # struct paravirt_patch_site { u8 *instr; u8 type; u8 len; } aligned to a pointer: 2 words.
    entry = 16 if elf.elfclass == 64 else 8
    size = sec["sh_size"]
    if size % entry:
        raise PvkitError(f"{path}: {PARAINSTRUCTIONS} is {size} bytes, not a multiple of "
                         f"{entry}; is this an x86 Linux kernel?")
    return size // entry


def parainstructions_count(path: Path) -> int:
    """Number of paravirt patch sites (entries of .parainstructions); 0 if there is none."""
    with _open_elf(path) as elf:
        return _parainstructions(elf, Path(path)) or 0


def require_parainstructions(path: Path) -> int:
    """Like parainstructions_count, but a missing section is a PvkitError."""
    with _open_elf(path) as elf:
        count = _parainstructions(elf, Path(path))
    if count is None:
        raise PvkitError(f"{path}: has no {PARAINSTRUCTIONS} section; build the kernel "
                         "with CONFIG_PARAVIRT=y (e.g. CONFIG_XEN_PV=y)")
    return count


# --- sizes ---------------------------------------------------------------------------------

def _section_sizes(elf: ELFFile) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for sec in elf.iter_sections():
        if sec.name and sec["sh_flags"] & SH_FLAGS.SHF_ALLOC:
            sizes[sec.name] = sizes.get(sec.name, 0) + sec["sh_size"]
    return sizes


def section_sizes(path: Path) -> dict[str, int]:
    """Size of each allocated (SHF_ALLOC) section; same-named sections (.o groups) summed."""
    with _open_elf(path) as elf:
        return _section_sizes(elf)


def _raw_symbols(elf: ELFFile, path: Path) -> Iterator[tuple[str, int, int]]:
    """(name, STT type, size) of each .symtab entry, unpacked directly (pyelftools is slow)."""
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None or symtab["sh_type"] != "SHT_SYMTAB":
        raise PvkitError(f"{path}: no .symtab (stripped?); use the unstripped file, "
                         "e.g. vmlinux from the build directory")
    strtab = elf.get_section(symtab["sh_link"]).data()
    if elf.elfclass == 64:
        fmt, name_i, info_i, size_i = "IBBHQQ", 0, 1, 5
    else:
        fmt, name_i, info_i, size_i = "IIIBBH", 0, 3, 2
    for row in struct.iter_unpack(_endian(elf) + fmt, symtab.data()):
        start = row[name_i]
        name = strtab[start:strtab.index(b"\0", start)].decode("utf-8", "replace")
        yield name, row[info_i] & 0xF, row[size_i]


def symbol_sizes(path: Path) -> dict[str, int]:
    """Sizes of FUNC and OBJECT .symtab symbols with size > 0.

    As in scripts/bloat-o-meter, numeric suffixes are dropped (foo.isra.0 -> foo.isra,
    CSWTCH.12 -> CSWTCH) and symbols that then share a name (statics) are summed.
    """
    sizes: dict[str, int] = {}
    with _open_elf(path) as elf:
        for name, kind, size in _raw_symbols(elf, Path(path)):
            if kind in _SYM_TYPES and size > 0 and name:
                key = _SYM_SUFFIX.sub("", name)
                sizes[key] = sizes.get(key, 0) + size
    return sizes


def _delta_rows(old: Mapping[str, int], new: Mapping[str, int]) -> list[dict[str, Any]]:
    """Changed entries as {"name","old","new","delta"}, biggest change first."""
    rows = [
        {"name": name, "old": old.get(name, 0), "new": new.get(name, 0),
         "delta": new.get(name, 0) - old.get(name, 0)}
        for name in old.keys() | new.keys()
        if old.get(name, 0) != new.get(name, 0)
    ]
    rows.sort(key=lambda r: (-abs(r["delta"]), r["name"]))
    return rows


def size_diff(old: Path, new: Path) -> dict[str, Any]:
    """bloat-o-meter style comparison of two ELF files (JSON-able).

    "sections"/"symbols": changed entries only, biggest change first (0 = absent).
    "added"/"removed"/"grown"/"shrunk": symbol counts; "grow" (>= 0) and "shrink" (<= 0):
    bytes of the positive/negative symbol deltas; "total_delta" = grow + shrink;
    "old_total"/"new_total": summed symbol sizes.
    """
    old_syms, new_syms = symbol_sizes(old), symbol_sizes(new)
    symbols = _delta_rows(old_syms, new_syms)
    both = old_syms.keys() & new_syms.keys()
    grow = sum(r["delta"] for r in symbols if r["delta"] > 0)
    shrink = sum(r["delta"] for r in symbols if r["delta"] < 0)
    return {
        "old": str(old),
        "new": str(new),
        "sections": _delta_rows(section_sizes(old), section_sizes(new)),
        "symbols": symbols,
        "added": len(new_syms.keys() - old_syms.keys()),
        "removed": len(old_syms.keys() - new_syms.keys()),
        "grown": sum(1 for r in symbols if r["name"] in both and r["delta"] > 0),
        "shrunk": sum(1 for r in symbols if r["name"] in both and r["delta"] < 0),
        "grow": grow,
        "shrink": shrink,
        "total_delta": grow + shrink,
        "old_total": sum(old_syms.values()),
        "new_total": sum(new_syms.values()),
    }


# --- modules -------------------------------------------------------------------------------

def _modinfo(ko: Path) -> dict[str, str]:
    """key -> first value of the NUL-separated key=value strings in .modinfo."""
    with _open_elf(ko) as elf:
        sec = elf.get_section_by_name(".modinfo")
        if sec is None:
            raise PvkitError(f"{ko}: no .modinfo section; is it a kernel module (.ko)?")
        data = sec.data()
    info: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            info.setdefault(key, value)
    return info


def module_vermagic(ko: Path) -> str:
    """The module's vermagic string, exactly as stored (usually with a trailing space)."""
    info = _modinfo(ko)
    if "vermagic" not in info:
        raise PvkitError(f"{ko}: .modinfo has no vermagic; build it with kbuild (make M=...)")
    return info["vermagic"]


def _on(config: Mapping[str, str], *names: str) -> bool:
    return any(config.get(n) == "y" or config.get(f"CONFIG_{n}") == "y" for n in names)


def _preempt_vermagic(config: Mapping[str, str]) -> str:
    # PREEMPT_BUILD is selected by PREEMPT and PREEMPT_DYNAMIC; accept either in hand-made dicts.
    if _on(config, "PREEMPT_BUILD", "PREEMPT", "PREEMPT_DYNAMIC"):
        return "preempt "
    return "preempt_rt " if _on(config, "PREEMPT_RT") else ""


def _arch_vermagic(config: Mapping[str, str]) -> str:
    """MODULE_ARCH_VERMAGIC for x86 (64-bit: ""), arm64 and riscv; other arches: ""."""
    if _on(config, "ARM64"):
        return "aarch64"
    if _on(config, "RISCV"):
        return "riscv"
    if not _on(config, "X86_32"):
        return ""
    for symbol, family in X86_32_PROC_FAMILY.items():
        if _on(config, symbol):
            return family
    raise PvkitError("CONFIG_X86_32 config without a known processor family (CONFIG_M686, ...); "
                     "pass the full .config")


def _randstruct_vermagic(config: Mapping[str, str], randstruct_hash: str | None) -> str:
    if not _on(config, "RANDSTRUCT", "RANDSTRUCT_FULL", "RANDSTRUCT_PERFORMANCE"):
        return ""
    if not randstruct_hash:
        raise PvkitError("CONFIG_RANDSTRUCT is set, so the vermagic contains the seed hash; "
                         "pass randstruct_hash (see read_randstruct_hash(build_dir))")
    return f"RANDSTRUCT_{randstruct_hash}"


def expected_vermagic(release: str, config: Mapping[str, str], *,
                      randstruct_hash: str | None = None) -> str:
    """VERMAGIC_STRING of Linux 6.1 include/linux/vermagic.h for a release and .config dict.

    config maps symbol names (CONFIG_ prefix optional) to values; only "y" counts as set.
    """
    return (
        f"{release} "
        + ("SMP " if _on(config, "SMP") else "")
        + _preempt_vermagic(config)
        + ("mod_unload " if _on(config, "MODULE_UNLOAD") else "")
        + ("modversions " if _on(config, "MODVERSIONS") else "")
        + _arch_vermagic(config)
        + _randstruct_vermagic(config, randstruct_hash)
    )


def read_randstruct_hash(build_dir: Path) -> str | None:
    """RANDSTRUCT_HASHED_SEED from a build's include/generated/randstruct_hash.h, if any."""
    header = Path(build_dir) / "include/generated/randstruct_hash.h"
    if not header.is_file():
        return None
    match = re.search(r'RANDSTRUCT_HASHED_SEED\s+"([0-9a-f]+)"', header.read_text())
    return match.group(1) if match else None


def check_module(ko: Path, release: str, config: Mapping[str, str], *,
                 randstruct_hash: str | None = None) -> tuple[bool, str]:
    """(matches, message): does the module's vermagic equal what that kernel expects?

    Strict string comparison (the kernel skips the release part when MODVERSIONS is on).
    """
    have = module_vermagic(ko)
    want = expected_vermagic(release, config, randstruct_hash=randstruct_hash)
    name = Path(ko).name
    if have == want:
        return True, f"{name}: vermagic '{have}' matches"
    return False, (f"{name}: vermagic '{have}' does not match kernel {release} ('{want}' "
                   "expected); rebuild the module against that build")


# --- kernel report -------------------------------------------------------------------------

def inspect_kernel(vmlinux: Path) -> dict[str, Any]:
    """JSON-able summary: path, xen_notes, xen_features, parainstructions, sections."""
    path = Path(vmlinux)
    with _open_elf(path) as elf:
        notes = _xen_notes(elf, path)
        mask = notes.get("XEN_ELFNOTE_SUPPORTED_FEATURES")
        return {
            "path": str(path),
            "xen_notes": notes,
            "xen_features": xenfeat_names(mask) if isinstance(mask, int) else [],
            "parainstructions": _parainstructions(elf, path) or 0,
            "sections": _section_sizes(elf),
        }


# --- text formatting -----------------------------------------------------------------------

def _table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    """Rows as aligned text lines; columns in `right` are right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                  for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def _note_text(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | list):
        return str(value)
    if isinstance(value, list):
        return " ".join(f"{v:#x}" if isinstance(v, int) else str(v) for v in value)
    if key == "XEN_ELFNOTE_SUPPORTED_FEATURES":
        return f"{value:#x} ({', '.join(xenfeat_names(value)) or 'none'})"
    return f"{value:#x}"


def format_kernel(report: dict[str, Any]) -> str:
    """inspect_kernel() output as terminal text."""
    lines = [f"kernel: {report['path']}", "", "Xen ELF notes:"]
    notes = report.get("xen_notes") or {}
    if notes:
        rows = [(key, _note_text(key, value)) for key, value in notes.items()]
        lines += ["  " + line for line in _table(rows, set())]
    else:
        lines.append("  none (not a Xen guest kernel; enable CONFIG_XEN_PV or CONFIG_XEN_PVH)")
    lines += ["", f"paravirt patch sites (.parainstructions): {report.get('parainstructions', 0)}"]
    sections = report.get("sections") or {}
    if sections:
        rows = [("section", "size")] + [(n, str(s)) for n, s in sections.items()]
        rows.append(("total", str(sum(sections.values()))))
        lines += ["", "Allocated sections:"] + ["  " + line for line in _table(rows, {1})]
    return "\n".join(lines) + "\n"


def _signed(n: int) -> str:
    return f"{n:+d}" if n else "0"


def _delta_table(title: str, rows: list[dict[str, Any]], limit: int) -> list[str]:
    if not rows:
        return [f"{title}: no change"]
    shown = rows[:limit] if limit > 0 else rows
    table = [(title, "old", "new", "delta")] + [
        (r["name"], str(r["old"]) if r["old"] else "-", str(r["new"]) if r["new"] else "-",
         _signed(r["delta"]))
        for r in shown
    ]
    lines = _table(table, {1, 2, 3})
    if len(rows) > len(shown):
        lines.append(f"... {len(rows) - len(shown)} more")
    return lines


def format_diff(diff: dict[str, Any], limit: int = 20) -> str:
    """size_diff() output as terminal text, bloat-o-meter style; limit <= 0 shows all rows."""
    lines = [
        f"add/remove: {diff['added']}/{diff['removed']} "
        f"grow/shrink: {diff.get('grown', 0)}/{diff.get('shrunk', 0)} "
        f"up/down: {diff['grow']}/{diff['shrink']} ({_signed(diff['total_delta'])})",
    ]
    lines += _delta_table("Function/object", diff["symbols"], limit)
    lines += [""] + _delta_table("Section", diff["sections"], limit)
    before, after = diff.get("old_total"), diff.get("new_total")
    if before is not None and after is not None:
        change = f"{(after - before) * 100 / before:+.2f}%" if before else "n/a"
        lines += ["", f"Total: Before={before}, After={after}, chg {change}"]
    return "\n".join(lines) + "\n"
