"""The per-container monitor's loop: keep the logs, wait for PID 1, report how it ended.

A detached container needs someone to be its parent: the monitor (the analogue
of conmon or LXC's monitor). It owns the read ends of the container's stdout
and stderr (or its terminal), appends them to the log in Docker's json-file
format, and waits for the container through a pidfd, so it sleeps in the
kernel until there is output or an exit; it never polls.
"""

from __future__ import annotations

import errno
import os
import selectors

from . import syscalls as sc

CHUNK = 65536


def run(pid: int, outputs: dict[int, str], log_path: str) -> int:
    """Copy each fd in `outputs` (fd -> "stdout"/"stderr") to the log until PID 1 exits.

    Returns the raw waitpid status.
    """
    from ctr.backends.logs import encode

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
        _, status = os.waitpid(pid, 0)
        return status
    finally:
        sel.close()
        os.close(pidfd)
        os.close(log)
        for fd in outputs:
            os.close(fd)


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
