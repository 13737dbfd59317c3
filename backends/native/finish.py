"""The last step of a detached native container's monitor, once PID 1 has exited.

ctr-monitor (native/ctr-monitor.c) is C so that it costs little while the container
runs; recording the end is ctr's own business (records, locks, cgroups), so it
execs this module with the exit code appended, in the same process, which `ctr
stop` and `ctr wait` are waiting on:

    python -P -m ctr.backends.native.finish --data DIR --run DIR --name NAME --cgroup CGROUP --pid PID --exit-code N

PID 1 is still our child, a zombie until _finish has recorded its end and reaps it.

The work itself is NativeBackend._finish, which the Python monitor loop calls directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctr.state.paths import Paths

MODULE = "ctr.backends.native.finish"  # __name__ is "__main__" when run with -m


def command(paths: Paths, name: str, cgroup: str, pid: int) -> list[str]:
    """The finisher's argv, without the --exit-code that ctr-monitor appends."""
    # -P: the monitor's cwd is /, which must not come first on sys.path
    return [sys.executable, "-P", "-m", MODULE, "--data", str(paths.data), "--run", str(paths.run),
            "--name", name, "--cgroup", cgroup, "--pid", str(pid)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="ctr's data root (paths.data)")
    parser.add_argument("--run", required=True, type=Path, help="ctr's runtime root (paths.run)")
    parser.add_argument("--name", required=True, help="the container")
    parser.add_argument("--cgroup", required=True, help="the container's cgroup name")
    parser.add_argument("--pid", required=True, type=int, help="the container's PID 1, our unreaped child")
    parser.add_argument("--exit-code", required=True, type=int, help="Docker's exit code of PID 1")
    args = parser.parse_args(argv)

    from ctr.backends.native.backend import NativeBackend

    NativeBackend(Paths(data=args.data, run=args.run))._finish(args.name, args.cgroup, args.exit_code, args.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
