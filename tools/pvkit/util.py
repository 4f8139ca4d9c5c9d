"""Small shared helpers: hashing, atomic writes, running commands."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pvkit.errors import PvkitError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk_stats(top: Path, skip: frozenset[str] = frozenset({".git"})
               ) -> Iterator[tuple[str, str, os.stat_result]]:
    """(directory, file name, lstat) of every file under `top`, in sorted order, leaving out
    directories named in `skip` and files that vanish while the walk runs."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            yield dirpath, name, st


def sha256_text(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise PvkitError(f"{path}: corrupt JSON ({exc}); delete it and re-run") from exc


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed temporary directory into place (the commit step of a cache entry)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""



@contextlib.contextmanager
def flocked(path: Path, *, exclusive: bool = True,
            on_wait: Callable[[], None] | None = None) -> Iterator[int]:
    """Hold an flock on `path` (created if missing) for the block; yields the descriptor, which
    a child may inherit to keep the lock held as long as it lives. `on_wait` is called once if
    another process holds the lock and this one has to wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


NOISY = 0.05  # a spread (max-min)/median above this is flagged


def summarize(values: list[float]) -> dict[str, Any]:
    """Repeats of one measurement: median, range and spread ((max-min)/median)."""
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med if med else 0.0
    return {"values": values, "median": med, "min": min(values), "max": max(values),
            "spread": round(spread, 4), "noisy": spread > NOISY}
