"""The CLI for real: every verb's argument plumbing through the console script, --tree on a
plain and a git tree (the real paravirt_ops series rendered from real 6.1 files), inspect
--diff between the two real kernels, and a build's reproducer re-run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import linux_tree

from pvkit import build

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parents[1]
# the files the pvstat template reads and patches, plus what makes a directory a kernel tree
PVSTAT_FILES = ("Makefile", "Kconfig", "arch/x86/include/asm/paravirt_types.h",
                "arch/x86/kernel/alternative.c", "arch/x86/Kconfig", "arch/x86/kernel/Makefile")


def pvkit(*args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pvkit", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ,
                                                    "PYTHONPATH": str(ROOT / "tools")})
    if ok:
        assert proc.returncode == 0, f"pvkit {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def kernels() -> dict[str, build.Build]:
    return {p: build.build(p) for p in ("domU", "dom0")}


def user_tree(tmp_path: Path) -> Path:
    """A user's copy of the files of linux-source-6.1 that the series touches."""
    src = linux_tree()
    tree = tmp_path / "linux"
    for rel in PVSTAT_FILES:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, tree / rel)
    return tree


def snapshot(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*"))
            if p.is_file() and ".git" not in p.parts}


def test_tree_plain_apply_and_revert(tmp_path: Path) -> None:
    tree = user_tree(tmp_path)
    before = snapshot(tree)
    assert "applies: 0001-pvstat.patch" in pvkit("patch", "check", "--tree", str(tree)).stdout
    assert pvkit("patch", "apply", "--tree", str(tree)).stdout.strip() == "applied 1 patches"
    assert "pvstat_install();" in (tree / "arch/x86/kernel/alternative.c").read_text()
    assert (tree / "arch/x86/kernel/pvstat.c").is_file()
    listed = json.loads(pvkit("patch", "list", "--tree", str(tree), "--json").stdout)
    assert listed == [{"patch": "0001-pvstat.patch", "kind": "template", "status": "applied"}]
    assert "already applied" in pvkit("patch", "apply", "--tree", str(tree)).stdout
    assert pvkit("patch", "revert", "--tree", str(tree)).stdout.strip() == "reverted 1 patches"
    assert snapshot(tree) == before


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), "-c", "user.name=dev", "-c",
                           "user.email=dev@example.invalid", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_tree_git_apply_and_revert(tmp_path: Path) -> None:
    tree = user_tree(tmp_path)
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-qm", "linux 6.1")
    base = git(tree, "rev-parse", "HEAD")
    out = pvkit("patch", "apply", "--tree", str(tree)).stdout
    assert out.strip() == "applied 1 patches with git am"
    assert git(tree, "log", "-1", "--format=%s") == \
        "x86/paravirt: add pvstat, counting wrappers for pv_ops"
    assert git(tree, "status", "--porcelain") == ""
    # a commit of the developer's on top: revert refuses rather than drop it
    (tree / "README").write_text("mine\n")
    git(tree, "add", "README")
    git(tree, "commit", "-qm", "my change")
    refused = pvkit("patch", "revert", "--tree", str(tree), ok=False)
    assert refused.returncode == 2 and "1 commit(s) of yours" in refused.stderr
    git(tree, "reset", "-q", "--hard", "HEAD~1")
    assert pvkit("patch", "revert", "--tree", str(tree)).stdout.strip() == "reverted 1 patches"
    assert git(tree, "rev-parse", "HEAD") == base


def test_inspect_diff_between_the_kernels(kernels: dict[str, build.Build]) -> None:
    out = pvkit("inspect", "--profile", "dom0", "--diff", str(kernels["domU"].vmlinux),
                "--json").stdout
    diff = json.loads(out)
    assert (diff["old"], diff["new"]) == (str(kernels["domU"].vmlinux),
                                          str(kernels["dom0"].vmlinux))
    # dom0 has ext4, the bridge and virtio built in: symbols the domU kernel lacks
    assert diff["added"] > 100 and diff["total_delta"] > 0
    assert any(r["name"].startswith("ext4_") and r["old"] == 0 for r in diff["symbols"])
    human = pvkit("inspect", "--profile", "dom0", "--diff", str(kernels["domU"].vmlinux)).stdout
    assert human.startswith(f"add/remove: {diff['added']}/{diff['removed']} ")
    assert f"Total: Before={diff['old_total']}, After={diff['new_total']}" in human


def test_reproducer_reruns_the_build(kernels: dict[str, build.Build]) -> None:
    """metadata.json's reproducer is a runnable shell script (here: a no-op make)."""
    b = kernels["domU"]
    script = b.dir / "reproducer.sh"
    assert script.read_text() == b.metadata["reproducer"]
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "  CC " not in proc.stdout  # nothing to recompile: the same command as pvkit's
    assert isinstance(b.metadata["inputs"]["series"], dict)
    assert b.metadata["inputs"]["series"]["patches"] == ["0001-pvstat.patch"]


def test_every_verb_through_the_console_script(kernels: dict[str, build.Build],
                                               tmp_path: Path) -> None:
    doctor = json.loads(pvkit("doctor", "--json", ok=False).stdout)
    assert {"patch", "qemu-system-x86_64", "ccache"} <= {c["name"] for c in doctor}
    src = json.loads(pvkit("source", "--json").stdout)
    assert src["version"].startswith("6.1.")
    pvkit("config", "--profile", "dom0", "-o", str(tmp_path / "dom0.config"))
    assert "CONFIG_XEN_DOM0=y" in (tmp_path / "dom0.config").read_text()
    # a fragment that repeats a profile value: the same build, found by every verb
    frag = tmp_path / "same.config"
    frag.write_text("CONFIG_XEN=y\n")
    built = json.loads(pvkit("build", "--profile", "domU", "--fragment", str(frag),
                             "--json").stdout)
    assert built["domU"]["dir"] == str(kernels["domU"].dir)
    found = json.loads(pvkit("inspect", "--profile", "domU", "--fragment", str(frag),
                             "--json").stdout)
    assert found["parainstructions"] > 1000
    ko = next(kernels["dom0"].modroot.rglob("xen-blkback.ko"))
    assert "vermagic" in pvkit("inspect", "--profile", "dom0", str(ko)).stdout
    images = json.loads(pvkit("images", "--json").stdout)
    assert Path(images["dom0_image"]).is_file() and Path(images["xen"]).is_file()
    rows = json.loads(pvkit("drivers", "pvblk", "--json").stdout)
    assert {r["profile"] for r in rows} == {"dom0", "domU"}
    assert json.loads(pvkit("patch", "list", "--json").stdout)[0]["status"] == "applied"
    out = tmp_path / "runs"
    result = json.loads(pvkit("boot", "--scenario", "native", "--out", str(out),
                              "--json").stdout)
    assert result[0]["status"] == "PASS" and result[0]["dir"] == str(out / "native")
    assert (out / "native" / "junit.xml").is_file()
