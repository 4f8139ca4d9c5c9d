"""patches: series parsing, atomic apply and rollback, idempotence, revert, git trees."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from pvkit import patches, source
from pvkit.errors import PvkitError

P1 = """From: pvkit <pvkit@example.invalid>
Subject: [PATCH 1/3] first

---
 a.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/a.c b/a.c
--- a/a.c
+++ b/a.c
@@ -1,3 +1,3 @@
 int a;
-int b;
+int b2;
 int c;
"""
P2_BAD = """From: pvkit <pvkit@example.invalid>
Subject: [PATCH 2/3] second

diff --git a/sub/b.c b/sub/b.c
--- a/sub/b.c
+++ b/sub/b.c
@@ -1,3 +1,3 @@
 int x;
-int NOT_THERE;
+int y2;
 int z;
"""
P2_GOOD = P2_BAD.replace("-int NOT_THERE;", "-int y;")
P3 = """From: pvkit <pvkit@example.invalid>
Subject: [PATCH 3/3] third adds a file

diff --git a/new.c b/new.c
new file mode 100644
--- /dev/null
+++ b/new.c
@@ -0,0 +1 @@
+int created;
"""


def make_tree(tmp_path: Path) -> source.Source:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    (tree / "Kconfig").write_text("")
    (tree / "a.c").write_text("int a;\nint b;\nint c;\n")
    (tree / "sub/b.c").write_text("int x;\nint y;\nint z;\n")
    return source.from_tree(tree)


def make_series(tmp_path: Path, second: str) -> Path:
    d = tmp_path / "kernel-patches"
    d.mkdir(exist_ok=True)
    (d / "0001-first.patch").write_text(P1)
    (d / "0002-second.patch").write_text(second)
    (d / "0003-third.patch").write_text(P3)
    (d / "series").write_text("# the series\n0001-first.patch\n0002-second.patch -p1\n"
                              "\n0003-third.patch  # adds new.c\n")
    return d


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_series_parsing(tmp_path: Path) -> None:
    entries = patches.read_series(make_series(tmp_path, P2_GOOD))
    assert [(e.name, e.strip, e.line) for e in entries] == [
        ("0001-first.patch", 1, 2), ("0002-second.patch", 1, 3), ("0003-third.patch", 1, 5)]
    (tmp_path / "kernel-patches/series").write_text("0001-first.patch -R\n")
    with pytest.raises(PvkitError, match=r"series:1: unknown option '-R'"):
        patches.read_series(tmp_path / "kernel-patches")
    (tmp_path / "kernel-patches/series").write_text("\n0009-missing.patch\n")
    with pytest.raises(PvkitError, match=r"series:2: no patch file .*0009-missing.patch"):
        patches.read_series(tmp_path / "kernel-patches")


def test_failing_second_patch_leaves_tree_identical(tmp_path: Path, isolated_cache: Path
                                                    ) -> None:
    src = make_tree(tmp_path)
    before = digest(src.root)
    with pytest.raises(PvkitError) as exc:
        patches.apply(src, make_series(tmp_path, P2_BAD))
    assert str(exc.value) == ("patch 0002-second.patch: hunk #1 of sub/b.c failed (at line 1); "
                              "the tree is unchanged")
    assert digest(src.root) == before


def test_apply_is_idempotent_and_reverts(tmp_path: Path, isolated_cache: Path) -> None:
    src = make_tree(tmp_path)
    before = digest(src.root)
    series = make_series(tmp_path, P2_GOOD)
    assert patches.apply(src, series) == "applied 3 patches"
    assert (src.root / "a.c").read_text() == "int a;\nint b2;\nint c;\n"
    assert (src.root / "new.c").read_text() == "int created;\n"
    fp = source.fingerprint(src)
    assert patches.apply(src, series) == "already applied"
    assert source.fingerprint(src) == fp
    assert patches.check(src, series)[0]["status"] == "applied"
    assert patches.revert(src) == "reverted 3 patches"
    assert digest(src.root) == before


def test_change_applied_outside_pvkit_is_named(tmp_path: Path, isolated_cache: Path) -> None:
    src = make_tree(tmp_path)
    (src.root / "a.c").write_text("int a;\nint b2;\nint c;\n")
    before = digest(src.root)
    with pytest.raises(PvkitError, match=r"patch 0001-first.patch: a.c already has this "
                       r"change"):
        patches.apply(src, make_series(tmp_path, P2_GOOD))
    assert digest(src.root) == before


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), "-c", "user.name=t", "-c",
                           "user.email=t@t", *args], check=True, capture_output=True,
                          text=True).stdout


def test_git_tree_keeps_uncommitted_changes(tmp_path: Path, isolated_cache: Path) -> None:
    src = make_tree(tmp_path)
    git(src.root, "init", "-q")
    git(src.root, "add", ".")
    git(src.root, "commit", "-qm", "base")
    base = git(src.root, "rev-parse", "HEAD").strip()
    (src.root / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n# mine\n")
    series = make_series(tmp_path, P2_BAD)
    with pytest.raises(PvkitError, match=r"git am failed at .*second"):
        patches.apply(src, series)
    assert git(src.root, "rev-parse", "HEAD").strip() == base
    assert "# mine" in (src.root / "Makefile").read_text()
    series = make_series(tmp_path, P2_GOOD)
    assert patches.apply(src, series) == "applied 3 patches with git am"
    assert len(git(src.root, "log", "--oneline").splitlines()) == 4
    assert "# mine" in (src.root / "Makefile").read_text()
    assert patches.apply(src, series) == "already applied"
    patches.revert(src)
    assert git(src.root, "rev-parse", "HEAD").strip() == base
    assert "# mine" in (src.root / "Makefile").read_text()


def test_git_tree_dirty_touched_file_refused(tmp_path: Path, isolated_cache: Path) -> None:
    src = make_tree(tmp_path)
    git(src.root, "init", "-q")
    git(src.root, "add", ".")
    git(src.root, "commit", "-qm", "base")
    (src.root / "a.c").write_text("int a;\nint b;\nint c;\nint mine;\n")
    with pytest.raises(PvkitError, match=r"uncommitted changes in a.c, which the series"):
        patches.apply(src, make_series(tmp_path, P2_GOOD))
    assert "int mine;" in (src.root / "a.c").read_text()


def make_paravirt_tree(tmp_path: Path, data_dir: Path) -> source.Source:
    """A tiny tree with just the files the pvstat generator reads and patches."""
    tree = tmp_path / "pvtree"
    for d in ("arch/x86/include/asm", "arch/x86/kernel"):
        (tree / d).mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 5\nPATCHLEVEL = 10\nSUBLEVEL = 0\n")
    (tree / "Kconfig").write_text("")
    (tree / "arch/x86/include/asm/paravirt_types.h").write_text(
        (data_dir / "pvstat/paravirt_types-5.10-layout.h").read_text())
    (tree / "arch/x86/Kconfig").write_text(
        "config PARAVIRT\n\tbool \"pv\"\n\nconfig PARAVIRT_DEBUG\n\tbool \"debug\"\n")
    (tree / "arch/x86/kernel/Makefile").write_text(
        "obj-y += setup.o\nobj-$(CONFIG_PARAVIRT)\t\t+= paravirt.o\nobj-y += tsc.o\n")
    (tree / "arch/x86/kernel/alternative.c").write_text(
        "#include <linux/init.h>\n#include <asm/paravirt.h>\n\nvoid __init "
        "alternative_instructions(void)\n{\n\tparavirt_set_cap();\n\tapply_paravirt(a, b);\n}\n")
    return source.from_tree(tree)


def test_template_series_renders_against_pristine_tree(tmp_path: Path, data_dir: Path,
                                                        isolated_cache: Path) -> None:
    src = make_paravirt_tree(tmp_path, data_dir)
    before = digest(src.root)
    series = tmp_path / "series-dir"
    series.mkdir()
    repo = Path(__file__).resolve().parents[1] / "kernel-patches"
    (series / "0001-pvstat.patch.j2").write_text((repo / "0001-pvstat.patch.j2").read_text())
    (series / "series").write_text("0001-pvstat.patch.j2\n")
    first = patches.materialize(src, series)[0].text
    assert "Linux\n5.10.0 (op groups: init, time, cpu, irq, mmu, lock)" in first
    assert "  cpu.iret: jumped to from entry assembly" in first
    assert patches.apply(src, series) == "applied 1 patches"
    assert "\tpvstat_install();\n\tparavirt_set_cap();" in (
        src.root / "arch/x86/kernel/alternative.c").read_text()
    assert (src.root / "arch/x86/kernel/pvstat.c").exists()
    assert "obj-$(CONFIG_PVSTAT)" in (src.root / "arch/x86/kernel/Makefile").read_text()
    # rendered again against the patched tree, the template gives the same text: a no-op
    assert patches.materialize(src, series)[0].text == first
    assert patches.apply(src, series) == "already applied"
    patches.revert(src)
    assert digest(src.root) == before


# ---- interruption, refusals, identity -------------------------------------------------------

KILL_AFTER_FIRST_COPY = """
import os, shutil, signal, sys
from pathlib import Path
from pvkit import patches, source
copies = []
real = shutil.copy2
def copy2(a, b, **kw):
    out = real(a, b, **kw)
    if str(b).startswith(sys.argv[1]):  # a write into the tree (not a backup)
        copies.append(b)
        os.kill(os.getpid(), signal.SIGKILL)
    return out
shutil.copy2 = copy2
patches.apply(source.from_tree(Path(sys.argv[1])), Path(sys.argv[2]))
"""


def test_apply_killed_midway_is_detected_and_restored(tmp_path: Path,
                                                      isolated_cache: Path) -> None:
    """SIGKILL after the first file of the series was written into the tree: the next check
    says half-applied, the next apply restores the tree and applies the whole series."""
    import os
    import signal
    import sys

    src = make_tree(tmp_path)
    before = digest(src.root)
    series = make_series(tmp_path, P2_GOOD)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_COPY, str(src.root),
                           str(series)], env={**os.environ, "PYTHONPATH": str(
                               Path(__file__).resolve().parents[1] / "tools")})
    assert proc.returncode == -signal.SIGKILL
    assert digest(src.root) != before  # half-applied: one file written, the rest not
    assert patches.state_of(src) == "half-applied"
    assert patches.check(src, series)[0]["status"].startswith("fails: half-applied")
    assert {r["status"] for r in patches.status(src, series)} == {"half-applied"}
    assert patches.apply(src, series) == "applied 3 patches"
    assert (src.root / "a.c").read_text() == "int a;\nint b2;\nint c;\n"
    assert (src.root / "new.c").read_text() == "int created;\n"
    patches.revert(src)
    assert digest(src.root) == before


def test_interrupt_while_writing_restores_at_once(tmp_path: Path, isolated_cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path)
    before = digest(src.root)
    real = patches.shutil.copy2
    writes = []

    def copy2(a: Path, b: Path) -> object:
        if str(b).startswith(str(src.root)) and not writes:
            writes.append(b)
            real(a, b)
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(patches.shutil, "copy2", copy2)
    with pytest.raises(KeyboardInterrupt):
        patches.apply(src, make_series(tmp_path, P2_GOOD))
    assert writes and digest(src.root) == before
    assert patches.state_of(src) == "none"


def test_revert_with_missing_backups_refuses(tmp_path: Path, isolated_cache: Path) -> None:
    src = make_tree(tmp_path)
    series = make_series(tmp_path, P2_GOOD)
    patches.apply(src, series)
    applied = digest(src.root)
    state = patches._state(src)
    assert state is not None
    (Path(state["backup"]) / "sub/b.c").unlink()
    with pytest.raises(PvkitError, match=r"the backup of sub/b.c \(and 0 more\) is missing .* "
                       r"cannot be restored; restore those files yourself"):
        patches.revert(src)
    assert digest(src.root) == applied  # nothing was touched
    assert patches.state_of(src) == "applied"


def git_tree(tmp_path: Path) -> source.Source:
    src = make_tree(tmp_path)
    git(src.root, "init", "-q")
    git(src.root, "add", ".")
    git(src.root, "commit", "-qm", "base")
    return src


def test_git_revert_refuses_to_drop_user_commits(tmp_path: Path, isolated_cache: Path) -> None:
    src = git_tree(tmp_path)
    base = git(src.root, "rev-parse", "HEAD").strip()
    series = make_series(tmp_path, P2_GOOD)
    patches.apply(src, series)
    (src.root / "mine.c").write_text("int mine;\n")
    git(src.root, "add", "mine.c")
    git(src.root, "commit", "-qm", "my work")
    head = git(src.root, "rev-parse", "HEAD").strip()
    with pytest.raises(PvkitError, match=r"1 commit\(s\) of yours sit on top of the pvkit "
                       r"series; revert would drop them, so nothing was changed") as exc:
        patches.revert(src)
    assert git(src.root, "rev-parse", "HEAD").strip() == head
    # the command the message gives does what it says: the series goes, the commit stays
    command = str(exc.value).split("`")[1]
    subprocess.run(command, shell=True, check=True, capture_output=True)
    log = git(src.root, "log", "--format=%s").splitlines()
    assert log == ["my work", "base"]
    assert git(src.root, "rev-parse", "HEAD~1").strip() == base
    with pytest.raises(PvkitError, match="no longer in the history of HEAD"):
        patches.revert(src)
    assert patches.state_of(src) == "none"


def test_git_am_without_identity(tmp_path: Path, isolated_cache: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with no git identity: git am would stop ("Please tell me who you are")."""
    src = git_tree(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "none"))
    assert subprocess.run(["git", "-C", str(src.root), "config", "user.email"],
                          capture_output=True).returncode != 0
    assert patches.apply(src, make_series(tmp_path, P2_GOOD)) == \
        "applied 3 patches with git am"
    assert git(src.root, "log", "-1", "--format=%an <%ae>").strip() == \
        "pvkit <pvkit@example.invalid>"


def test_git_apply_killed_midway_is_recovered(tmp_path: Path, isolated_cache: Path) -> None:
    """git am killed after the first patch: the record says incomplete, HEAD carries one of
    the series' commits; the next apply resets to the base and applies the whole series."""
    import json

    src = git_tree(tmp_path)
    base = git(src.root, "rev-parse", "HEAD").strip()
    series = make_series(tmp_path, P2_GOOD)
    found = patches.materialize(src, series)
    git(src.root, "am", str(series / "0001-first.patch"))
    state = {"id": patches.series_id(found), "patches": [p.name for p in found],
             "subjects": [patches.subject(p.text) for p in found], "git_base": base,
             "complete": False}
    (src.root / ".git/pvkit-series").write_text(json.dumps(state))
    assert patches.check(src, series)[0]["status"].startswith("fails: half-applied")
    assert patches.apply(src, series) == "applied 3 patches with git am"
    assert git(src.root, "log", "--format=%s").splitlines() == [
        "third adds a file", "second", "first", "base"]


def test_find_never_applies_the_series(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       isolated_cache: Path) -> None:
    """A lookup (inspect, images, boot, drivers) must not change the source tree."""
    import dataclasses

    from pvkit import build

    src = dataclasses.replace(make_tree(tmp_path), managed=True)
    monkeypatch.setattr(build.source_mod, "resolve", lambda tree=None: src)
    series = make_series(tmp_path, P2_GOOD)
    read = patches.read_series
    monkeypatch.setattr(build.patches, "read_series", lambda directory=None: read(series))
    monkeypatch.setattr(build.patches, "apply", lambda *a, **k: pytest.fail("find applied"))
    monkeypatch.setattr(build.patches, "revert", lambda *a, **k: pytest.fail("find reverted"))
    before = digest(src.root)
    with pytest.raises(PvkitError, match=r"no up-to-date domU kernel build: the patch series "
                       r"in kernel-patches/ is not the one the source carries; run `pvkit "
                       r"build --profile domU`"):
        build.find("domU")
    assert digest(src.root) == before
