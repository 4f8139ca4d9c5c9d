"""Tests of pvkit.elf on small ELF files built here with gcc/ld, plus one real-build test."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pvkit import elf
from pvkit.errors import PvkitError
from pvkit.paths import cache_dir

pytestmark = pytest.mark.skipif(
    not (shutil.which("gcc") and shutil.which("ld")), reason="needs gcc and ld"
)

ENTRY = 0xFFFFFFFF81234560
FEATURES = "!writable_page_tables|pae_pgdir_above_4gb"
SUPPORTED = (1 << 0) | (1 << 11) | (1 << 15)
PARA_SITES = 7

# The kernel's ELFNOTE() macro (include/linux/elfnote.h), with numeric types.
NOTES_S = f"""
#define ELFNOTE(name, type, desc) \\
    .pushsection .note.name, "a", @note; .balign 4; \\
    .long 2f - 1f; .long 4484f - 3f; .long type; \\
    1: .asciz #name; 2: .balign 4; 3: desc; 4484: .balign 4; .popsection

    .text
    .globl _start
_start:
    nop
    .globl startup_xen
startup_xen:
    ret

    ELFNOTE(Linux, 6, .asciz "not-a-xen-note")
    ELFNOTE(Xen, 6, .asciz "linux")
    ELFNOTE(Xen, 7, .asciz "2.6")
    ELFNOTE(Xen, 5, .asciz "xen-3.0")
    ELFNOTE(Xen, 3, .quad 0xffffffff80000000)
    ELFNOTE(Xen, 1, .quad startup_xen)
    ELFNOTE(Xen, 10, .ascii "{FEATURES}")
    ELFNOTE(Xen, 17, .long {SUPPORTED})
    ELFNOTE(Xen, 13, .quad 1; .quad 1)
    ELFNOTE(Xen, 14, .long 1)
    ELFNOTE(Xen, 42, .byte 0xde; .byte 0xad; .byte 0xbe)
    ELFNOTE(Xen, 6, .asciz "second-guest-os-is-ignored")

    .rept {PARA_SITES}
771: nop
    .pushsection .parainstructions, "a"
    .balign 8; .quad 771b; .byte 1; .byte 1; .short 0; .balign 8
    .popsection
    .endr
"""

OLD_C = """
int grown_tab[10] = {1};
char removed_buf[64] = {1};
long same_var[4] = {1};
int bump(void) { static int counter = 1; return counter++; }
int bump2(void) { static int counter = 2; return counter++; }
int grown_fn(int x) { return x + 1; }
int removed_fn(int x) { return x - 1; }
"""

NEW_C = """
int grown_tab[25] = {1};
char added_buf[128] = {1};
long same_var[4] = {1};
int bump(void) { static int counter = 1; return counter++; }
int bump2(void) { static int counter = 2; return counter++; }
int grown_fn(int x) { int i, s = 0; for (i = 0; i < x; i++) s += i * x ^ (s >> 3); return s; }
int added_fn(int x) { return x * 7; }
"""

KO_S = r"""
    .section .modinfo, "a"
    .ascii "vermagic=6.1.192 mod_unload \0license=GPL\0"
    .text
    .globl init_module
init_module:
    ret
"""


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def _compile(src: Path, out: Path) -> Path:
    _run("gcc", "-c", "-O1", "-fno-asynchronous-unwind-tables", "-o", out, src)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("elf")
    (d / "notes.S").write_text(NOTES_S)
    (d / "old.c").write_text(OLD_C)
    (d / "new.c").write_text(NEW_C)
    (d / "mod.S").write_text(KO_S)
    (d / "nomod.c").write_text("int f(void) { return 0; }\n")
    (d / "novm.S").write_text('.section .modinfo, "a"\n.asciz "license=GPL"\n')
    files = {
        "notes_o": _compile(d / "notes.S", d / "notes.o"),
        "old": _compile(d / "old.c", d / "old.o"),
        "new": _compile(d / "new.c", d / "new.o"),
        "ko": _compile(d / "mod.S", d / "fake.ko"),
        "nomodinfo": _compile(d / "nomod.c", d / "nomod.ko"),
        "novermagic": _compile(d / "novm.S", d / "novm.ko"),
    }
    files["vmlinux"] = d / "vmlinux"
    _run("ld", "-o", files["vmlinux"], "-e", "_start", files["notes_o"])
    return files


def _symbol_address(path: Path, name: str) -> int:
    with path.open("rb") as handle:
        symtab = ELFFile(handle).get_section_by_name(".symtab")
        return symtab.get_symbol_by_name(name)[0]["st_value"]


def _strip_section_headers(src: Path, dst: Path) -> Path:
    """A copy of an ELF64 file whose section header table is gone (e_shoff/e_shnum = 0)."""
    data = bytearray(src.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)
    dst.write_bytes(bytes(data))
    return dst


# --- Xen notes -----------------------------------------------------------------------------

def _expected_notes(entry: int) -> dict[str, object]:
    return {
        "XEN_ELFNOTE_GUEST_OS": "linux",
        "XEN_ELFNOTE_GUEST_VERSION": "2.6",
        "XEN_ELFNOTE_XEN_VERSION": "xen-3.0",
        "XEN_ELFNOTE_VIRT_BASE": 0xFFFFFFFF80000000,
        "XEN_ELFNOTE_ENTRY": entry,
        "XEN_ELFNOTE_FEATURES": FEATURES,
        "XEN_ELFNOTE_SUPPORTED_FEATURES": SUPPORTED,
        "XEN_ELFNOTE_L1_MFN_VALID": [1, 1],
        "XEN_ELFNOTE_SUSPEND_CANCEL": 1,
        "XEN_ELFNOTE_42": "deadbe",
    }


def test_xen_notes_linked(built: dict[str, Path]) -> None:
    vmlinux = built["vmlinux"]
    entry = _symbol_address(vmlinux, "startup_xen")
    assert entry != 0
    assert elf.xen_notes(vmlinux) == _expected_notes(entry)


def test_xen_notes_relocatable_object(built: dict[str, Path]) -> None:
    # In a .o the ENTRY pointer is still a relocation, so the stored bytes are 0.
    assert elf.xen_notes(built["notes_o"]) == _expected_notes(0)


def test_xen_notes_from_pt_note_without_section_headers(built: dict[str, Path],
                                                         tmp_path: Path) -> None:
    stripped = _strip_section_headers(built["vmlinux"], tmp_path / "noshdr")
    entry = _symbol_address(built["vmlinux"], "startup_xen")
    assert elf.xen_notes(stripped) == _expected_notes(entry)


def test_xen_notes_none(built: dict[str, Path]) -> None:
    assert elf.xen_notes(built["old"]) == {}


def test_xenfeat_names() -> None:
    assert elf.xenfeat_names(SUPPORTED) == ["writable_page_tables", "dom0",
                                           "linux_rsdp_unrestricted"]
    assert elf.xenfeat_names(0) == []
    assert elf.xenfeat_names(1 << 20) == ["bit20"]


# --- paravirt sites ------------------------------------------------------------------------

def test_parainstructions_count(built: dict[str, Path]) -> None:
    assert elf.parainstructions_count(built["vmlinux"]) == PARA_SITES
    assert elf.parainstructions_count(built["notes_o"]) == PARA_SITES
    assert elf.require_parainstructions(built["vmlinux"]) == PARA_SITES


def test_parainstructions_missing(built: dict[str, Path]) -> None:
    assert elf.parainstructions_count(built["old"]) == 0
    with pytest.raises(PvkitError, match=r"old\.o: has no \.parainstructions section"):
        elf.require_parainstructions(built["old"])


# --- sizes ---------------------------------------------------------------------------------

def test_section_sizes(built: dict[str, Path]) -> None:
    sizes = elf.section_sizes(built["vmlinux"])
    assert sizes[".parainstructions"] == 16 * PARA_SITES
    assert sizes[".text"] == PARA_SITES + 2
    assert ".symtab" not in sizes and ".strtab" not in sizes


def _slow_symbol_sizes(path: Path) -> dict[str, int]:
    """Reference implementation through pyelftools' symbol iteration."""
    sizes: dict[str, int] = {}
    with path.open("rb") as handle:
        for sym in ELFFile(handle).get_section_by_name(".symtab").iter_symbols():
            if sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT") and sym["st_size"] > 0:
                name = re.sub(r"\.\d+(?=\.|$)", "", sym.name)
                sizes[name] = sizes.get(name, 0) + sym["st_size"]
    return sizes


def test_symbol_sizes(built: dict[str, Path]) -> None:
    sizes = elf.symbol_sizes(built["old"])
    assert sizes["grown_tab"] == 40
    assert sizes["removed_buf"] == 64
    assert sizes["same_var"] == 32
    assert sizes["counter"] == 8  # counter.0 + counter.1, summed
    assert sizes["grown_fn"] > 0 and sizes["removed_fn"] > 0
    assert sizes == _slow_symbol_sizes(built["old"])


def test_symbol_sizes_stripped(built: dict[str, Path], tmp_path: Path) -> None:
    stripped = tmp_path / "stripped"
    _run("strip", "-o", stripped, built["vmlinux"])
    with pytest.raises(PvkitError, match=r"stripped: no \.symtab"):
        elf.symbol_sizes(stripped)


def test_size_diff(built: dict[str, Path]) -> None:
    old, new = elf.symbol_sizes(built["old"]), elf.symbol_sizes(built["new"])
    diff = elf.size_diff(built["old"], built["new"])
    json.dumps(diff)
    rows = {r["name"]: r for r in diff["symbols"]}
    assert set(rows) == {"grown_tab", "removed_buf", "added_buf", "grown_fn", "removed_fn",
                         "added_fn"}
    assert rows["grown_tab"] == {"name": "grown_tab", "old": 40, "new": 100, "delta": 60}
    assert rows["added_buf"] == {"name": "added_buf", "old": 0, "new": 128, "delta": 128}
    assert rows["removed_buf"] == {"name": "removed_buf", "old": 64, "new": 0, "delta": -64}
    assert rows["grown_fn"]["delta"] == new["grown_fn"] - old["grown_fn"] > 0
    deltas = [abs(r["delta"]) for r in diff["symbols"]]
    assert deltas == sorted(deltas, reverse=True)
    assert (diff["added"], diff["removed"], diff["grown"], diff["shrunk"]) == (2, 2, 2, 0)
    assert diff["grow"] == sum(r["delta"] for r in diff["symbols"] if r["delta"] > 0)
    assert diff["shrink"] == -64 - old["removed_fn"]
    assert diff["total_delta"] == sum(new.values()) - sum(old.values())
    assert diff["total_delta"] == diff["grow"] + diff["shrink"]
    sections = {s["name"]: s for s in diff["sections"]}
    assert sections[".data"]["delta"] > 0 and sections[".text"]["delta"] > 0
    assert all(s["delta"] != 0 for s in diff["sections"])


def test_size_diff_same_file(built: dict[str, Path]) -> None:
    diff = elf.size_diff(built["old"], built["old"])
    assert diff["symbols"] == [] and diff["sections"] == [] and diff["total_delta"] == 0
    assert "no change" in elf.format_diff(diff)


def test_format_diff(built: dict[str, Path]) -> None:
    diff = elf.size_diff(built["old"], built["new"])
    text = elf.format_diff(diff, limit=3)
    assert text.startswith("add/remove: 2/2 grow/shrink: 2/0 ")
    assert "added_buf" in text and "... 3 more" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Function/object"))
    row = next(line for line in lines if line.startswith("added_buf"))
    assert len(row) == len(header) and row.endswith("+128")
    assert re.search(r"added_buf\s+-\s+128\s+\+128$", row)
    assert "Total: Before=" in text
    assert "removed_fn" in elf.format_diff(diff, limit=0)


# --- modules and vermagic ------------------------------------------------------------------

def test_module_vermagic(built: dict[str, Path]) -> None:
    assert elf.module_vermagic(built["ko"]) == "6.1.192 mod_unload "


def test_module_vermagic_errors(built: dict[str, Path]) -> None:
    with pytest.raises(PvkitError, match=r"nomod\.ko: no \.modinfo section"):
        elf.module_vermagic(built["nomodinfo"])
    with pytest.raises(PvkitError, match=r"novm\.ko: \.modinfo has no vermagic"):
        elf.module_vermagic(built["novermagic"])


def test_check_module(built: dict[str, Path]) -> None:
    ok, msg = elf.check_module(built["ko"], "6.1.192", {"MODULE_UNLOAD": "y", "SMP": "n"})
    assert ok
    assert msg == "fake.ko: vermagic '6.1.192 mod_unload ' matches"
    ok, msg = elf.check_module(built["ko"], "6.1.192", {"MODULE_UNLOAD": "y", "SMP": "y"})
    assert not ok
    assert msg == ("fake.ko: vermagic '6.1.192 mod_unload ' does not match kernel 6.1.192 "
                   "('6.1.192 SMP mod_unload ' expected); rebuild the module against that build")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "6.1.192 "),
        ({"SMP": "y", "MODULE_UNLOAD": "y", "X86_64": "y"}, "6.1.192 SMP mod_unload "),
        ({"SMP": "y", "PREEMPT_DYNAMIC": "y", "PREEMPT_BUILD": "y", "MODULE_UNLOAD": "y",
          "MODVERSIONS": "y", "X86_64": "y", "GENERIC_CPU": "y"},
         "6.1.192 SMP preempt mod_unload modversions "),
        ({"PREEMPT": "y"}, "6.1.192 preempt "),
        ({"PREEMPT_RT": "y", "SMP": "y"}, "6.1.192 SMP preempt_rt "),
        ({"PREEMPT_NONE": "y", "PREEMPT_NONE_BUILD": "y", "SMP": "n", "MODVERSIONS": "m"},
         "6.1.192 "),
        ({"CONFIG_SMP": "y", "CONFIG_MODULE_UNLOAD": "y"}, "6.1.192 SMP mod_unload "),
        ({"X86_32": "y", "M686": "y", "MODULE_UNLOAD": "y"}, "6.1.192 mod_unload 686 "),
        ({"X86_32": "y", "MGEODE_LX": "y"}, "6.1.192 GEODE "),
        ({"ARM64": "y", "SMP": "y", "PREEMPT_BUILD": "y"}, "6.1.192 SMP preempt aarch64"),
    ],
)
def test_expected_vermagic(config: dict[str, str], expected: str) -> None:
    assert elf.expected_vermagic("6.1.192", config) == expected


def test_expected_vermagic_randstruct(tmp_path: Path) -> None:
    config = {"SMP": "y", "RANDSTRUCT_FULL": "y", "RANDSTRUCT": "y"}
    with pytest.raises(PvkitError, match="CONFIG_RANDSTRUCT"):
        elf.expected_vermagic("6.1.192", config)
    assert (elf.expected_vermagic("6.1.192", config, randstruct_hash="ab12")
            == "6.1.192 SMP RANDSTRUCT_ab12")
    assert elf.read_randstruct_hash(tmp_path) is None
    header = tmp_path / "include/generated/randstruct_hash.h"
    header.parent.mkdir(parents=True)
    header.write_text('#define RANDSTRUCT_HASHED_SEED "0badc0de"\n')
    assert elf.read_randstruct_hash(tmp_path) == "0badc0de"


def test_expected_vermagic_x86_32_unknown_cpu() -> None:
    with pytest.raises(PvkitError, match="processor family"):
        elf.expected_vermagic("6.1.192", {"X86_32": "y"})


# --- kernel report -------------------------------------------------------------------------

def test_inspect_and_format_kernel(built: dict[str, Path]) -> None:
    report = elf.inspect_kernel(built["vmlinux"])
    assert json.loads(json.dumps(report)) == report
    assert report["path"] == str(built["vmlinux"])
    assert report["xen_notes"]["XEN_ELFNOTE_GUEST_OS"] == "linux"
    assert report["xen_features"] == ["writable_page_tables", "dom0", "linux_rsdp_unrestricted"]
    assert report["parainstructions"] == PARA_SITES
    assert report["sections"][".parainstructions"] == 16 * PARA_SITES
    text = elf.format_kernel(report)
    note_lines = [line for line in text.splitlines() if line.startswith("  XEN_ELFNOTE_")]
    assert len(note_lines) == len(report["xen_notes"])
    columns = {len(re.match(r"  XEN_ELFNOTE_\w+\s+", line).group(0)) for line in note_lines}
    assert len(columns) == 1  # values start in one column
    assert re.search(r"XEN_ELFNOTE_GUEST_OS\s+linux$", text, re.M)
    assert re.search(r"XEN_ELFNOTE_SUPPORTED_FEATURES\s+0x8801 \(writable_page_tables, dom0, "
                     r"linux_rsdp_unrestricted\)", text)
    assert "XEN_ELFNOTE_L1_MFN_VALID" in text and "0x1 0x1" in text
    assert f"paravirt patch sites (.parainstructions): {PARA_SITES}" in text
    assert re.search(rf"\.parainstructions\s+{16 * PARA_SITES}$", text, re.M)


def test_format_kernel_without_xen(built: dict[str, Path]) -> None:
    text = elf.format_kernel(elf.inspect_kernel(built["old"]))
    assert "none (not a Xen guest kernel" in text


# --- bad input -----------------------------------------------------------------------------

CALLS = {
    "xen_notes": elf.xen_notes,
    "parainstructions_count": elf.parainstructions_count,
    "section_sizes": elf.section_sizes,
    "symbol_sizes": elf.symbol_sizes,
    "module_vermagic": elf.module_vermagic,
    "inspect_kernel": elf.inspect_kernel,
}


@pytest.mark.parametrize("func", CALLS.values(), ids=CALLS.keys())
def test_not_elf(func, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.bin"
    bogus.write_text("hello, not an ELF\n")
    with pytest.raises(PvkitError) as exc:
        func(bogus)
    assert str(exc.value) == f"{bogus}: not an ELF file"


@pytest.mark.parametrize("func", CALLS.values(), ids=CALLS.keys())
def test_missing_file(func, tmp_path: Path) -> None:
    with pytest.raises(PvkitError) as exc:
        func(tmp_path / "nope")
    assert str(exc.value) == f"{tmp_path / 'nope'}: no such file"


def test_bad_input_other(built: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PvkitError, match=re.escape(f"{tmp_path}: not a regular file")):
        elf.xen_notes(tmp_path)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(PvkitError, match="not an ELF file"):
        elf.section_sizes(empty)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(built["vmlinux"].read_bytes()[:200])
    with pytest.raises(PvkitError, match=re.escape(f"{truncated}: corrupt ELF file")):
        elf.inspect_kernel(truncated)
    bogus = tmp_path / "bogus"
    bogus.write_text("junk")
    with pytest.raises(PvkitError, match=re.escape(f"{bogus}: not an ELF file")):
        elf.size_diff(built["old"], bogus)


# --- real kernel build ---------------------------------------------------------------------

def _finished_builds() -> list[Path]:
    return sorted(p.parent for p in cache_dir().glob("build/*/vmlinux")
                  if (p.parent / "metadata.json").exists())


def _dot_config(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^CONFIG_(\w+)=(.*)$", path.read_text(), re.M))


@pytest.mark.real
def test_real_kernel_builds() -> None:
    from pvkit import build as build_mod

    builds = {build_mod.build(p).dir for p in ("domU", "dom0")} | set(_finished_builds())
    for build in sorted(builds):
        report = elf.inspect_kernel(build / "vmlinux")
        notes = report["xen_notes"]
        assert notes["XEN_ELFNOTE_GUEST_OS"] == "linux", build
        assert isinstance(notes["XEN_ELFNOTE_ENTRY"], int) and notes["XEN_ELFNOTE_ENTRY"], build
        assert report["parainstructions"] > 1000, build
        release = (build / "include/config/kernel.release").read_text().strip()
        config = _dot_config(build / ".config")
        hashed = elf.read_randstruct_hash(build)
        for ko in sorted(build.glob("modroot/lib/modules/*/kernel/**/*.ko")):
            ok, msg = elf.check_module(ko, release, config, randstruct_hash=hashed)
            assert ok, msg


def _note(name: bytes, ntype: int, desc: bytes, align: int) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % align)

    head = struct.pack("<III", len(name), len(desc), ntype)
    # the name starts at offset 12 and the descriptor at the next `align` boundary
    return pad(head + name) + pad(desc)


def test_eight_byte_aligned_notes() -> None:
    """In an 8-aligned note section (.note.gnu.property) the descriptor starts at the next
    8-byte offset after the name: 12 + namesz rounded up, not namesz rounded up."""
    blob = _note(b"GNU\0", 5, struct.pack("<IIII", 0xC0000002, 4, 3, 0), 8)
    blob += _note(b"Xen\0", 6, b"linux\0", 8)
    notes = list(elf._iter_notes(blob, "<", 8))
    assert notes == [("GNU", 5, struct.pack("<IIII", 0xC0000002, 4, 3, 0)),
                     ("Xen", 6, b"linux\0")]


def test_inspect_a_real_host_binary() -> None:
    """/bin/ls (Debian 12) carries an 8-aligned .note.gnu.property: it is no Xen kernel, and
    its notes are not malformed."""
    report = elf.inspect_kernel(Path("/bin/ls"))
    assert report["xen_notes"] == {}
