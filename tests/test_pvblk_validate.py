"""The pvblk backend's request validation (drivers/pvblk/pvblk_validate.c), in user space.

Built with gcc: a UBSan-instrumented shared library for the table-driven and hypothesis tests
(through ctypes), and an ASan+UBSan fuzz harness (tests/data/pvblk/fuzz_validate.c) that runs
a million generated requests against an independent checker.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import linux_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvkit import paths
from pvkit import pvblk_proto as P

PVBLK = paths.DRIVERS_DIR / "pvblk"
SOURCE = PVBLK / "pvblk_validate.c"
FUZZ = Path(__file__).parent / "data" / "pvblk" / "fuzz_validate.c"
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
FUZZ_REQUESTS = 1_000_000
U64 = 2**64

USER_INC = Path(__file__).parent / "data" / "include"  # pvkit_user.h


def _header_enum() -> dict[str, int]:
    text = (PVBLK / "pvblk_validate.h").read_text()
    body = text[text.index("enum pvblk_verr {"):]
    body = body[:body.index("};")]
    names = re.findall(r"PVBLK_VERR_(\w+)", body)
    assert "= 1," in body.splitlines()[1]
    return {name: i + 1 for i, name in enumerate(names)}


def _header_flags() -> dict[str, int]:
    text = (PVBLK / "pvblk_validate.h").read_text()
    return {m[0]: int(m[1], 16) for m in re.findall(r"#define PVBLK_VDEV_(\w+)\s+(0x\w+)U", text)}


VERR = _header_enum()
FLAGS = _header_flags()
ALL_FEATURES = FLAGS["BARRIER"] | FLAGS["FLUSH"] | FLAGS["DISCARD"]
KNOWN_OPS = (P.OP_READ, P.OP_WRITE, P.OP_WRITE_BARRIER, P.OP_FLUSH_DISKCACHE, P.OP_DISCARD,
             P.OP_INDIRECT)


def err(name: str) -> int:
    return -VERR[name]


# ---- requests, devices and the C library ----------------------------------------------------


@dataclass
class Req:
    op: int
    nseg: int = 0
    segs: list[tuple[int, int]] = field(default_factory=list)  # (first_sect, last_sect)
    sector: int = 0
    nr_sectors: int = 0  # discard only
    indirect_op: int = 0
    id: int = 0x1122334455667788

    def raw(self) -> bytes:
        buf = bytearray(P.REQUEST_SIZE)
        put(buf, "operation", self.op)
        if self.op == P.OP_DISCARD:
            put(buf, "u.discard.id", self.id)
            put(buf, "u.discard.sector_number", self.sector)
            put(buf, "u.discard.nr_sectors", self.nr_sectors)
        elif self.op == P.OP_INDIRECT:
            put(buf, "u.indirect.indirect_op", self.indirect_op)
            put(buf, "u.indirect.nr_segments", self.nseg)
            put(buf, "u.indirect.id", self.id)
            put(buf, "u.indirect.sector_number", self.sector)
        else:
            put(buf, "u.rw.nr_segments", self.nseg)
            put(buf, "u.rw.id", self.id)
            put(buf, "u.rw.sector_number", self.sector)
            base, esize, count = P.REQUEST_FIELDS["u.rw.seg"]
            for i, (first, last) in enumerate(self.segs[:count]):
                at = base + i * esize
                buf[at + P.REQUEST_SEGMENT_FIELDS["first_sect"][0]] = first
                buf[at + P.REQUEST_SEGMENT_FIELDS["last_sect"][0]] = last
        return bytes(buf)


def put(buf: bytearray, path: str, value: int) -> None:
    offset, size, _ = P.REQUEST_FIELDS[path]
    buf[offset:offset + size] = value.to_bytes(size, "little")


@dataclass(frozen=True)
class Dev:
    size: int = 1 << 21
    max_indirect: int = P.MAX_INDIRECT_SEGMENTS
    flags: int = ALL_FEATURES

    @property
    def ro(self) -> Dev:
        return Dev(self.size, self.max_indirect, self.flags | FLAGS["READONLY"])


class Limits(ctypes.Structure):
    _fields_ = [("nr_sectors", ctypes.c_uint64), ("max_indirect_segs", ctypes.c_uint32),
                ("flags", ctypes.c_uint32)]


class Info(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("sector_number", ctypes.c_uint64),
                ("nr_sectors", ctypes.c_uint64), ("nr_segments", ctypes.c_uint32),
                ("nr_indirect_pages", ctypes.c_uint16), ("operation", ctypes.c_uint8),
                ("writes", ctypes.c_uint8)]


class Segment(ctypes.Structure):
    _fields_ = [("gref", ctypes.c_uint32), ("first_sect", ctypes.c_uint8),
                ("last_sect", ctypes.c_uint8)]


def gcc() -> str:
    path = shutil.which("gcc")
    if path is None:
        pytest.skip("gcc not installed")
    return path


def compile_c(args: list[str]) -> None:
    result = subprocess.run([gcc(), "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                             "-I", str(USER_INC), "-I", str(PVBLK),
                             *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("pvblk-validate") / "libpvblk_validate.so"
    compile_c(["-O1", "-g", "-shared", "-fPIC", "-fsanitize=undefined",
               "-fno-sanitize-recover=all", str(SOURCE), "-o", str(out)])
    lib = ctypes.CDLL(str(out))
    lib.pvblk_validate_request.argtypes = [ctypes.c_void_p, ctypes.POINTER(Limits),
                                           ctypes.POINTER(Info)]
    lib.pvblk_validate_indirect_segs.argtypes = [ctypes.c_void_p, ctypes.POINTER(Limits),
                                                 ctypes.POINTER(Info)]
    lib.pvblk_validate_ring_prod.argtypes = [ctypes.c_uint32] * 3
    lib.pvblk_validate_rsp_status.argtypes = [ctypes.c_int]
    lib.pvblk_validate_strerror.argtypes = [ctypes.c_int]
    lib.pvblk_validate_strerror.restype = ctypes.c_char_p
    return lib


def validate(lib: ctypes.CDLL, req: Req, dev: Dev) -> tuple[int, Info]:
    """Both steps, as a backend does them: the request, then an indirect one's segments."""
    raw = ctypes.create_string_buffer(req.raw(), P.REQUEST_SIZE)
    limits = Limits(dev.size, dev.max_indirect, dev.flags)
    info = Info()
    rc = lib.pvblk_validate_request(raw, ctypes.byref(limits), ctypes.byref(info))
    if rc or req.op != P.OP_INDIRECT:
        return rc, info
    segs = (Segment * info.nr_segments).from_buffer_copy(
        b"".join(struct.pack("<IBBxx", 7, first, last) for first, last in req.segs))
    return lib.pvblk_validate_indirect_segs(segs, ctypes.byref(limits), ctypes.byref(info)), info


# ---- the reference, written from the rules in pvblk_validate.h ------------------------------


def reference(req: Req, dev: Dev) -> int:
    if dev.max_indirect > P.MAX_INDIRECT_SEGMENTS:
        return err("PARAM")
    if req.op not in KNOWN_OPS:
        return err("BAD_OP")
    if req.op == P.OP_INDIRECT and req.indirect_op not in (P.OP_READ, P.OP_WRITE):
        return err("BAD_INDIRECT_OP")
    shape = _shape(req, dev)
    if shape:
        return shape
    effective = req.indirect_op if req.op == P.OP_INDIRECT else req.op
    if effective != P.OP_READ and dev.flags & FLAGS["READONLY"]:
        return err("READ_ONLY")
    if req.op == P.OP_DISCARD:
        count = req.nr_sectors
    else:
        segs = req.segs[:req.nseg]
        if any(not first <= last < P.SECTORS_PER_PAGE for first, last in segs):
            return err("SEGMENT")
        count = sum(last - first + 1 for first, last in segs)
    if count and req.sector + count >= U64:
        return err("OVERFLOW")
    if count and req.sector + count > dev.size:
        return err("RANGE")
    return 0


def _shape(req: Req, dev: Dev) -> int:
    """Checks 3 and 4: the feature was advertised; segment count / discard length."""
    needs = {P.OP_WRITE_BARRIER: "BARRIER", P.OP_FLUSH_DISKCACHE: "FLUSH",
             P.OP_DISCARD: "DISCARD"}
    if req.op in needs and not dev.flags & FLAGS[needs[req.op]]:
        return err("NOT_SUPPORTED")
    if req.op == P.OP_INDIRECT:
        if not dev.max_indirect:
            return err("NOT_SUPPORTED")
        return 0 if 1 <= req.nseg <= dev.max_indirect else err("NR_SEGMENTS")
    if req.op == P.OP_DISCARD:
        return 0 if req.nr_sectors else err("DISCARD_EMPTY")
    least = 1 if req.op in (P.OP_READ, P.OP_WRITE) else 0
    return 0 if least <= req.nseg <= P.MAX_SEGMENTS_PER_REQUEST else err("NR_SEGMENTS")


# ---- (a) table-driven ----------------------------------------------------------------------

GOOD = (0, 7)  # a whole page
MAXSEC = U64 - 1


def rw(op: int, nseg: int, sector: int = 0, seg: tuple[int, int] = GOOD,
       segs: list[tuple[int, int]] | None = None) -> Req:
    return Req(op, nseg, segs if segs is not None else [seg] * nseg, sector)


def indirect(nseg: int, iop: int = P.OP_READ, sector: int = 0,
             segs: list[tuple[int, int]] | None = None) -> Req:
    return Req(P.OP_INDIRECT, nseg, segs if segs is not None else [GOOD] * nseg, sector,
               indirect_op=iop)


def discard(sector: int, count: int) -> Req:
    return Req(P.OP_DISCARD, sector=sector, nr_sectors=count)


DEV = Dev()
TABLE: list[tuple[str, Req, Dev, str | None]] = [
    # accepted
    ("read one sector", rw(P.OP_READ, 1, seg=(3, 3)), DEV, None),
    ("write 11 segments", rw(P.OP_WRITE, 11, 100), DEV, None),
    ("read up to the last sector", rw(P.OP_READ, 2, DEV.size - 16), DEV, None),
    ("pure flush", rw(P.OP_FLUSH_DISKCACHE, 0, MAXSEC), DEV, None),
    ("pure barrier", rw(P.OP_WRITE_BARRIER, 0), DEV, None),
    ("flush with data", rw(P.OP_FLUSH_DISKCACHE, 3, 8), DEV, None),
    ("discard to the end", discard(8, DEV.size - 8), DEV, None),
    ("secure-flag-less discard of 1", discard(0, 1), DEV, None),
    ("indirect 8*512 segments", indirect(P.MAX_INDIRECT_SEGMENTS), DEV, None),
    ("indirect write 1 segment", indirect(1, P.OP_WRITE, DEV.size - 8), DEV, None),
    ("read on read-only device", rw(P.OP_READ, 1), DEV.ro, None),
    ("indirect read on read-only", indirect(20), DEV.ro, None),
    ("read at the last u64 sector", rw(P.OP_READ, 1, MAXSEC - 8), Dev(size=MAXSEC), None),
    ("discard all of a huge device", discard(0, MAXSEC), Dev(size=MAXSEC), None),
    # rejected
    ("op 4", Req(4, 1, [GOOD]), DEV, "BAD_OP"),
    ("op 7", Req(7), DEV, "BAD_OP"),
    ("op 255", Req(255), DEV, "BAD_OP"),
    ("indirect barrier", indirect(1, P.OP_WRITE_BARRIER), DEV, "BAD_INDIRECT_OP"),
    ("indirect indirect", indirect(1, P.OP_INDIRECT), DEV, "BAD_INDIRECT_OP"),
    ("flush not advertised", rw(P.OP_FLUSH_DISKCACHE, 0), Dev(flags=0), "NOT_SUPPORTED"),
    ("barrier not advertised", rw(P.OP_WRITE_BARRIER, 0), Dev(flags=FLAGS["FLUSH"]),
     "NOT_SUPPORTED"),
    ("discard not advertised", discard(0, 8), Dev(flags=FLAGS["BARRIER"]), "NOT_SUPPORTED"),
    ("indirect not advertised", indirect(1), Dev(max_indirect=0), "NOT_SUPPORTED"),
    ("read 0 segments", rw(P.OP_READ, 0), DEV, "NR_SEGMENTS"),
    ("write 0 segments", rw(P.OP_WRITE, 0), DEV, "NR_SEGMENTS"),
    ("write 12 segments", rw(P.OP_WRITE, 12), DEV, "NR_SEGMENTS"),
    ("flush 12 segments", rw(P.OP_FLUSH_DISKCACHE, 12), DEV, "NR_SEGMENTS"),
    ("read 255 segments", rw(P.OP_READ, 255), DEV, "NR_SEGMENTS"),
    ("indirect 0 segments", indirect(0), DEV, "NR_SEGMENTS"),
    ("indirect over advertised", indirect(33), Dev(max_indirect=32), "NR_SEGMENTS"),
    ("indirect 4097 segments", indirect(4097), DEV, "NR_SEGMENTS"),
    ("indirect 65535 segments", indirect(65535, segs=[]), DEV, "NR_SEGMENTS"),
    ("discard 0 sectors", discard(8, 0), DEV, "DISCARD_EMPTY"),
    ("write read-only", rw(P.OP_WRITE, 1), DEV.ro, "READ_ONLY"),
    ("flush read-only", rw(P.OP_FLUSH_DISKCACHE, 0), DEV.ro, "READ_ONLY"),
    ("barrier read-only", rw(P.OP_WRITE_BARRIER, 1), DEV.ro, "READ_ONLY"),
    ("discard read-only", discard(0, 8), DEV.ro, "READ_ONLY"),
    ("indirect write read-only", indirect(1, P.OP_WRITE), DEV.ro, "READ_ONLY"),
    ("first > last", rw(P.OP_READ, 1, seg=(4, 3)), DEV, "SEGMENT"),
    ("last = 8", rw(P.OP_READ, 1, seg=(0, 8)), DEV, "SEGMENT"),
    ("first = last = 8", rw(P.OP_READ, 1, seg=(8, 8)), DEV, "SEGMENT"),
    ("last = 255", rw(P.OP_WRITE, 1, seg=(0, 255)), DEV, "SEGMENT"),
    ("bad 11th segment", rw(P.OP_READ, 11, segs=[GOOD] * 10 + [(1, 0)]), DEV, "SEGMENT"),
    ("bad indirect segment", indirect(600, segs=[GOOD] * 599 + [(0, 8)]), DEV, "SEGMENT"),
    ("read wraps", rw(P.OP_READ, 1, MAXSEC, seg=(0, 0)), Dev(size=MAXSEC), "OVERFLOW"),
    ("read wraps to 0", rw(P.OP_READ, 1, U64 - 8), Dev(size=MAXSEC), "OVERFLOW"),
    ("discard wraps", discard(2, MAXSEC), Dev(size=MAXSEC), "OVERFLOW"),
    ("indirect wraps", indirect(2, sector=U64 - 9), Dev(size=MAXSEC), "OVERFLOW"),
    ("read one past the end", rw(P.OP_READ, 1, DEV.size - 7), DEV, "RANGE"),
    ("read of an empty device", rw(P.OP_READ, 1, seg=(0, 0)), Dev(size=0), "RANGE"),
    ("discard one past the end", discard(1, DEV.size), DEV, "RANGE"),
    ("indirect past the end", indirect(4096, sector=DEV.size - 4096 * 8 + 1), DEV, "RANGE"),
    ("end just below 2^64", rw(P.OP_READ, 1, U64 - 9), Dev(size=U64 - 2), "RANGE"),
    ("backend advertised too much", rw(P.OP_READ, 1), Dev(max_indirect=4097), "PARAM"),
]


@pytest.mark.parametrize(("req", "dev", "expected"), [t[1:] for t in TABLE],
                         ids=[t[0] for t in TABLE])
def test_table(lib: ctypes.CDLL, req: Req, dev: Dev, expected: str | None) -> None:
    want = err(expected) if expected else 0
    assert reference(req, dev) == want, "the Python reference disagrees with the table"
    rc, info = validate(lib, req, dev)
    assert rc == want, lib.pvblk_validate_strerror(rc).decode()
    assert info.id == req.id


def test_accepted_info(lib: ctypes.CDLL) -> None:
    rc, info = validate(lib, indirect(4096, P.OP_WRITE, 64), DEV)
    assert rc == 0
    assert (info.operation, info.writes, info.nr_segments) == (P.OP_WRITE, 1, 4096)
    assert info.nr_indirect_pages == P.MAX_INDIRECT_PAGES_PER_REQUEST
    assert (info.sector_number, info.nr_sectors) == (64, 4096 * 8)
    rc, info = validate(lib, indirect(513), DEV)
    assert (rc, info.nr_indirect_pages, info.writes) == (0, 2, 0)
    rc, info = validate(lib, rw(P.OP_WRITE, 2, 5, seg=(2, 6)), DEV)
    assert (rc, info.nr_sectors, info.nr_segments, info.writes) == (0, 10, 2, 1)
    rc, info = validate(lib, rw(P.OP_FLUSH_DISKCACHE, 0, 99), DEV)
    assert (rc, info.nr_sectors, info.writes) == (0, 0, 1)
    rc, info = validate(lib, discard(10, 20), DEV)
    assert (rc, info.sector_number, info.nr_sectors, info.nr_segments) == (0, 10, 20, 0)


def test_bad_arguments(lib: ctypes.CDLL) -> None:
    raw = ctypes.create_string_buffer(rw(P.OP_READ, 1).raw(), P.REQUEST_SIZE)
    limits, info = Limits(100, 32, 0), Info()
    assert lib.pvblk_validate_request(None, ctypes.byref(limits), ctypes.byref(info)) == \
        err("PARAM")
    assert lib.pvblk_validate_request(raw, None, ctypes.byref(info)) == err("PARAM")
    assert lib.pvblk_validate_request(raw, ctypes.byref(limits), None) == err("PARAM")
    segs = (Segment * 64)()
    for nseg in (0, 33, 5000):  # step 2 without a successful step 1
        info = Info(nr_segments=nseg)
        assert lib.pvblk_validate_indirect_segs(segs, ctypes.byref(limits),
                                                ctypes.byref(info)) == err("PARAM")


@pytest.mark.parametrize(("prod", "cons", "size", "expected"), [
    (0, 0, 32, None),
    (32, 0, 32, None),
    (33, 0, 32, "RING"),
    (0x10, 0xFFFFFFF0, 32, None),  # wrapped: 32 outstanding
    (0x11, 0xFFFFFFF0, 32, "RING"),
    (4, 5, 32, "RING"),  # producer behind the consumer
    (1000, 0, 1024, None),
    (0, 0, 0, "PARAM"),
    (0, 0, 33, "PARAM"),
    (5, 5, 1 << 31, None),
])
def test_ring_prod(lib: ctypes.CDLL, prod: int, cons: int, size: int, expected: str | None
                   ) -> None:
    assert lib.pvblk_validate_ring_prod(prod, cons, size) == (err(expected) if expected else 0)


def test_strerror_and_status(lib: ctypes.CDLL) -> None:
    reasons = {lib.pvblk_validate_strerror(-code).decode() for code in VERR.values()
               if code < VERR["COUNT"]}
    assert len(reasons) == VERR["COUNT"] - 1 and "unknown error" not in reasons
    assert lib.pvblk_validate_strerror(0) == b"ok"
    assert lib.pvblk_validate_strerror(VERR["RANGE"]) == lib.pvblk_validate_strerror(
        err("RANGE"))
    for bad in (-VERR["COUNT"], 1000, -(2**31)):
        assert lib.pvblk_validate_strerror(bad) == b"unknown error"
    assert lib.pvblk_validate_rsp_status(0) == P.RSP_OKAY
    assert lib.pvblk_validate_rsp_status(err("BAD_OP")) == P.RSP_EOPNOTSUPP
    assert lib.pvblk_validate_rsp_status(err("NOT_SUPPORTED")) == P.RSP_EOPNOTSUPP
    for name in ("SEGMENT", "RANGE", "READ_ONLY", "NR_SEGMENTS"):
        assert lib.pvblk_validate_rsp_status(err(name)) == P.RSP_ERROR


@pytest.mark.real
@pytest.mark.parametrize("name", ["pvblk_validate.c", "pvblk_validate.h"])
def test_checkpatch_clean(name: str) -> None:
    script = linux_tree() / "scripts" / "checkpatch.pl"
    run = subprocess.run(["perl", str(script), "--strict", "--no-tree", "-f", str(PVBLK / name)],
                         capture_output=True, text=True, cwd=PVBLK)
    assert "total: 0 errors, 0 warnings, 0 checks" in run.stdout, run.stdout


# ---- (b) the fuzz run ----------------------------------------------------------------------


def test_fuzz_million(tmp_path: Path) -> None:
    exe = tmp_path / "fuzz_validate"
    compile_c([*SANITIZE, str(FUZZ), str(SOURCE), "-o", str(exe)])
    run = subprocess.run([str(exe), str(FUZZ_REQUESTS)], capture_output=True, text=True,
                         timeout=300, env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                                           "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "runtime error" not in run.stderr and "ERROR: AddressSanitizer" not in run.stderr
    stats = dict(re.findall(r"^(requests|accepted) (\d+)$", run.stdout, re.M))
    assert int(stats["requests"]) >= FUZZ_REQUESTS
    rejected = {m[0]: int(m[1]) for m in re.findall(r"^rejected (.+): (\d+)$", run.stdout, re.M)}
    assert len(rejected) == VERR["COUNT"] - 1
    assert int(stats["accepted"]) > FUZZ_REQUESTS // 20
    # every reason a request can have was exercised (RING is the ring check's)
    assert all(n > 100 for reason, n in rejected.items() if "ring" not in reason), rejected
    accepted_ops = dict(re.findall(r"^accepted-op (\d+) (\d+)$", run.stdout, re.M))
    assert {int(op) for op in accepted_ops} == set(KNOWN_OPS)
    print(run.stdout)


# ---- (c) hypothesis against the Python reference --------------------------------------------

# Strategies are built once: building them inside a draw makes hypothesis slow.
SECTORS = st.one_of(st.integers(0, 64), st.integers(U64 - 64, U64 - 1), st.integers(0, U64 - 1),
                    st.integers((1 << 21) - 100, (1 << 21) + 100))
VALID_SEGMENTS = st.tuples(st.integers(0, 7), st.integers(0, 7)).map(lambda s: (min(s), max(s)))
ANY_SEGMENTS = st.one_of(st.tuples(st.integers(0, 9), st.integers(0, 9)),
                         st.tuples(st.integers(0, 255), st.integers(0, 255)))
INDEXES = st.integers(0, P.MAX_INDIRECT_SEGMENTS - 1)
NEAR_END = st.integers(-3, 3)
RW_SEGMENT_COUNTS = st.one_of(st.integers(0, 11), st.sampled_from([0, 11, 12, 255]))
INDIRECT_SEGMENT_COUNTS = st.one_of(
    st.integers(0, 40), st.integers(0, P.MAX_INDIRECT_SEGMENTS + 1),
    st.sampled_from([511, 512, 513, 4095, 4096, 4097, 65535]))
INDIRECT_OPS = st.sampled_from([0, 1, 0, 1, 2, 3, 5, 6, 255])
OPS = st.sampled_from(KNOWN_OPS * 4 + (4, 7, 128, 255))
DISCARD_COUNTS = st.one_of(st.just(0), SECTORS)
SIZES = st.one_of(st.sampled_from([0, 1, 8, 1 << 21, U64 - 1]), SECTORS)
MAX_INDIRECT = st.one_of(st.integers(0, 4096),
                         st.sampled_from([0, 1, 32, 511, 512, 513, 4095, 4096, 4097]))
FLAG_SETS = st.one_of(st.just(ALL_FEATURES), st.integers(0, 15))


def segment_list(draw: st.DrawFn, length: int) -> list[tuple[int, int]]:
    """`length` segments: one valid shape repeated, and maybe one arbitrary one somewhere."""
    segs = [draw(VALID_SEGMENTS)] * length
    if length and draw(st.booleans()):
        segs[draw(INDEXES) % length] = draw(ANY_SEGMENTS)
    return segs


def start_sector(draw: st.DrawFn, dev: Dev, count: int) -> int:
    """Anywhere, or around where `count` sectors would end at the end of `dev`."""
    if draw(st.booleans()):
        return draw(SECTORS)
    return (dev.size - count + draw(NEAR_END)) % U64


@st.composite
def cases(draw: st.DrawFn) -> tuple[Req, Dev]:
    dev = Dev(draw(SIZES), draw(MAX_INDIRECT), draw(FLAG_SETS))
    op = draw(OPS)
    if op == P.OP_DISCARD:
        count = draw(DISCARD_COUNTS)
        return discard(start_sector(draw, dev, count), count), dev
    if op == P.OP_INDIRECT:
        nseg = draw(INDIRECT_SEGMENT_COUNTS)
        segs = segment_list(draw, min(nseg, P.MAX_INDIRECT_SEGMENTS))
        count = sum(last - first + 1 for first, last in segs)
        return indirect(nseg, draw(INDIRECT_OPS), start_sector(draw, dev, count), segs), dev
    nseg = draw(RW_SEGMENT_COUNTS)
    segs = segment_list(draw, P.MAX_SEGMENTS_PER_REQUEST)
    count = sum(last - first + 1 for first, last in segs[:nseg])
    return rw(op, nseg, start_sector(draw, dev, count), segs=segs), dev


@settings(max_examples=3000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_matches_reference(lib: ctypes.CDLL, case: tuple[Req, Dev]) -> None:
    req, dev = case
    rc, info = validate(lib, req, dev)
    assert rc == reference(req, dev)
    assert info.id == req.id
