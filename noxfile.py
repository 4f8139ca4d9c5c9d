"""nox sessions: lint, tests (unit + the real pipeline), build, boot, main.

Every session installs pvkit into its virtualenv and, where it needs host tools, runs
`pvkit setup` first (apt-get as root), so each works on a fresh machine.
"""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

SCENARIOS = ["smoke", "upstream-blk", "upstream-net", "native", "pvblk", "pvblk-vbd",
             "pvblk-restore"]


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "tools", "tests", "ci", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and the real pipeline (kernel builds, Xen boots); `-- -m "not real"` for
    the fast part only."""
    _install(session, "test", "plot")
    session.run("pvkit", "setup")
    session.run("pytest", "-ra", *(session.posargs or ["tests"]))


@nox.session
def build(session: nox.Session) -> None:
    _install(session)
    session.run("pvkit", "setup")
    session.run("pvkit", "build", "--profile", "domU", "--profile", "dom0")
    session.run("pvkit", "inspect", "--profile", "dom0")


@nox.session
def boot(session: nox.Session) -> None:
    _install(session)
    session.run("pvkit", "setup")
    args = session.posargs or [a for s in SCENARIOS for a in ("--scenario", s)]
    session.run("pvkit", "run", *args)


@nox.session
def main(session: nox.Session) -> None:
    """The main job: build the kernels, boot Xen + dom0 + domU through every scenario, then
    measure paravirtualization overhead (native vs dom0 vs PV domU) and pvblk against the
    upstream block drivers, and print the reports."""
    _install(session, "plot")
    session.run("pvkit", "setup")
    session.run("pvkit", "run")
    session.run("pvkit", "bench", *session.posargs)
    session.run("pvkit", "blkbench")
