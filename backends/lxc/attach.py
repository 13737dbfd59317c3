"""exec: liblxc's attach (namespaces, and the container's cgroup through its
monitor) runs a payload of ctr's in the container, which takes the user,
capabilities, environment and working directory exactly as the native
backend's exec does, then execs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ctr.backends.kept.signals import FORWARDED_SIGNALS
from ctr.backends.lxc.log import log_errors
from ctr.errors import CtrError


def attach(container, name: str, identity, log_file: Path) -> tuple[int, int | None]:
    """Start identity's process in the container; returns its pid (a child of ours) and,
    with a terminal, the pty master. Errors before the exec come back as CtrError, 126, 127."""
    import socket

    import lxc

    from ctr.native import process as native_process
    from ctr.native import syscalls as sc

    err_r, err_w = os.pipe2(os.O_CLOEXEC)  # closed by the exec: EOF means it ran
    tty_parent, tty_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if identity.tty else (None, None)

    def payload(_arg) -> int:
        # In the container's namespaces, root and cgroup, as root with every capability
        # still: the rest is the native runtime's own (become), so that exec is the same.
        # Everything used here is imported already: the host's modules are out of reach now.
        code = 125
        try:
            try:
                for sig in FORWARDED_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)  # ctr's forwarding handlers are not ours
                os.close(err_r)
                if tty_parent is not None:
                    tty_parent.close()
                sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)  # as the native exec: gone with ctr
                native_process.become(identity, tty_child)
            except native_process.StartError as exc:
                code, message = exc.code, str(exc)
            except CtrError as exc:
                code, message = exc.exit_code, str(exc)
            except OSError as exc:
                message = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
            except BaseException as exc:
                message = f"{type(exc).__name__}: {exc}"
            os.write(err_w, f"{code}:{message}".encode())
        finally:
            os._exit(code)

    try:
        # No DROP_CAPABILITIES, no uid from liblxc: become drops the bounding set and
        # switches user itself, after resolving -u in the container's /etc.
        pid = container.attach(
            payload, None, attach_flags=lxc.LXC_ATTACH_MOVE_TO_CGROUP, uid=0, gid=0, env_policy=lxc.LXC_ATTACH_CLEAR_ENV
        )
    except BaseException:
        for fd in (err_r, err_w):
            os.close(fd)
        for sock in (tty_parent, tty_child):
            if sock is not None:
                sock.close()
        raise
    os.close(err_w)
    if tty_child is not None:
        tty_child.close()
    master = None
    try:
        if pid < 0:
            reasons = log_errors(str(log_file))
            raise CtrError(
                f"cannot exec in container {name}: liblxc could not attach to it"
                + (f": {reasons[-1]}" if reasons else "")
            )
        try:
            master = native_process.receive_fd(tty_parent) if tty_parent is not None else None
            native_process.check_exec(err_r)
        except BaseException:
            if master is not None:
                os.close(master)
            native_process.reap(pid)
            raise
    finally:
        os.close(err_r)
        if tty_parent is not None:
            tty_parent.close()
    return pid, master
