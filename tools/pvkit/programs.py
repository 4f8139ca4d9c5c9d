"""Guest programs pvkit builds from C source: static binaries the guests run from /pvkit/bin.

A scenario names them (`programs = ["pvudp"]`, sources in tools/pvkit/guest/<name>.c); the
bench builds pvbench the same way. Each binary is cached by the hash of its source and
committed by rename, so a failed compile leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from pvkit.build import ERROR_LINE
from pvkit.errors import PvkitError
from pvkit.paths import PACKAGE_DIR, cache_subdir

GUEST_DIR = PACKAGE_DIR / "guest"
CFLAGS = ["-O2", "-static", "-Wall", "-Wextra"]


def source(name: str, directory: Path = GUEST_DIR) -> Path:
    path = directory / f"{name}.c"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.c"))) or "none"
        raise PvkitError(f"no guest program '{name}' ({path} is missing); known: {known}")
    return path


def compile_static(src: Path) -> Path:
    """`src` compiled statically (cached by the hash of its source and flags)."""
    digest = hashlib.sha256(src.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out = cache_subdir("programs") / f"{src.stem}-{digest}"
    if out.exists():
        return out
    # a private temporary name: two runs compiling at once must not share one
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(fd)
    tmp = Path(name)
    try:
        proc = subprocess.run(["gcc", *CFLAGS, "-o", str(tmp), str(src)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            first = next((line for line in proc.stderr.splitlines() if ERROR_LINE.match(line)),
                         proc.stderr.strip()[:300])
            raise PvkitError(f"cannot compile {src}: {first}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def payload(names: list[str], directory: Path = GUEST_DIR) -> dict[str, bytes]:
    """Payload files for both guests: bin/<name> for every program named."""
    return {f"bin/{name}": compile_static(source(name, directory)).read_bytes()
            for name in names}
