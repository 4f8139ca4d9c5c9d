"""Ships pvkit's data with the package: a non-editable install (`pip install .`) finds the
scenarios (qemu-tests/), the patch series (kernel-patches/) and the driver sources (drivers/)
under pvkit/_data/, where pvkit.paths looks when it does not run from a checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_DIRS = ("qemu-tests", "kernel-patches", "drivers")
DATA_SUFFIXES = (".toml", ".patch", ".j2", ".c", ".h")
DATA_NAMES = ("series", "Kbuild")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        here = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "pvkit" / "_data"
        shutil.rmtree(dest, ignore_errors=True)
        for top in DATA_DIRS:
            for path in sorted((here / top).rglob("*")):
                if path.is_file() and (path.suffix in DATA_SUFFIXES or path.name in DATA_NAMES):
                    target = dest / path.relative_to(here)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)


setup(cmdclass={"build_py": BuildWithData})
