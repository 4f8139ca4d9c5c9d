from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "console"
sys.path.insert(0, str(ROOT / "tools"))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PVKIT_CACHE", str(cache))
    return cache


def write_profile_tree(root: Path) -> Path:
    """A fake kernel tree whose Kconfig declares every symbol pvkit's profiles set (no
    dependencies), so profile + user fragments resolve in a second, without a real tree."""
    import re

    from pvkit.paths import PROFILES_DIR

    symbols: dict[str, str] = {}
    for frag in sorted(PROFILES_DIR.glob("*.config")):
        for line in frag.read_text().splitlines():
            if m := re.match(r"^(?:# )?CONFIG_(\w+)[= ](.*)$", line):
                value = m.group(2)
                kind = "string" if value.startswith('"') else (
                    "tristate" if value == "m" else "bool")
                if symbols.get(m.group(1)) != "tristate":
                    symbols[m.group(1)] = kind
    symbols["SYSTEM_TRUSTED_KEYS"] = "string"
    body = ['mainmenu "Fake $(KERNELVERSION)"']
    for name, kind in sorted(symbols.items()):
        body.append(f'config {name}\n\t{kind} "{name}"' + ("\n\tmodules" if name == "MODULES"
                                                          else ""))
    root.mkdir(parents=True, exist_ok=True)
    (root / "Kconfig").write_text("\n\n".join(body) + "\n")
    (root / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n"
                                   "EXTRAVERSION = -fake\n")
    return root


@pytest.fixture
def profile_tree(tmp_path: Path) -> Path:
    return write_profile_tree(tmp_path / "profile-tree")


def linux_tree() -> Path:
    """The real linux-source-6.1 tree: downloaded and extracted into the cache if it is not
    there yet (tests that need it are `real`: they never skip for lack of it)."""
    from pvkit import source

    return source.from_debian().root


def fake_qemu(tmp_path: Path, lines: list[str], tail: str = "") -> Any:
    """A stand-in QEMU: prints the lines of a recorded console, then runs `tail`."""
    body = tmp_path / "console.txt"
    body.write_text("".join(f"{line}\n" for line in lines))
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!/bin/sh\ncat {body}\n{tail}\n")
    script.chmod(0o755)
    from pvkit import qemu

    return qemu.Command([str(script), "-accel", "tcg"])


def golden(name: str) -> list[str]:
    """The console lines of a golden log, without their timestamps."""
    from pvkit.console import parse_timestamped

    return [line for _, line in parse_timestamped((GOLDEN / name).read_text())]
