"""The last step of a detached native container's monitor, once PID 1 has exited.

ctr-monitor (native/ctr-monitor.c) is C so that it costs little while the container
runs; recording the end is ctr's own business (records, locks, cgroups), so it
execs this module with the exit code appended, in the same process, which `ctr
stop` and `ctr wait` are waiting on:

    python -P -m ctr.backends.native.finish --data DIR --run DIR --name NAME --cgroup CGROUP --pid PID --exit-code N

PID 1 is still our child, a zombie until record_end has recorded its end and reaps it.

The work itself is record_end, which the Python monitor loop calls directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from ctr.errors import NotFound
from ctr.state.paths import Paths
from ctr.state.records import RecordStore

MODULE = "ctr.backends.native.finish"  # __name__ is "__main__" when run with -m


def command(paths: Paths, name: str, cgroup: str, pid: int) -> list[str]:
    """The finisher's argv, without the --exit-code that ctr-monitor appends."""
    # -P: the monitor's cwd is /, which must not come first on sys.path
    return [
        sys.executable,
        "-P",
        "-m",
        MODULE,
        "--data",
        str(paths.data),
        "--run",
        str(paths.run),
        "--name",
        name,
        "--cgroup",
        cgroup,
        "--pid",
        str(pid),
    ]


def record_end(records: RecordStore, driver, name: str, cgroup_name: str, code: int, pid: int) -> None:
    """PID 1 (`pid`) has exited with `code`: record that and any OOM kill, remove the cgroup
    and runtime dir (with --rm the container too), then reap PID 1, a zombie until now so
    that its pid could not be reused meanwhile. The monitor's last step, in its own
    process, whichever loop it ran (ctr-monitor gets here through main below); `driver`: the cgroup driver.

    All under the lock, and only while the record is still this monitor's: a `start` that
    got in first has made a new run, with the same cgroup name and runtime dir."""
    try:
        with records.lock(name):
            try:
                record = records.load(name)
            except NotFound:
                record = None
            if record is not None and record.cgroup != cgroup_name:
                record = None  # removed meanwhile (rm -f) and the name taken by a new container
            if record is not None and record.extra.get("monitor_pid") != os.getpid():
                return  # restarted meanwhile: the new run owns the cgroup and the runtime dir
            try:
                cgroup = driver.open(cgroup_name)
            except NotFound:  # already removed by `rm -f`, which gave up waiting for us
                oom = False
            else:
                oom = cgroup.oom_killed()
                cgroup.destroy()
            if record is None:
                return
            record.status, record.exit_code, record.finished, record.oom_killed, record.pid = (
                "exited",
                code,
                time.time(),
                oom,
                None,
            )
            shutil.rmtree(records.paths.runtime / name, ignore_errors=True)
            if record.spec.get("auto_remove"):
                records.remove(name)
            else:
                records.save(record)
    finally:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="ctr's data root (paths.data)")
    parser.add_argument("--run", required=True, type=Path, help="ctr's runtime root (paths.run)")
    parser.add_argument("--name", required=True, help="the container")
    parser.add_argument("--cgroup", required=True, help="the container's cgroup name")
    parser.add_argument("--pid", required=True, type=int, help="the container's PID 1, our unreaped child")
    parser.add_argument("--exit-code", required=True, type=int, help="Docker's exit code of PID 1")
    args = parser.parse_args(argv)

    from ctr.native.cgroups.driver import cgroup_driver

    record_end(
        RecordStore(Paths(data=args.data, run=args.run)),
        cgroup_driver(),
        args.name,
        args.cgroup,
        args.exit_code,
        args.pid,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
