"""One build step that pyproject.toml cannot declare: compiling ctr-monitor.

pyproject.toml holds the project's configuration; this file only adds commands.
native/ctr-monitor.c (the native backend's per-container monitor, see its header)
is compiled with the C compiler (`cc`, or $CC; $CFLAGS and $LDFLAGS are honoured)
into the package, as ctr/native/ctr-monitor:

- `pip install .`: into the build tree, from which the wheel is made; the wheel is
  tagged for this platform, since it holds a binary.
- `pip install -e .`: in place, as native/ctr-monitor, the path ctr.native maps to.

Without a working compiler the install still succeeds, with a warning: ctr then
keeps detached containers with its Python monitor loop (`ctr backends` says which).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.dist import Distribution

SOURCE = "native/ctr-monitor.c"
PACKAGE = "ctr.native"  # where the binary goes: beside ctr/native/monitor.py
BINARY = "ctr-monitor"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra"]


class BuildMonitor(Command):
    """Compile native/ctr-monitor.c into the package (a build sub-command)."""

    command_name = "build_monitor"  # for its messages ("warning: build_monitor: ...")
    description = "compile the C monitor native/ctr-monitor.c"
    user_options = [("force", "f", "compile even if the binary is newer than its source")]
    boolean_options = ["force"]

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.force: bool | None = None
        self.editable_mode = False  # set by setuptools for `pip install -e`

    def finalize_options(self) -> None:
        self.set_undefined_options("build", ("build_lib", "build_lib"), ("force", "force"))

    def _target(self) -> Path:
        if self.editable_mode:
            build_py = self.get_finalized_command("build_py")
            return Path(build_py.get_package_dir(PACKAGE)) / BINARY
        return Path(self.build_lib, *PACKAGE.split(".")) / BINARY

    def run(self) -> None:
        target = self._target()
        if not self.force and target.exists() and target.stat().st_mtime >= Path(SOURCE).stat().st_mtime:
            return
        cc = shlex.split(os.environ.get("CC", "cc"))
        if not cc or shutil.which(cc[0]) is None:
            self.warn(
                f"no C compiler ({cc[0] if cc else '$CC is empty'}): {BINARY} not built, "
                "ctr will keep detached containers with its Python monitor"
            )
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Compile beside the target and rename: a running ctr-monitor keeps the old file
        # (writing over a running binary fails with ETXTBSY), and no half-written file remains.
        tmp = target.with_name(f".{BINARY}.tmp")
        args = [
            *cc,
            *CFLAGS,
            *shlex.split(os.environ.get("CFLAGS", "")),
            "-o",
            str(tmp),
            SOURCE,
            *shlex.split(os.environ.get("LDFLAGS", "")),
        ]
        self.announce(" ".join(shlex.quote(a) for a in args), level=2)
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            self.warn(
                f"{BINARY} not built, ctr will use its Python monitor: {' '.join(args)} failed:\n"
                f"{result.stderr.strip()}"
            )
            return
        if result.stderr.strip():
            self.warn(result.stderr.strip())  # compiler warnings: -Wall -Wextra should find none
        os.replace(tmp, target)

    def get_source_files(self) -> list[str]:
        return [SOURCE]  # so that the sdist carries it

    def get_outputs(self) -> list[str]:
        return [] if self.editable_mode else [str(self._target())]

    def get_output_mapping(self) -> dict[str, str]:
        return {}  # editable: the binary is built where the package's files already are


class Build(build):
    sub_commands = [*build.sub_commands, ("build_monitor", None)]


class BinaryDistribution(Distribution):
    """The wheel holds a compiled program: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build": Build, "build_monitor": BuildMonitor}, distclass=BinaryDistribution)
