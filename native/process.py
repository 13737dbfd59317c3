"""Start a container's first process, or enter a running container (exec).

The parent forks the child straight into the right pid namespace: unshare(CLONE_NEWPID)
(new container) or setns() into the container's (exec) changes only where our
*children* go, and a setns() back to our own pid namespace undoes it. So the child
is our direct child: waitpid gives its real exit status, no subreaper needed.

The child blocks on a pipe until the parent has put it into the cgroup, then makes
or joins the remaining namespaces (cgroup after the move, so the container sees its
own cgroup as the root), builds or enters the root, takes its identity and execs.
Failures before exec travel back on a close-on-exec pipe as "<exit code>:<message>",
the technique of Python's own subprocess.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import termios
from dataclasses import dataclass

from ctr.errors import CommandNotExecutable, CommandNotFound, CtrError
from ctr.native import caps, net, rootfs
from ctr.native import syscalls as sc
from ctr.native.users import resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Entered last: mnt changes what later paths mean; pid only affects children (the parent handles it).
ENTER_ORDER = (
    ("cgroup", sc.CLONE_NEWCGROUP),
    ("ipc", sc.CLONE_NEWIPC),
    ("uts", sc.CLONE_NEWUTS),
    ("net", sc.CLONE_NEWNET),
    ("mnt", sc.CLONE_NEWNS),
)


@dataclass(frozen=True)
class Identity:
    """Who the process is and what it runs; the same for a container's PID 1 and an exec."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    caps_mask: int
    tty: bool
    stdin: bool
    winsize: bytes | None = None  # struct winsize of ctr's terminal, set before exec to avoid a race
    seccomp: bytes | None = None  # the compiled filter (ctr.native.seccomp), None: unconfined
    no_new_privs: bool = True
    group_add: tuple[str, ...] = ()  # --group-add, resolved in the container's /etc/group


@dataclass(frozen=True)
class ProcessPlan:
    """A new container: its namespaces and root, then its first process."""

    identity: Identity
    hostname: str
    rootfs: rootfs.RootfsPlan
    host_network: bool
    die_with_parent: bool = True


@dataclass(frozen=True)
class ExecPlan:
    """A process entering the namespaces and root of the running container `target_pid`."""

    identity: Identity
    target_pid: int


class Started:
    """A process we started, as the parent sees it."""

    def __init__(self, pid: int, master_fd: int | None) -> None:
        self.pid = pid
        self.master_fd = master_fd


Stdio = tuple[int | None, int | None, int | None]


def spawn(plan: ProcessPlan, join_cgroup, stdio: Stdio = (None, None, None)) -> Started:
    """Fork a new container's PID 1; `join_cgroup(pid)` runs in the parent before the child goes on.

    `stdio` replaces the child's fds 0, 1, 2 where not None (a monitor passes its log pipes).
    """
    return _fork(plan, plan.identity, join_cgroup, stdio, lambda: sc.unshare(sc.CLONE_NEWPID))


def enter(plan: ExecPlan, join_cgroup, stdio: Stdio = (None, None, None)) -> Started:
    """Fork a process inside the running container plan.target_pid (ctr exec)."""
    pid_ns = os.open(f"/proc/{plan.target_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _fork(plan, plan.identity, join_cgroup, stdio, lambda: sc.setns(pid_ns, sc.CLONE_NEWPID))
    finally:
        os.close(pid_ns)


def _fork(plan, identity: Identity, join_cgroup, stdio: Stdio, switch_pid_ns) -> Started:
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    tty_parent = tty_child = None
    if identity.tty:  # the terminal's master fd comes back over a unix socket (SCM_RIGHTS)
        import socket

        tty_parent, tty_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # For exec: hold the container's namespaces and root open before the fork, so that
    # the child joins exactly this container even if its pid were reused meanwhile.
    held = _open_namespaces(plan.target_pid) if isinstance(plan, ExecPlan) else None

    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        switch_pid_ns()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(err_r)
            if tty_parent:
                tty_parent.close()
            for target, fd in enumerate(stdio):
                if fd is not None:
                    os.dup2(fd, target)
            _child(plan, held, go_r, err_w, tty_child)  # never returns
        sc.setns(own_pidns, sc.CLONE_NEWPID)
    finally:
        os.close(own_pidns)
        for fd in (held or {}).values():
            os.close(fd)

    os.close(go_r)
    os.close(err_w)
    if tty_child:
        tty_child.close()
    try:
        join_cgroup(pid)
        os.write(go_w, b"1")
        master_fd = receive_fd(tty_parent) if tty_parent else None
        check_exec(err_r)
    except BaseException:
        reap(pid)
        raise
    finally:
        os.close(go_w)
        os.close(err_r)
        if tty_parent:
            tty_parent.close()
    return Started(pid, master_fd)


def _open_namespaces(pid: int) -> dict[str, int]:
    held: dict[str, int] = {}
    try:
        for name, _flag in ENTER_ORDER:
            held[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        held["root"] = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        for fd in held.values():
            os.close(fd)
        raise CtrError(f"process {pid} of the container is gone") from None
    return held


def receive_fd(sock) -> int | None:
    """The pty master the child sends over `sock` once it has made its terminal, if any."""
    import socket

    _msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    return fds[0] if fds else None


def check_exec(err_r: int) -> None:
    """EOF means exec succeeded; otherwise the child reported why it could not start."""
    data = b""
    while chunk := os.read(err_r, 65536):
        data += chunk
    if not data:
        return
    code, _, message = data.decode(errors="replace").partition(":")
    error = {"127": CommandNotFound, "126": CommandNotExecutable}.get(code, CtrError)
    raise error(message)


def reap(pid: int) -> None:
    """Kill and wait for a child that failed before (or while) it exec'd."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class StartError(Exception):
    """A failure in the child before exec, with its exit code (125, or 126/127 as Docker's)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _child(plan, held, go_r: int, err_w: int, tty_sock) -> None:
    code = 125
    try:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(sig, signal.SIG_DFL)  # the parent's forwarding handlers are not ours
            if getattr(plan, "die_with_parent", True):
                sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            # Wait until the parent has moved us into the cgroup; EOF means the parent died.
            if os.read(go_r, 1) != b"1":
                raise StartError(125, "parent went away before start")
            os.close(go_r)
            if isinstance(plan, ExecPlan):
                _join(held)
            else:
                _create(plan)
            become(plan.identity, tty_sock)
        except StartError as exc:
            code, message = exc.code, str(exc)
        except CtrError as exc:
            code, message = exc.exit_code, str(exc)
        except OSError as exc:
            message = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
        except BaseException as exc:  # report, never unwind into the parent's code
            import traceback

            message = f"{type(exc).__name__}: {exc} " + traceback.format_exc().replace("\n", " | ")
        os.write(err_w, f"{code}:{message}".encode())
    finally:
        os._exit(code)


def _create(plan: ProcessPlan) -> None:
    flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP
    if not plan.host_network:
        flags |= sc.CLONE_NEWNET
    sc.unshare(flags)
    sc.sethostname(plan.hostname)
    if not plan.host_network:
        net.loopback_up()
    rootfs.build(plan.rootfs, plan.host_network)


def _join(held: dict[str, int]) -> None:
    for name, flag in ENTER_ORDER:
        if os.readlink(f"/proc/self/fd/{held[name]}") != os.readlink(f"/proc/self/ns/{name}"):
            sc.setns(held[name], flag)
    # setns(mnt) leaves us at the namespace's original root, not the container's pivoted
    # one: change root to the container's own, as nsenter --root does.
    os.fchdir(held["root"])
    os.chroot(".")
    os.chdir("/")


def become(identity: Identity, tty_sock) -> None:
    """Inside the container's root: stdio, user, capabilities, working dir, exec."""
    _setup_stdio(identity, tty_sock)
    user = resolve_user(identity.user, "/etc", identity.group_add)
    env = list(identity.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    try:
        os.makedirs(identity.cwd, exist_ok=True)
    except OSError as exc:
        raise StartError(125, f"cannot create working directory {identity.cwd}: {exc.strerror}") from None
    executable = _find_executable(identity.args[0], env)

    # Identity last: the bounding set needs CAP_SETPCAP, setuid needs CAP_SETUID.
    # Seccomp as runc orders it: as late as possible, right before exec, when no_new_privs
    # allows an unprivileged process to install it; without no_new_privs the kernel demands
    # CAP_SYS_ADMIN, so then before the capabilities go (the profile allows what follows).
    if identity.seccomp is not None and not identity.no_new_privs:
        sc.seccomp_filter(identity.seccomp)
    caps.drop_bounding_set(identity.caps_mask)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    caps.apply(identity.caps_mask, user.uid)
    if identity.no_new_privs:
        caps.set_no_new_privs()
        if identity.seccomp is not None:
            sc.seccomp_filter(identity.seccomp)
    _close_on_exec_from(3)
    try:
        os.chdir(identity.cwd)
    except OSError as exc:
        raise StartError(125, f"cannot enter working directory {identity.cwd}: {exc.strerror}") from None
    _exec(executable, identity.args, env)


def _setup_stdio(identity: Identity, tty_sock) -> None:
    if identity.tty:
        # A pty from the container's own devpts, so `tty` prints /dev/pts/N of the container.
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(master, TIOCSPTLCK, array.array("i", [0]))
        slave = os.open(_ptsname(master), os.O_RDWR)
        import socket

        socket.send_fds(tty_sock, [b"m"], [master])
        os.close(master)
        tty_sock.close()
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        if identity.winsize:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, identity.winsize)
        for fd in (0, 1, 2):  # without -i the parent simply never writes to the terminal
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
    elif not identity.stdin:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)


TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


def _ptsname(fd: int) -> str:
    buf = array.array("I", [0])
    fcntl.ioctl(fd, TIOCGPTN, buf)
    return f"/dev/pts/{buf[0]}"


def _close_on_exec_from(first: int) -> None:
    """No fd of ctr's (or of whoever started ctr) may leak into the container (runc's CloseExecFrom)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the fd of the listdir itself, already closed


def _find_executable(name: str, env: list[str]) -> str:
    """PATH lookup in the container's root, with Docker's messages and exit codes."""
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if "/" in name:
        if os.path.isdir(name):
            raise StartError(126, f'exec "{name}": is a directory')
        if os.path.exists(name):
            raise StartError(126, f'exec "{name}": permission denied')
        raise StartError(127, f'exec "{name}": no such file or directory')
    if any(os.path.exists(c) for c in candidates):
        raise StartError(126, f'exec "{name}": permission denied')
    raise StartError(127, f'exec "{name}": executable file not found in $PATH')


def _exec(executable: str, args: tuple[str, ...], env: list[str]) -> None:
    # Python ignores these; ignored signals survive exec, and the container must not inherit that.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        os.execve(executable, list(args), dict(e.split("=", 1) for e in env))
    except OSError as exc:
        code = 127 if exc.errno == 2 else 126
        raise StartError(code, f'exec "{args[0]}": {exc.strerror.lower()}') from None
