"""Start the container's first process: namespaces, root, identity, exec.

The parent forks the child straight into a new pid namespace (unshare of
CLONE_NEWPID affects only children, and setns() back to our own pid namespace
undoes it for us), so the container's PID 1 is our direct child: waitpid gives
its real exit status, and no subreaper or intermediate process is needed.

The child blocks on a pipe until the parent has put it into its cgroup, then
unshares the remaining namespaces (cgroup last-but-after the move, so the
container sees its own cgroup as the root), builds its root and execs.
Failures before exec travel back on a close-on-exec pipe as
"<exit code>:<message>", the technique of Python's own subprocess.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import socket
import termios
import traceback
from dataclasses import dataclass

from ctr.errors import CommandNotExecutable, CommandNotFound, CtrError

from . import caps, net, rootfs
from . import syscalls as sc
from .users import resolve_user


@dataclass(frozen=True)
class ProcessPlan:
    """Everything the child needs, decided by the parent before fork."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    hostname: str
    caps_mask: int
    rootfs: rootfs.RootfsPlan
    host_network: bool
    tty: bool
    stdin: bool
    winsize: bytes | None = None  # struct winsize of ctr's terminal, set before exec to avoid a race
    die_with_parent: bool = True


class Started:
    """A running container process as seen by the parent."""

    def __init__(self, pid: int, master_fd: int | None) -> None:
        self.pid = pid
        self.master_fd = master_fd


def spawn(plan: ProcessPlan, join_cgroup) -> Started:
    """Fork the container's PID 1; `join_cgroup(pid)` runs in the parent before the child goes on."""
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    tty_parent, tty_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if plan.tty else (None, None)

    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.unshare(sc.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:  # the container's PID 1
            os.close(go_w)
            os.close(err_r)
            if tty_parent:
                tty_parent.close()
            _child(plan, go_r, err_w, tty_child)  # never returns
        sc.setns(own_pidns, sc.CLONE_NEWPID)
    finally:
        os.close(own_pidns)

    os.close(go_r)
    os.close(err_w)
    if tty_child:
        tty_child.close()
    try:
        join_cgroup(pid)
        os.write(go_w, b"1")
        os.close(go_w)
        master_fd = None
        if tty_parent:
            master_fd = _receive_fd(tty_parent)
        _check_exec(err_r)
    except BaseException:
        _reap(pid)
        raise
    finally:
        os.close(err_r)
        if tty_parent:
            tty_parent.close()
    return Started(pid, master_fd)


def _receive_fd(sock: socket.socket) -> int | None:
    msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    return fds[0] if fds else None


def _check_exec(err_r: int) -> None:
    """EOF means exec succeeded; otherwise the child reported why it could not start."""
    data = b""
    while chunk := os.read(err_r, 65536):
        data += chunk
    if not data:
        return
    code, _, message = data.decode(errors="replace").partition(":")
    error = {"127": CommandNotFound, "126": CommandNotExecutable}.get(code, CtrError)
    raise error(message)


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class _StartError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _child(plan: ProcessPlan, go_r: int, err_w: int, tty_sock: socket.socket | None) -> None:
    code = 125
    try:
        try:
            _setup_and_exec(plan, go_r, tty_sock)
        except _StartError as exc:
            code, message = exc.code, str(exc)
        except CtrError as exc:
            code, message = exc.exit_code, str(exc)
        except OSError as exc:
            message = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
        except BaseException as exc:  # report, never unwind into the parent's code
            message = f"{type(exc).__name__}: {exc} " + traceback.format_exc().replace("\n", " | ")
        os.write(err_w, f"{code}:{message}".encode())
    finally:
        os._exit(code)


def _setup_and_exec(plan: ProcessPlan, go_r: int, tty_sock: socket.socket | None) -> None:
    if plan.die_with_parent:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Wait until the parent has moved us into our cgroup; EOF means the parent died.
    if os.read(go_r, 1) != b"1":
        raise _StartError(125, "parent went away before start")
    os.close(go_r)

    flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP
    if not plan.host_network:
        flags |= sc.CLONE_NEWNET
    sc.unshare(flags)
    sc.sethostname(plan.hostname)
    if not plan.host_network:
        net.loopback_up()

    rootfs.build(plan.rootfs, plan.host_network)
    _setup_stdio(plan, tty_sock)

    user = resolve_user(plan.user, "/etc")
    env = list(plan.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    try:
        os.makedirs(plan.cwd, exist_ok=True)
    except OSError as exc:
        raise _StartError(125, f"cannot create working directory {plan.cwd}: {exc.strerror}") from None
    executable = _find_executable(plan.args[0], env)

    # Identity last: bounding set needs CAP_SETPCAP, setuid needs CAP_SETUID.
    caps.drop_bounding_set(plan.caps_mask)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    caps.apply(plan.caps_mask, user.uid)
    caps.set_no_new_privs()
    try:
        os.chdir(plan.cwd)
    except OSError as exc:
        raise _StartError(125, f"cannot enter working directory {plan.cwd}: {exc.strerror}") from None
    _exec(executable, plan.args, env)


def _setup_stdio(plan: ProcessPlan, tty_sock: socket.socket | None) -> None:
    if plan.tty:
        # A pty from the container's own devpts, so `tty` prints /dev/pts/0.
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        _unlockpt(master)
        slave_name = os.ptsname(master) if hasattr(os, "ptsname") else _ptsname(master)
        slave = os.open(slave_name, os.O_RDWR)
        socket.send_fds(tty_sock, [b"m"], [master])
        os.close(master)
        tty_sock.close()
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        if plan.winsize:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, plan.winsize)
        for fd in (0, 1, 2):  # without -i the parent simply never writes to the terminal
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
    elif not plan.stdin:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)


TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


def _unlockpt(fd: int) -> None:
    fcntl.ioctl(fd, TIOCSPTLCK, array.array("i", [0]))


def _ptsname(fd: int) -> str:
    buf = array.array("I", [0])
    fcntl.ioctl(fd, TIOCGPTN, buf)
    return f"/dev/pts/{buf[0]}"


def _find_executable(name: str, env: list[str]) -> str:
    """PATH lookup in the container's root, with Docker's messages and exit codes."""
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if "/" in name:
        if os.path.isdir(name):
            raise _StartError(126, f'exec "{name}": is a directory')
        if os.path.exists(name):
            raise _StartError(126, f'exec "{name}": permission denied')
        raise _StartError(127, f'exec "{name}": no such file or directory')
    if any(os.path.exists(c) for c in candidates):
        raise _StartError(126, f'exec "{name}": permission denied')
    raise _StartError(127, f'exec "{name}": executable file not found in $PATH')


def _exec(executable: str, args: tuple[str, ...], env: list[str]) -> None:
    # Python ignores these; ignored signals survive exec, and the container must not inherit that.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        os.execve(executable, list(args), dict(e.split("=", 1) for e in env))
    except OSError as exc:
        code = 127 if exc.errno == 2 else 126
        raise _StartError(code, f'exec "{args[0]}": {exc.strerror.lower()}') from None
