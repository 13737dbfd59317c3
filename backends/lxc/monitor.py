"""The processes that keep an lxc container: the liblxc monitor (a forked child that runs
liblxc's start()), and, for a detached container, ctr's monitor above it.

Detached (`start`): ctr forks twice (the first child exits at once, so the
second is orphaned and outlives ctr) into "ctr's monitor", the analogue of
conmon. It forks the liblxc monitor with pipes (or, with -t, a pty) as its
stdio and keeps their other ends: stdout and stderr go to the Docker
json-file log apart, and nobody but the monitor holds them. liblxc's
daemonize=True was not taken: its daemon keeps no exit status (error_num
lives in a process nobody can ask) and sends PID 1's output to /dev/null or,
with a console log, to one merged stream. ctr's monitor reports to `ctr
start` once PID 1 has exec'd (its /proc/PID/exe or name is no longer the
monitor's), or the start error, and records the exit when the liblxc monitor
ends. Killed with -9, it takes the liblxc monitor with it (its death signal
is SIGKILL here), and liblxc's own death signal on PID 1 ends the container,
unless PID 1 runs as another user: the kernel clears a death signal on a uid
change, as for the native backend's PID 1; `ps` then says it runs, which it
does, and `rm -f` kills it.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ctr.backends.kept.signals import FORWARDED_SIGNALS
from ctr.backends.lxc.cgroups import find_init, leave_cgroups
from ctr.backends.lxc.console import UndoOnlcr
from ctr.backends.lxc.start import RESULT_FILE, start_container, write_result

MONITOR_COMM = "[lxc monitor]"  # the liblxc monitor's name, and PID 1's until it execs


def liblxc_monitor(
    parent: int,
    name: str,
    lxcpath: Path,
    config: list[tuple[str, str]],
    args: tuple[str, ...],
    rundir: Path,
    stdin: bool,
    master: int | None,
    slave: int | None,
    death_signal: int,
    orphaned: Callable[[dict], None],
) -> None:
    """The liblxc monitor process; never returns. `death_signal` comes when `parent` dies:
    SIGTERM (liblxc passes it on to PID 1) under a foreground ctr, SIGKILL under ctr's
    own monitor, so that killing that one ends the container as on the native backend.
    What start_container reports goes to `parent` (RESULT_FILE in `rundir`) or, when
    `parent` is gone and nobody else will clean up, to `orphaned(report)`."""
    try:
        for sig in (*FORWARDED_SIGNALS, signal.SIGCHLD, signal.SIGWINCH):
            signal.signal(sig, signal.SIG_DFL)  # ctr's handlers and wakeup fd are not ours
        signal.set_wakeup_fd(-1)
        # What liblxc calls its monitor when it daemonizes; our cmdline stays ctr's (with the name).
        Path("/proc/self/comm").write_text(MONITOR_COMM)
        from ctr.native import syscalls as sc

        sc.prctl(sc.PR_SET_PDEATHSIG, death_signal)
        if os.getppid() != parent:
            os._exit(1)
        os.setsid()  # ctr forwards signals itself; terminal signals must not come twice
        if slave is not None:
            import fcntl
            import termios

            os.close(master)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # liblxc relays the console to /dev/tty
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)
        elif not stdin:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        result = start_container(name, lxcpath, config, args)
    except BaseException as exc:  # report, never unwind into ctr's code in this process
        result = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        if os.getppid() == parent:
            write_result(rundir / RESULT_FILE, result)
        else:  # ctr is gone: nobody else will clean up
            leave_cgroups()
            orphaned(result)
    finally:
        os._exit(0)


@dataclass
class KeeperStdio:
    """The liblxc monitor's stdio under ctr's monitor: pipes or, with -t, a pty. ctr's
    monitor keeps `ours` and `outputs` (fd -> "stdout"/"stderr"); `theirs` become the
    liblxc monitor's fds 0-2."""

    outputs: dict[int, str]
    ours: list[int]
    theirs: list[int | None]
    master: int | None = None
    slave: int | None = None
    slave_path: str | None = None

    @classmethod
    def open(cls, terminal: bool, stdin: bool) -> KeeperStdio:
        import tty as stdlib_tty

        if terminal:
            master, slave = os.openpty()
            stdlib_tty.setraw(slave)
            return cls({master: "stdout"}, [], [None, None, None], master, slave, os.ttyname(slave))
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdio = cls({out_r: "stdout", err_r: "stderr"}, [out_r, err_r], [None, out_w, err_w])
        if stdin:  # -d -i: stdin stays open (never written), as Docker keeps it for an attach
            in_r, in_w = os.pipe()
            stdio.ours.append(in_w)
            stdio.theirs[0] = in_r
        return stdio

    def take_child_side(self, report_w: int) -> None:
        """In the liblxc monitor: let go of ctr's monitor's fds, make `theirs` fds 0-2."""
        os.close(report_w)
        for fd in self.ours:
            os.close(fd)
        for target, fd in enumerate(self.theirs):
            if fd is not None:
                os.dup2(fd, target)
                os.close(fd)

    def close_child_side(self) -> None:
        """In ctr's monitor, once the liblxc monitor has its copies."""
        for fd in [*self.theirs, self.slave]:
            if fd is not None:
                os.close(fd)


def _exe_id(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _has_exec(pid: int, monitor_exe: tuple[int, int] | None) -> bool:
    """Whether `pid`, a clone of the liblxc monitor, has exec'd: execve replaces its binary
    (first) and its name; either tells, the name also when the command is the same file."""
    exe = _exe_id(pid)
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().rstrip("\n")
    except OSError:
        return False
    return (exe is not None and exe != monitor_exe) or comm != MONITOR_COMM


def await_exec(cid: str, lxc_pid: int, lxc_fd: int) -> int | None:
    """PID 1 once it has exec'd the command, or None when the liblxc monitor ended first.

    Until the exec, PID 1 is a clone of the liblxc monitor, with its binary and name; a
    command that cannot be exec'd never gets that far (start() then fails). Polled, briefly:
    liblxc tells nobody else when it has exec'd.
    """
    monitor_exe = _exe_id(lxc_pid)
    while not select.select([lxc_fd], [], [], 0.01)[0]:
        pid = find_init(cid)
        if pid is not None and _has_exec(pid, monitor_exe):
            return pid
    return None


def keep_logs(lxc_fd: int | None, outputs: dict[int, str], log_path: Path, onlcr: bool | None) -> None:
    """Copy each fd in `outputs` (fd -> "stdout"/"stderr") to the json-file log until the
    liblxc monitor (the last holder of the container's stdio besides PID 1's own processes)
    has ended and everything written before is in the log. Sleeps in the kernel throughout.
    `onlcr`: None for pipes, else whether liblxc's relay adds "\\r" (see UndoOnlcr)."""
    from ctr.state import logs

    sel = selectors.DefaultSelector()
    if lxc_fd is not None:
        sel.register(lxc_fd, selectors.EVENT_READ)
    undo = {fd: UndoOnlcr(onlcr) for fd in outputs} if onlcr is not None else {}
    for fd in outputs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def copy(fd: int) -> bool | None:
        """True: copied a chunk; None: nothing to read now; False: no writer is left."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a terminal whose every slave fd is closed
                raise
            data = b""
        if not data:
            return False
        if fd in undo:
            data = undo[fd](data)
        if data:
            os.write(log, logs.encode(outputs[fd], data))
        return True

    open_fds = set(outputs)
    try:
        ended = lxc_fd is None
        while not ended:
            for key, _ in sel.select():
                if key.fd == lxc_fd:
                    ended = True
                elif key.fd in open_fds and copy(key.fd) is False:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
        for fd in open_fds:  # what was written just before the end
            while copy(fd) is True:
                pass
        for fd, u in undo.items():
            rest = u.flush()
            if rest:
                os.write(log, logs.encode(outputs[fd], rest))
    finally:
        sel.close()
        os.close(log)
        for fd in outputs:
            os.close(fd)
