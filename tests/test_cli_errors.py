"""Bad input on the command line: one line on stderr, status 2, never a traceback.

Each row is a command, how to prepare its input in a temporary directory, and what the one
line must say. The commands run in-process through `cli.main`, as the console script does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pvkit import cli

BINARY = b"\x7fELF\x02\x01\x01\x00\xff\xfe\xfa" + bytes(range(256))


def _file(name: str, content: bytes | str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)

    return make


def _pvstat_tree_without_hook(tmp: Path) -> str:
    """A tree with paravirt_types.h but no alternative.c (which pvstat hooks)."""
    tree = tmp / "tree"
    header = tree / "arch/x86/include/asm/paravirt_types.h"
    header.parent.mkdir(parents=True)
    fixture = Path(__file__).parent / "data" / "pvstat" / "paravirt_types-5.10-layout.h"
    header.write_text(fixture.read_text())
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    (tree / "Kconfig").write_text("")
    return str(tree)


def _kconfig_tree(tmp: Path) -> str:
    return str(Path(__file__).parent / "data" / "kconfig-tree")


def _linux_like_tree(tmp: Path) -> str:
    tree = tmp / "tree"
    (tree / "drivers/block").mkdir(parents=True)
    (tree / "drivers/block/Kconfig").write_text("menuconfig BLK_DEV\n\tbool\n\nif BLK_DEV\n"
                                                "endif # BLK_DEV\n")
    (tree / "drivers/block/Makefile").write_text("obj-y += null_blk/\n")
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    (tree / "Kconfig").write_text("")
    return str(tree)


def _scenario(text: str) -> Callable[[Path], str]:
    return _file("bad.toml", text)


# (id, argv template, {placeholder: maker}, message regex)
CASES: list[tuple[str, list[str], dict[str, Callable[[Path], str]], str]] = [
    ("compare-binary", ["bench", "--compare", "{a}", "{a}"], {"a": _file("r.json", BINARY)},
     r"r\.json: not a pvkit bench or lifecycle results\.json \(not UTF-8 text\)"),
    ("compare-json-number", ["bench", "--compare", "{a}", "{a}"], {"a": _file("r.json", "5")},
     r"r\.json: not a pvkit bench or lifecycle results\.json \(no 'workloads' table\)"),
    ("compare-workloads-number", ["bench", "--compare", "{a}", "{a}"],
     {"a": _file("r.json", json.dumps({"workloads": 5}))},
     r"not a pvkit bench or lifecycle results\.json \(no 'workloads' table\)"),
    ("compare-bad-workload", ["bench", "--compare", "{a}", "{a}"],
     {"a": _file("r.json", json.dumps({"workloads": {"x": {"places": {"dom0": {}}}}}))},
     r"workload 'x' has no places with a median and a spread"),
    ("compare-missing", ["bench", "--compare", "{tmp}/nope.json", "{tmp}/nope.json"], {},
     r"nope\.json: no such file; give a bench \(or lifecycle scenario\) results directory"),
    ("compare-not-json", ["bench", "--compare", "{a}", "{a}"],
     {"a": _file("r.json", "{not json")},
     r"not a pvkit bench or lifecycle results\.json \(not JSON"),
    ("config-binary-fragment", ["config", "--tree", "{tree}", "--profile", "domU",
                                "--fragment", "{f}"],
     {"tree": _kconfig_tree, "f": _file("f.config", BINARY)},
     r"fragment .*f\.config: not a text file"),
    ("build-base-not-a-config", ["build", "--tree", "{tree}", "--profile", "domU", "--base",
                                 "{b}"],
     {"tree": _kconfig_tree, "b": _file("notes.txt", "just some notes\n")},
     r"--base .*notes\.txt: no CONFIG_ lines, so not a kernel \.config"),
    ("build-base-binary", ["build", "--tree", "{tree}", "--profile", "domU", "--base", "{b}"],
     {"tree": _kconfig_tree, "b": _file("b.bin", BINARY)},
     r"--base .*b\.bin: not a text file"),
    ("patch-check-no-alternative", ["patch", "check", "--tree", "{tree}"],
     {"tree": _pvstat_tree_without_hook},
     r"tree: no arch/x86/kernel/alternative\.c, which the pvstat patch reads or changes"),
    ("scenario-allow-int", ["boot", "--scenario", "{s}"], {"s": _scenario("allow = [1]\n")},
     r"bad\.toml:1: 'allow' must be an array of strings; element 1 is 1"),
    ("scenario-test-int", ["run", "--scenario", "{s}"], {"s": _scenario("test = [1]\n")},
     r"bad\.toml:1: 'test' must be an array of tables; element 1 is 1"),
    ("scenario-unknown", ["run", "--scenario", "smok"], {},
     r"no scenario 'smok': did you mean 'smoke'\?"),
    ("intree-patch-unwritable", ["drivers", "pvblk", "--tree", "{tree}", "--intree-patch",
                                 "{f}/p.patch"],
     {"tree": _linux_like_tree, "f": _file("a-file", "x")},
     r"--intree-patch .*a-file/p\.patch: cannot write it \(File exists: .*a-file\)"),
    ("inspect-missing", ["inspect", "{tmp}/vmlinux"], {}, r"vmlinux: no such file"),
    ("inspect-diff-missing", ["inspect", "/bin/ls", "--diff", "{tmp}/old"], {},
     r"old: no such file"),
    ("tree-missing", ["source", "--tree", "{tmp}/linux"], {}, r"--tree .*linux: no such "
     r"directory"),
    ("tree-not-linux", ["source", "--tree", "{tmp}"], {}, r"not a Linux kernel tree"),
]


@pytest.mark.parametrize(("argv", "inputs", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(argv: list[str], inputs: dict[str, Callable[[Path], str]],
                               message: str, tmp_path: Path, isolated_cache: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    values = {"tmp": str(tmp_path), **{k: make(tmp_path) for k, make in inputs.items()}}
    rc = cli.main([a.format(**values) for a in argv])
    captured = capsys.readouterr()
    assert rc == 2, captured
    assert "Traceback" not in captured.err
    assert captured.err.startswith("pvkit: error: ") and captured.err.count("\n") == 1, \
        captured.err
    assert re.search(message, captured.err), captured.err
