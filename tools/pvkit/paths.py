"""Where pvkit keeps things: the repository and the cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = PACKAGE_DIR / "profiles"
GUEST_DIR = PACKAGE_DIR / "guest"
SCENARIOS_DIR = REPO_ROOT / "qemu-tests"
PATCHES_DIR = REPO_ROOT / "kernel-patches"
DRIVERS_DIR = REPO_ROOT / "drivers"


def cache_dir() -> Path:
    """The cache root: $PVKIT_CACHE, else ~/.cache/pvkit."""
    env = os.environ.get("PVKIT_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "pvkit"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def cache_subdir(*parts: str) -> Path:
    path = cache_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
