"""Progress lines for long work, on stderr so stdout stays parseable."""

from __future__ import annotations

import sys
import time

_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def step(message: str) -> None:
    """A line saying what pvkit is doing now."""
    if not _QUIET:
        print(f"pvkit: {message}", file=sys.stderr, flush=True)


def notice(message: str) -> None:
    """A one-line notice that is always shown."""
    print(f"pvkit: note: {message}", file=sys.stderr, flush=True)


class Ticker:
    """Rate-limited updates for loops that produce many events (e.g. compile lines)."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False
