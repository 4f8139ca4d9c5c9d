"""The pvnet backend's transmit validation (drivers/pvnet/pvnet_validate.c), in user space.

Built with gcc: a UBSan-instrumented shared library for the table-driven tests (through
ctypes), with explicit cases for the packet shapes of past netback advisories (XSA-39, 90, 423,
432, 448), and an ASan+UBSan fuzz harness (tests/data/pvnet/fuzz_validate.c) that runs a
million generated packets against an independent checker; the harness is shown to catch
broken validators.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pvkit import paths
from pvkit import pvnet_proto as P

PVNET = paths.DRIVERS_DIR / "pvnet"
SOURCE = PVNET / "pvnet_validate.c"
FUZZ = Path(__file__).parent / "data" / "pvnet" / "fuzz_validate.c"
USER_INC = Path(__file__).parent / "data" / "include"  # pvkit_user.h
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
FUZZ_PACKETS = 1_000_000


def _header_enum() -> dict[str, int]:
    text = (PVNET / "pvnet_validate.h").read_text()
    body = text[text.index("enum pvnet_verr {"):]
    body = body[:body.index("};")]
    assert "= 1," in body.splitlines()[1]
    return {name: i + 1 for i, name in enumerate(re.findall(r"PVNET_VERR_(\w+)", body))}


def _header_defines() -> dict[str, int]:
    text = (PVNET / "pvnet_validate.h").read_text()
    pattern = r"#define PVNET_TXV_(\w+)\s+(0x[0-9a-fA-F]+|\d+)U?\b"
    return {m[0]: int(m[1], 0) for m in re.findall(pattern, text)}


VERR = _header_enum()
TXV = _header_defines()
FATAL = {"RING", "CHAIN", "EXTRA_TYPE", "EXTRA_DUP", "SLOTS_FATAL", "PAGE", "GSO", "PARAM"}
WINDOW = 1 + (P.EXTRA_TYPE_MAX - 1) + TXV["FATAL_SLOTS"] - 1


def err(name: str) -> int:
    return -VERR[name]


# ---- packets, limits and the C library -------------------------------------------------------


@dataclass
class Slot:
    size: int
    offset: int = 0
    gref: int = 100
    id: int = 0
    flags: int = 0


@dataclass
class Extra:
    type: int
    more: bool = False
    gso_size: int = 1448
    gso_type: int = P.GSO_TYPE_TCPV4


@dataclass
class Packet:
    """A transmit packet: slot sizes as the frontend writes them (the first: the total)."""
    slots: list[Slot]
    extras: list[Extra] = field(default_factory=list)
    csum_blank: bool = False

    def entries(self) -> list[bytes]:
        out = []
        for i, slot in enumerate(self.slots):
            flags = slot.flags
            if i + 1 < len(self.slots):
                flags |= P.TXF_MORE_DATA
            if i == 0 and self.extras:
                flags |= P.TXF_EXTRA_INFO
            if i == 0 and self.csum_blank:
                flags |= P.TXF_CSUM_BLANK
            out.append(tx_request(slot.gref, slot.offset, flags, slot.id or 1000 + i,
                                  slot.size))
            if i == 0:
                out += [extra_info(x) for x in self.extras]
        return out


def put(buf: bytearray, fields: dict[str, P.Field], path: str, value: int) -> None:
    offset, size, _ = fields[path]
    buf[offset:offset + size] = value.to_bytes(size, "little")


def tx_request(gref: int, offset: int, flags: int, id_: int, size: int) -> bytes:
    buf = bytearray(P.TX_REQUEST_SIZE)
    for path, value in (("gref", gref), ("offset", offset), ("flags", flags), ("id", id_),
                        ("size", size)):
        put(buf, P.TX_REQUEST_FIELDS, path, value)
    return bytes(buf)


def extra_info(x: Extra) -> bytes:
    buf = bytearray(P.TX_REQUEST_SIZE)  # an extra-info slot takes a request's place
    put(buf, P.EXTRA_INFO_FIELDS, "type", x.type)
    put(buf, P.EXTRA_INFO_FIELDS, "flags", P.EXTRA_FLAG_MORE if x.more else 0)
    put(buf, P.EXTRA_INFO_FIELDS, "u.gso.size", x.gso_size)
    put(buf, P.EXTRA_INFO_FIELDS, "u.gso.type", x.gso_type)
    return bytes(buf)


def packet(*sizes: int, **kw: object) -> Packet:
    """`packet(1514)`: one slot; `packet(3000, 1000)`: 2000 in the first slot + 1000."""
    return Packet([Slot(s) for s in sizes], **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Dev:
    max_slots: int = P.NR_SLOTS_MIN
    max_size: int = 1514 + 4
    gref_limit: int = 32768
    flags: int = TXV["GSO_TCPV4"] | TXV["GSO_TCPV6"]


class Limits(ctypes.Structure):
    _fields_ = [("max_slots", ctypes.c_uint32), ("max_size", ctypes.c_uint32),
                ("gref_limit", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class Seg(ctypes.Structure):
    _fields_ = [("gref", ctypes.c_uint32), ("offset", ctypes.c_uint16),
                ("len", ctypes.c_uint16), ("pkt_off", ctypes.c_uint32)]


class Info(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("id", ctypes.c_uint16), ("flags", ctypes.c_uint16),
                ("nr_entries", ctypes.c_uint8), ("nr_slots", ctypes.c_uint8),
                ("nr_extras", ctypes.c_uint8), ("nr_segs", ctypes.c_uint8),
                ("gso_type", ctypes.c_uint8), ("has_hash", ctypes.c_uint8),
                ("gso_size", ctypes.c_uint16), ("seg", Seg * TXV["FATAL_SLOTS"])]


def gcc() -> str:
    path = shutil.which("gcc")
    if path is None:
        pytest.skip("gcc not installed")
    return path


def compile_c(args: list[str], source: Path = SOURCE, include: Path = PVNET) -> None:
    result = subprocess.run([gcc(), "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                             "-I", str(USER_INC), "-I", str(include), *args, str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("pvnet-validate") / "libpvnet_validate.so"
    compile_c(["-O1", "-g", "-shared", "-fPIC", "-fsanitize=undefined",
               "-fno-sanitize-recover=all", "-o", str(out)])
    lib = ctypes.CDLL(str(out))
    lib.pvnet_validate_tx.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                      ctypes.POINTER(Limits), ctypes.POINTER(Info)]
    lib.pvnet_validate_rx_req.argtypes = [ctypes.c_void_p, ctypes.POINTER(Limits)]
    lib.pvnet_validate_ring_prod.argtypes = [ctypes.c_uint32] * 3
    lib.pvnet_validate_fatal.argtypes = [ctypes.c_int]
    lib.pvnet_validate_strerror.argtypes = [ctypes.c_int]
    lib.pvnet_validate_strerror.restype = ctypes.c_char_p
    return lib


def validate(lib: ctypes.CDLL, pkt: Packet | list[bytes], dev: Dev = Dev(),
             avail: int | None = None) -> tuple[int, Info]:
    entries = pkt.entries() if isinstance(pkt, Packet) else pkt
    n = len(entries) if avail is None else avail
    raw = b"".join(entries)[:n * P.TX_REQUEST_SIZE].ljust(n * P.TX_REQUEST_SIZE, b"\0")
    buf = ctypes.create_string_buffer(raw, len(raw))
    info = Info()
    rc = lib.pvnet_validate_tx(buf, n, ctypes.byref(Limits(dev.max_slots, dev.max_size,
                                                           dev.gref_limit, dev.flags)),
                               ctypes.byref(info))
    return rc, info


def plan(info: Info) -> list[tuple[int, int, int, int]]:
    return [(s.gref, s.offset, s.len, s.pkt_off) for s in info.seg[:info.nr_segs]]


# ---- table-driven cases ----------------------------------------------------------------------

GSO4 = Extra(P.EXTRA_TYPE_GSO)
HASH = Extra(P.EXTRA_TYPE_HASH, gso_size=0, gso_type=0)
BIG = Dev(max_size=65535)
TABLE: list[tuple[str, Packet, Dev, str | None]] = [
    # accepted
    ("one slot, minimum frame", packet(60), Dev(), None),
    ("one slot, full frame", packet(1514), Dev(), None),
    ("csum_blank", packet(1514, csum_blank=True), Dev(), None),
    ("two slots", packet(1514, 1000), Dev(), None),
    ("GSO over 17 pages", Packet([Slot(65535), *[Slot(4096)] * 15,
                                  Slot(65535 - 4096 * 15 - 60)], [GSO4]), Dev(), None),
    ("GSO extra with hash extra", Packet([Slot(3000), Slot(1000)],
                                         [Extra(P.EXTRA_TYPE_GSO, more=True), HASH]),
     Dev(), None),
    ("18 slots", packet(100 + 17 * 60, *[60] * 17), Dev(), None),
    ("20 slots when 20 are taken", packet(1000, *[40] * 19), Dev(max_slots=20), None),
    ("jumbo frame", packet(9014, 4096, 918), Dev(max_size=9018), None),
    ("data at the end of the page", Packet([Slot(100, offset=P.PAGE_SIZE - 100)]), Dev(),
     None),
    ("multicast add, advertised", Packet([Slot(60)], [Extra(P.EXTRA_TYPE_MCAST_ADD)]),
     Dev(flags=TXV["MCAST"]), None),
    ("xdp extra is ignored on transmit", Packet([Slot(60)], [Extra(P.EXTRA_TYPE_XDP)]),
     Dev(), None),
    ("largest grant below the table size", Packet([Slot(60, gref=32767)]), Dev(), None),
    ("no table size known", Packet([Slot(60, gref=0xFFFFFFFF)]), Dev(gref_limit=0), None),
    # fatal
    ("chain past the requests produced", packet(200, 100), Dev(), "CHAIN"),
    ("extra chain past the requests", Packet([Slot(60)], [Extra(1, more=True)]), Dev(),
     "CHAIN"),
    ("extra type 0", Packet([Slot(60)], [Extra(0)]), Dev(), "EXTRA_TYPE"),
    ("extra type 6", Packet([Slot(60)], [Extra(6)]), Dev(), "EXTRA_TYPE"),
    ("extra type twice", Packet([Slot(60)], [Extra(1, more=True), Extra(1)]), Dev(),
     "EXTRA_DUP"),
    ("21 slots", packet(2100, *[100] * 20), Dev(), "SLOTS_FATAL"),
    ("later slot crosses its page", Packet([Slot(200), Slot(100, offset=4000)]), Dev(),
     "PAGE"),
    ("first slot crosses its page", Packet([Slot(200, offset=3900)]), Dev(), "PAGE"),
    ("GSO size 0", Packet([Slot(3000), Slot(1000)], [Extra(1, gso_size=0)]), BIG, "GSO"),
    ("GSO type 3", Packet([Slot(3000), Slot(1000)], [Extra(1, gso_type=3)]), BIG, "GSO"),
    # dropped
    ("slots larger than the packet", packet(1000, 1001), Dev(), "SLOT_SIZE"),
    ("19 slots", packet(1900, *[100] * 18), Dev(), "SLOTS"),
    ("2 slots, backend takes 1 (no sg)", packet(1514, 1000), Dev(max_slots=1), "SLOTS"),
    ("13-byte first slot", packet(100, 87), Dev(), "HEADER"),
    ("runt frame", packet(10), Dev(), "HEADER"),
    ("one byte over the MTU", packet(1519), Dev(), "TOO_BIG"),
    ("jumbo frame at MTU 1500", packet(9014, 4096, 918), Dev(), "TOO_BIG"),
    ("GSO TCPv6 not advertised", Packet([Slot(3000), Slot(1000)],
                                         [Extra(1, gso_type=P.GSO_TYPE_TCPV6)]),
     Dev(flags=TXV["GSO_TCPV4"]), "GSO_FEATURE"),
    ("multicast without multicast control",
     Packet([Slot(60)], [Extra(P.EXTRA_TYPE_MCAST_DEL)]), Dev(), "EXTRA_UNSUPPORTED"),
    ("reserved grant ref 0", Packet([Slot(60, gref=0)]), Dev(), "GREF"),
    ("reserved grant ref 7", Packet([Slot(60, gref=7)]), Dev(), "GREF"),
    ("grant ref beyond the table", Packet([Slot(200), Slot(100, gref=32768)]), Dev(),
     "GREF"),
    ("bad limits: 21 slots", packet(60), Dev(max_slots=21), "PARAM"),
    ("bad limits: 0 slots", packet(60), Dev(max_slots=0), "PARAM"),
    ("bad limits: max size above 64K", packet(60), Dev(max_size=65536), "PARAM"),
]


@pytest.mark.parametrize(("pkt", "dev", "expected"), [t[1:] for t in TABLE],
                         ids=[t[0] for t in TABLE])
def test_table(lib: ctypes.CDLL, pkt: Packet, dev: Dev, expected: str | None) -> None:
    entries = pkt.entries()
    avail = len(entries)
    if expected == "CHAIN":  # the frontend produced one request fewer than the chain needs
        avail -= 1 if len(pkt.slots) > 1 else 0
    rc, info = validate(lib, entries, dev, avail)
    assert rc == (err(expected) if expected else 0), lib.pvnet_validate_strerror(rc).decode()
    assert lib.pvnet_validate_fatal(rc) == (expected in FATAL)
    if expected not in FATAL:
        # accepted or dropped: the backend answers exactly the packet's requests
        assert info.nr_entries == len(entries)
        assert (info.nr_slots, info.nr_extras) == (len(pkt.slots), len(pkt.extras))
        assert info.id == 1000 and info.size == pkt.slots[0].size
    if expected is None:
        assert sum(s.len for s in info.seg[:info.nr_segs]) == info.size


def test_chain_needs_every_request(lib: ctypes.CDLL) -> None:
    """A packet that says more data follows must have it on the ring: one request short of
    its chain is CHAIN, whether a data slot or an extra-info slot is missing."""
    two = packet(200, 100).entries()
    assert validate(lib, two, avail=1)[0] == err("CHAIN")
    extras = Packet([Slot(60)], [Extra(1, more=True), HASH]).entries()
    assert validate(lib, extras, avail=2)[0] == err("CHAIN")
    assert validate(lib, extras, avail=3)[0] == 0


def test_plan_of_a_packet(lib: ctypes.CDLL) -> None:
    pkt = Packet([Slot(3000, offset=96, gref=10), Slot(1000, offset=0, gref=11),
                  Slot(0, gref=12), Slot(500, offset=3596, gref=13)],
                 [GSO4], csum_blank=True)
    rc, info = validate(lib, pkt, BIG)
    assert rc == 0
    assert plan(info) == [(10, 96, 1500, 0), (11, 0, 1000, 1500), (13, 3596, 500, 2500)]
    assert (info.nr_entries, info.nr_slots, info.nr_extras, info.nr_segs) == (5, 4, 1, 3)
    assert (info.gso_type, info.gso_size) == (P.GSO_TYPE_TCPV4, 1448)
    assert info.flags & P.TXF_CSUM_BLANK and not info.has_hash


# ---- the packet shapes of past netback advisories --------------------------------------------


def test_xsa_39_bogus_producer_and_endless_chain(lib: ctypes.CDLL) -> None:
    """XSA-39 (CVE-2013-0216/0217): a frontend made netback loop forever (a producer index
    far beyond the consumer) or leak (a slot chain that never ends). Both are fatal here and
    the work per packet is bounded by the window of requests copied."""
    assert lib.pvnet_validate_ring_prod(0x1000, 0, P.TX_RING_SIZE) == err("RING")
    assert lib.pvnet_validate_ring_prod(0xFFFFFFFF, 0, P.TX_RING_SIZE) == err("RING")
    assert lib.pvnet_validate_ring_prod(P.TX_RING_SIZE, 0, P.TX_RING_SIZE) == 0
    endless = [tx_request(100, 0, P.TXF_MORE_DATA, i, 10) for i in range(WINDOW)]
    rc, _ = validate(lib, endless)
    assert rc == err("SLOTS_FATAL") and lib.pvnet_validate_fatal(rc)
    endless_extras = [tx_request(100, 0, P.TXF_EXTRA_INFO, 1, 60)] + [
        extra_info(Extra(t % 5 + 1, more=True)) for t in range(WINDOW - 1)]
    rc, _ = validate(lib, endless_extras)
    assert rc == err("EXTRA_DUP") and lib.pvnet_validate_fatal(rc)
    assert validate(lib, endless, avail=WINDOW + 1)[0] == err("PARAM")


def test_xsa_90_malformed_packet_is_fatal_not_acted_on(lib: ctypes.CDLL) -> None:
    """XSA-90 (CVE-2014-2580): on a malformed packet netback disabled the interface from
    softirq context, taking a mutex: a host crash. The validator only classifies (fatal);
    pvnet-back acts on it from its own kthread (see pvnet_back.c)."""
    for shape in (Packet([Slot(200), Slot(100, offset=4090)]),
                  packet(2100, *[100] * 20), Packet([Slot(60)], [Extra(9)])):
        rc, _ = validate(lib, shape)
        assert rc and lib.pvnet_validate_fatal(rc), lib.pvnet_validate_strerror(rc)


def test_xsa_423_headers_split_over_slots(lib: ctypes.CDLL) -> None:
    """XSA-423 (CVE-2022-3643): a packet whose protocol headers are spread over several
    small slots left them outside the skb's linear area. Accepted here, and the plan places
    every byte: the backend copies the head of the packet contiguously whatever the slots."""
    pkt = packet(14 + 10 * 8 + 1400, *[10] * 8, 1400)
    rc, info = validate(lib, pkt)
    assert rc == 0
    offs = [s.pkt_off for s in info.seg[:info.nr_segs]]
    assert offs == [0, *range(14, 94, 10), 94]
    assert info.seg[0].len == P.ETH_HLEN


def test_xsa_432_maximally_split_tiny_packet(lib: ctypes.CDLL) -> None:
    """XSA-432 (CVE-2023-34319): a packet split into as many slots as allowed, yet smaller
    than the header area netback gathers, overran netback's array. Here: 18 slots of a
    60-byte frame (14 bytes, then 17 slots of 1-3 bytes); the plan has one segment per slot,
    covering exactly [0, 60)."""
    rest = [3] * 14 + [2, 1, 1]
    pkt = packet(60, *rest)
    rc, info = validate(lib, pkt)
    assert rc == 0 and info.nr_segs == 18 and sum(s.len for s in info.seg[:18]) == 60
    assert [s.pkt_off for s in info.seg[:18]][-1] == 59
    rc, info = validate(lib, packet(60, *rest), Dev(max_slots=17))
    assert rc == err("SLOTS") and info.nr_entries == 18  # dropped, all 18 answered


def test_xsa_448_zero_length_slots(lib: ctypes.CDLL) -> None:
    """XSA-448 (CVE-2023-46838): slots of zero length after the first became empty skb
    fragments and a NULL dereference in the core network code. Accepted, and left out of
    the plan: no empty segment ever reaches the backend's copy."""
    pkt = packet(120, *[0] * 17)
    rc, info = validate(lib, pkt)
    assert rc == 0 and info.nr_slots == 18 and info.nr_segs == 1
    assert plan(info) == [(100, 0, 120, 0)]
    mixed = Packet([Slot(300), Slot(0), Slot(100), Slot(0), Slot(0)])
    rc, info = validate(lib, mixed)
    assert rc == 0 and [s.len for s in info.seg[:info.nr_segs]] == [200, 100]


# ---- receive requests, ring indexes, strings ---------------------------------------------------


@pytest.mark.parametrize(("gref", "limit", "expected"), [
    (8, 32768, None), (32767, 32768, None), (32768, 32768, "GREF"), (0, 32768, "GREF"),
    (7, 0, "GREF"), (0xFFFFFFFF, 0, None)])
def test_rx_request(lib: ctypes.CDLL, gref: int, limit: int, expected: str | None) -> None:
    buf = bytearray(P.RX_REQUEST_SIZE)
    put(buf, P.RX_REQUEST_FIELDS, "id", 77)
    put(buf, P.RX_REQUEST_FIELDS, "gref", gref)
    raw = ctypes.create_string_buffer(bytes(buf), len(buf))
    rc = lib.pvnet_validate_rx_req(raw, ctypes.byref(Limits(18, 1514, limit, 0)))
    assert rc == (err(expected) if expected else 0)


def test_bad_arguments(lib: ctypes.CDLL) -> None:
    limits, info = Limits(18, 1514, 0, 0), Info()
    raw = ctypes.create_string_buffer(packet(60).entries()[0], P.TX_REQUEST_SIZE)
    assert lib.pvnet_validate_tx(None, 1, ctypes.byref(limits), ctypes.byref(info)) == \
        err("PARAM")
    assert lib.pvnet_validate_tx(raw, 0, ctypes.byref(limits), ctypes.byref(info)) == \
        err("PARAM")
    assert lib.pvnet_validate_tx(raw, 1, None, ctypes.byref(info)) == err("PARAM")
    assert lib.pvnet_validate_tx(raw, 1, ctypes.byref(limits), None) == err("PARAM")
    assert lib.pvnet_validate_rx_req(None, ctypes.byref(limits)) == err("PARAM")
    assert lib.pvnet_validate_ring_prod(0, 0, 0) == err("PARAM")
    assert lib.pvnet_validate_ring_prod(0, 0, 255) == err("PARAM")


def test_strerror_and_fatal(lib: ctypes.CDLL) -> None:
    reasons = {lib.pvnet_validate_strerror(-code).decode() for code in VERR.values()
               if code < VERR["COUNT"]}
    assert len(reasons) == VERR["COUNT"] - 1 and "unknown error" not in reasons
    assert lib.pvnet_validate_strerror(0) == b"ok"
    for bad in (-VERR["COUNT"], 1000, -(2**31)):
        assert lib.pvnet_validate_strerror(bad) == b"unknown error"
    fatal = {name for name, code in VERR.items()
             if code < VERR["COUNT"] and lib.pvnet_validate_fatal(-code)}
    assert fatal == FATAL
    assert lib.pvnet_validate_fatal(0) == 0


@pytest.mark.parametrize("name", ["pvnet_validate.c", "pvnet_validate.h"])
def test_checkpatch_clean(name: str) -> None:
    trees = sorted(paths.cache_dir().glob("src/linux-source-6.1_*/linux-source-6.1"))
    script = trees[-1] / "scripts" / "checkpatch.pl" if trees else None
    if script is None or not script.is_file() or shutil.which("perl") is None:
        pytest.skip("no kernel tree with scripts/checkpatch.pl, or no perl")
    run = subprocess.run(["perl", str(script), "--strict", "--no-tree", "-f", str(PVNET / name)],
                         capture_output=True, text=True, cwd=PVNET)
    assert "total: 0 errors, 0 warnings, 0 checks" in run.stdout, run.stdout


# ---- the fuzz run ----------------------------------------------------------------------------


def build_fuzz(out: Path, source: Path = SOURCE) -> Path:
    compile_c([*SANITIZE, str(FUZZ), "-o", str(out)], source=source,
              include=source.parent if source != SOURCE else PVNET)
    return out


def run_fuzz(exe: Path, count: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), str(count)], capture_output=True, text=True, timeout=300,
                          env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                               "UBSAN_OPTIONS": "print_stacktrace=1"})


def test_fuzz_million(tmp_path: Path) -> None:
    run = run_fuzz(build_fuzz(tmp_path / "fuzz_validate"), FUZZ_PACKETS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "runtime error" not in run.stderr and "ERROR: AddressSanitizer" not in run.stderr
    stats = {k: int(v) for k, v in re.findall(r"^([a-z-]+) (\d+)$", run.stdout, re.M)}
    assert stats["requests"] >= FUZZ_PACKETS
    rejected = {m[0]: int(m[1]) for m in re.findall(r"^rejected (.+): (\d+)$", run.stdout, re.M)}
    assert len(rejected) == VERR["COUNT"] - 1
    assert all(n > 500 for n in rejected.values()), rejected  # every reason, often
    assert stats["accepted"] > FUZZ_PACKETS // 20
    for shape in ("accepted-multislot", "accepted-gso", "accepted-zero-length-slots",
                  "rx-accepted", "rx-rejected", "ring-ok", "ring-bad"):
        assert stats[shape] > 1000, shape
    print(run.stdout)


@pytest.mark.parametrize(("old", "new"), [
    ("if (rest > info->size)", "if (rest > info->size + 1)"),  # sizes may exceed the packet
    ("\tif (!len)\n\t\treturn;\n", ""),  # empty segments in the plan (XSA-448)
    ("if (info->nr_slots >= PVNET_TXV_FATAL_SLOTS)", "if (info->nr_slots > 30)"),
])
def test_fuzz_catches_a_broken_validator(tmp_path: Path, old: str, new: str) -> None:
    """The harness's own check: with one rule broken in the validator, it aborts."""
    text = SOURCE.read_text()
    assert old in text
    broken = tmp_path / "pvnet_validate.c"
    broken.write_text(text.replace(old, new, 1))
    shutil.copy(PVNET / "pvnet_validate.h", tmp_path)
    shutil.copy(PVNET / "pvnet_proto.h", tmp_path)
    run = run_fuzz(build_fuzz(tmp_path / "fuzz_broken", broken), 300_000)
    assert run.returncode != 0 and ("MISMATCH" in run.stderr or "ERROR" in run.stderr), \
        run.stdout[-500:]
