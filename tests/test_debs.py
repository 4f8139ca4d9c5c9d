"""Debian package lookups: apt's candidate versions are remembered while apt's state holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvkit import debs
from pvkit.errors import PvkitError


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> Path:
    """An apt-cache that answers from a file and logs every call; apt's state is one file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    answers = tmp_path / "answers"
    answers.write_text("busybox-static 1:1.35.0-4+b3\n")
    calls = tmp_path / "calls"
    script = bindir / "apt-cache"
    script.write_text(f"""#!/bin/sh
echo "$2" >> {calls}
v=$(awk -v n="$2" '$1 == n {{ print $2 }}' {answers})
echo "$2:"
echo "  Candidate: ${{v:-(none)}}"
""")
    script.chmod(0o755)
    (bindir / "apt-get").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    state = tmp_path / "lists"
    state.write_text("1")
    monkeypatch.setattr(debs, "APT_STATE", (state,))
    monkeypatch.setattr(debs, "_apt_updated", True)
    return tmp_path


def calls(fake_apt: Path) -> list[str]:
    return (fake_apt / "calls").read_text().split()


def test_candidate_is_remembered_while_apt_state_holds(fake_apt: Path) -> None:
    assert debs.candidate_version("busybox-static") == "1:1.35.0-4+b3"
    (fake_apt / "answers").write_text("busybox-static 9.9\n")  # apt would now say otherwise
    assert debs.candidate_version("busybox-static") == "1:1.35.0-4+b3"
    assert calls(fake_apt) == ["busybox-static"]  # the second answer came from the memo


def test_candidate_is_asked_again_when_apt_state_changes(fake_apt: Path) -> None:
    debs.candidate_version("busybox-static")
    (fake_apt / "answers").write_text("busybox-static 9.9\n")
    (fake_apt / "lists").write_text("22")  # an apt-get update happened
    assert debs.candidate_version("busybox-static") == "9.9"
    assert calls(fake_apt) == ["busybox-static", "busybox-static"]


def test_unknown_package_is_named_and_not_remembered(fake_apt: Path) -> None:
    for _ in range(2):
        with pytest.raises(PvkitError, match="'no-such-pkg' not found by apt"):
            debs.candidate_version("no-such-pkg")
    assert calls(fake_apt).count("no-such-pkg") == 4  # asked, and asked after the update


def test_corrupt_memo_is_ignored(fake_apt: Path, isolated_cache: Path) -> None:
    isolated_cache.mkdir(parents=True, exist_ok=True)
    (isolated_cache / "apt-candidates.json").write_text("{not json")
    assert debs.candidate_version("busybox-static") == "1:1.35.0-4+b3"
