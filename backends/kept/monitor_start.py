"""Starting a detached container under a monitor that outlives ctr (native and lxc).

ctr forks twice so that the monitor is orphaned at once (nobody's zombie, whatever
long-running process called the Python API) and waits on a pipe for the monitor's
report: "ok" once the container runs, or "CODE:message" when it could not start.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable

from ctr.errors import CommandNotExecutable, CommandNotFound, CtrError


def fork_clean() -> int:
    """os.fork() for a child that closes the fds it inherited (a monitor, liblxc's close_fds).

    Garbage collected in such a child later (an old file object) would close whatever new
    fd reuses its number: the child freezes everything it inherited, so the cyclic GC never
    finalizes any of it. (No gc.collect() first: it would only tidy what the freeze keeps
    away anyway, at 5-10 ms a fork.)"""
    pid = os.fork()
    if pid == 0:
        gc.freeze()
    return pid


def let_go_of_caller(report_w: int) -> None:
    """A monitor's first step: deaf to the terminal's SIGINT and SIGHUP, stdio on /dev/null,
    every fd it inherited closed but `report_w`."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # let go of ctr's terminal and pipes
        os.dup2(null, fd)
    os.close(null)
    close_fds_except(report_w)  # whoever started ctr must not wait on our copies of its fds


def close_fds_except(*keep: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own fd


def start_under_monitor(name: str, lock_fd: int, monitor: Callable[[int], None]) -> None:
    """Run `monitor(report_fd)` in an orphaned, session-leading process; raise what it reports.

    `monitor` must write its report to report_fd and never return. `lock_fd` (the
    container's lock, held by the caller) is closed in the monitor: a process that
    kept it would hold the lock for the container's whole life."""
    report_r, report_w = os.pipe()
    pid = fork_clean()
    if pid == 0:
        try:
            os.close(report_r)
            os.close(lock_fd)
            os.setsid()
            if os.fork() == 0:
                monitor(report_w)
        finally:
            os._exit(0)
    os.close(report_w)
    os.waitpid(pid, 0)
    with os.fdopen(report_r, "rb") as f:
        report = f.read().decode(errors="replace")
    if report != "ok":
        code, _, message = report.partition(":")
        error = {"127": CommandNotFound, "126": CommandNotExecutable}.get(code, CtrError)
        raise error(message or f"the monitor of container {name} died before it started")
