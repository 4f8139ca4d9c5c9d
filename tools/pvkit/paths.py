"""Where pvkit keeps things: the repository and the cache."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = PACKAGE_DIR / "profiles"
GUEST_DIR = PACKAGE_DIR / "guest"


def _data_root() -> Path:
    """Where the scenarios, the patch series and the driver sources are: the checkout this
    package runs from (an editable install), else the copy a wheel ships in pvkit/_data."""
    checkout = PACKAGE_DIR.parents[1]
    if all((checkout / d).is_dir() for d in ("qemu-tests", "kernel-patches", "drivers")):
        return checkout
    return PACKAGE_DIR / "_data"


REPO_ROOT = _data_root()
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


def require(directory: Path, what: str) -> Path:
    """`directory` of pvkit's shipped data, or an error saying the data is not installed."""
    if not directory.is_dir():
        from pvkit.errors import PvkitError

        raise PvkitError(f"{what} not found at {directory}: pvkit's data is not installed; "
                         "reinstall pvkit from its checkout (`pip install .` ships it, or "
                         "`pip install -e .`)")
    return directory
