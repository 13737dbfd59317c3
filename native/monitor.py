"""The per-container monitor's loop: keep the logs, wait for PID 1, report how it ended.

A detached container needs someone to be its parent: the monitor (the analogue
of conmon or LXC's monitor). It owns the read ends of the container's stdout
and stderr (or its terminal), appends them to the log in Docker's json-file
format, and waits for the container through a pidfd, so it sleeps in the
kernel until there is output or an exit; it never polls.

The loop exists twice: ctr-monitor (ctr-monitor.c beside this file, compiled at
install time) is what a monitor normally becomes, by exec, so that no Python
interpreter stays resident for the container's life; `run` below is the same
loop in Python, for an install that had no C compiler.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ctr.native import syscalls as sc

CHUNK = 65536
BINARY = Path(__file__).with_name("ctr-monitor")


def binary() -> str | None:
    """The compiled ctr-monitor, or None when the install could not build it."""
    return str(BINARY) if os.access(BINARY, os.X_OK) else None


def describe() -> str:
    """Which monitor detached containers get, for `ctr backends`."""
    return "ctr-monitor" if binary() else "python (ctr-monitor not built)"


def exec_binary(
    path: str,
    pid: int,
    outputs: dict[int, str],
    log_path: str,
    tty: bool,
    finisher: list[str],
    report_fd: int | None = None,
) -> None:
    """Become ctr-monitor: the same pid, so PID 1 stays our child, and the same loop as `run`.

    Once PID 1 has exited, ctr-monitor execs `finisher` with `--exit-code N` appended.
    Returns only if the exec failed (OSError), leaving the caller to run the Python loop.
    """
    args = [path, "--pid", str(pid), "--log", log_path]
    if report_fd is not None:  # ctr-monitor tells `ctr start` "ok" once it is the keeper
        os.set_inheritable(report_fd, True)
        args += ["--report", str(report_fd)]
    for fd, stream in outputs.items():
        os.set_inheritable(fd, True)  # Python's fds are close-on-exec
        args += ["--tty" if tty else f"--{stream}", str(fd)]
    os.execv(path, [*args, "--", *finisher])


def run(pid: int, outputs: dict[int, str], log_path: str) -> int:
    """Copy each fd in `outputs` (fd -> "stdout"/"stderr") to the log until PID 1 exits.

    Returns Docker's exit code, leaving PID 1 a zombie for the caller to reap once its
    end is recorded (as ctr-monitor does).
    """
    import selectors

    from ctr.state.logs import encode

    pidfd = sc.pidfd_open(pid)
    sel = selectors.DefaultSelector()
    sel.register(pidfd, selectors.EVENT_READ)
    for fd in outputs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    open_fds = set(outputs)
    try:
        exited = False
        while not exited:
            for key, _ in sel.select():
                if key.fd == pidfd:
                    exited = True
                    continue
                if not _copy(key.fd, outputs[key.fd], log, encode):
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
        for fd in open_fds:  # what was written just before the exit
            while _copy(fd, outputs[fd], log, encode) is True:
                pass
        return exit_code(os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT))
    finally:
        sel.close()
        os.close(pidfd)
        os.close(log)
        for fd in outputs:
            os.close(fd)


def exit_code(info) -> int:
    """Docker's exit code from waitid's result: the process's own, or 128+N for signal N."""
    if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return 128 + info.si_status
    return info.si_status & 0xFF


def _copy(fd: int, stream: str, log: int, encode) -> bool | None:
    """True: copied a chunk; None: nothing to read now; False: the writer side is gone."""
    try:
        data = os.read(fd, CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:  # a terminal whose every slave fd is closed
            return False
        raise
    if not data:
        return False
    os.write(log, encode(stream, data))
    return True
