"""ctr's side of a foreground `run`, while the liblxc monitor runs the container.

Foreground `run`: ctr itself waits for the liblxc monitor. Signals to ctr go
straight to PID 1 through a pidfd (found in the payload cgroup: the process
whose innermost pid is 1); signals that arrive earlier are held until then.
If ctr dies, the liblxc monitor gets SIGTERM, passes it on, and tidies up
once the container has ended.

-t: liblxc allocates the console from the container's own devpts (so `tty`
prints /dev/pts/0) and relays it to its controlling terminal. ctr gives the
monitor a pty of its own as that terminal and relays it to ctr's stdio,
which works whether or not ctr runs on a terminal; raw mode and window size
follow ctr's terminal. liblxc never makes the console PID 1's controlling
terminal, so ctr turns ^C, ^\\ and ^Z into signals itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import selectors
import signal
import threading
from collections.abc import Callable

from ctr.backends.kept.monitor_start import fork_clean
from ctr.backends.kept.signals import FORWARDED_SIGNALS
from ctr.backends.lxc.cgroups import find_init
from ctr.backends.lxc.console import UndoOnlcr, peer_adds_cr
from ctr.spec import ContainerSpec


def run_foreground(
    spec: ContainerSpec,
    cid: str,
    monitor_main: Callable[[int, int | None, int | None], None],
    on_started: Callable[[int, int], None],
) -> int:
    """Fork the liblxc monitor of container `cid`, `monitor_main(parent, master, slave)` (it
    never returns; with -t, `slave` is the pty to make its terminal), and supervise it
    until it has ended; returns its wait status. `on_started(pid, monitor)`: see Supervisor."""
    master = slave = slave_path = None
    terminal = contextlib.nullcontext()  # ctr's own terminal, raw while -i -t relays to it
    if spec.tty:
        import tty as stdlib_tty

        from ctr.native import tty

        if spec.stdin:
            terminal = tty.raw_terminal(0)
        master, slave = os.openpty()
        stdlib_tty.setraw(slave)  # liblxc's relay writes here; see Supervisor._pump_output
        slave_path = os.ttyname(slave)
        size = tty.winsize(0) or tty.winsize(1)
        if size is not None:
            import fcntl
            import termios

            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    parent = os.getpid()
    try:
        with SignalRelay(spec.tty) as relay:
            pid = fork_clean()
            if pid == 0:
                monitor_main(parent, master, slave)
            if slave is not None:
                os.close(slave)
                slave = None
            supervisor = Supervisor(pid, cid, on_started, relay, master, spec.stdin, slave_path)
            try:
                with terminal:
                    status = supervisor.run()
            except BaseException:
                supervisor.abort()  # ctr cannot go on (a broken stdout...): end the container
                raise
            finally:
                supervisor.close()
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    return status


class SignalRelay:
    """Signals ctr receives, collected for the supervisor loop and woken through a pipe.

    Python runs signal handlers in the main thread only; elsewhere nothing is
    installed and the supervisor polls.
    """

    def __init__(self, tty: bool) -> None:
        self.signals = FORWARDED_SIGNALS + (signal.SIGCHLD,) + ((signal.SIGWINCH,) if tty else ())
        self.pending: list[int] = []
        self.previous: dict = {}
        self.wakeup: int | None = None
        self.active = threading.current_thread() is threading.main_thread()
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1

    def __enter__(self) -> SignalRelay:
        if self.active:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._pipe = (r, w)
            self.wakeup = r
            self._old_wakeup = signal.set_wakeup_fd(w)
            for sig in self.signals:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self._pipe:
            signal.set_wakeup_fd(self._old_wakeup)
            for fd in self._pipe:
                os.close(fd)

    def _handle(self, signum: int, _frame) -> None:
        self.pending.append(signum)

    def take(self) -> list[int]:
        if self.wakeup is not None:
            try:
                while os.read(self.wakeup, 512):
                    pass
            except BlockingIOError:
                pass
        out, self.pending = self.pending, []  # a handler running meanwhile appends to one of them
        return out


class Supervisor:
    """Wait for the monitor; meanwhile relay signals to PID 1 and, with -t, the terminal."""

    def __init__(
        self,
        monitor: int,
        cid: str,
        on_started: Callable[[int, int], None],
        relay: SignalRelay,
        master: int | None,
        forward_stdin: bool,
        slave_path: str | None = None,
    ) -> None:
        """`on_started(pid, monitor)` is called once PID 1 (`pid`) of container `cid` is found."""
        self.monitor = monitor
        self.cid = cid
        self.on_started = on_started
        self.relay = relay
        self.master = master
        self.slave_path = slave_path
        self.stdin_open = forward_stdin and master is not None
        self.to_container = bytearray()  # input read from ctr's stdin, not yet taken by the pty
        self.undo: UndoOnlcr | None = None  # decided on the first output
        self.init_fd: int | None = None
        self.init_pid: int | None = None
        self.held: list[int] = []
        self.status: int | None = None
        if master is not None:
            os.set_blocking(master, False)

    def run(self) -> int:
        """Until the monitor has ended and, with -t, its terminal has been drained."""
        sel = selectors.DefaultSelector()
        if self.relay.wakeup is not None:
            sel.register(self.relay.wakeup, selectors.EVENT_READ)
        terminal_open = self.master is not None
        try:
            while self.status is None or terminal_open:
                self._watch(
                    sel,
                    self.master,
                    (selectors.EVENT_READ | (selectors.EVENT_WRITE if self.to_container else 0))
                    if terminal_open
                    else 0,
                )
                self._watch(sel, 0, selectors.EVENT_READ if self.stdin_open and not self.to_container else 0)
                if self.status is not None:
                    timeout = 0.2  # the monitor is gone: what is left in the pty is there now
                elif self.init_fd is None or not self.relay.active:
                    timeout = 0.05  # looking for PID 1, or no SIGCHLD to wake us
                else:
                    timeout = None
                events = sel.select(timeout)
                for key, mask in events:
                    if key.fd == self.master:
                        if mask & selectors.EVENT_WRITE:
                            self._flush_input()
                        if mask & selectors.EVENT_READ and not self._pump_output():
                            terminal_open = False
                    elif key.fd == 0:
                        self._pump_input()
                if self.status is not None and terminal_open and not events:
                    terminal_open = False
                    self._flush_output()
                self._signals()
                self._reap()
                if self.init_fd is None and self.status is None:
                    self._look_for_init()
        finally:
            sel.close()
        return self.status

    @staticmethod
    def _watch(sel: selectors.BaseSelector, fd: int | None, events: int) -> None:
        if fd is None:
            return
        current = sel.get_map().get(fd)
        if not events:
            if current is not None:
                sel.unregister(fd)
        elif current is None:
            sel.register(fd, events)
        elif current.events != events:
            sel.modify(fd, events)

    def abort(self) -> None:
        """Kill PID 1 (or, before it exists, the monitor, whose death liblxc turns into
        SIGKILL for PID 1) and wait for the monitor, so cleanup finds nothing running."""
        try:
            if self.init_fd is not None:
                signal.pidfd_send_signal(self.init_fd, signal.SIGKILL)
            elif self.status is None:
                os.kill(self.monitor, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.status is None:
            try:
                os.waitpid(self.monitor, 0)
            except ChildProcessError:
                pass

    def close(self) -> None:
        if self.init_fd is not None:
            os.close(self.init_fd)
            self.init_fd = None

    def _signals(self) -> None:
        for sig in self.relay.take():
            if sig == signal.SIGCHLD:
                continue  # _reap looks
            if sig == signal.SIGWINCH:
                if self.master is not None:
                    from ctr.native import tty

                    tty.copy_winsize(0 if os.isatty(0) else 1, self.master)
            elif self.init_fd is None:
                self.held.append(sig)  # delivered as soon as PID 1 exists
            else:
                self._send(sig)

    def _look_for_init(self) -> None:
        from ctr.native import syscalls as sc

        pid = find_init(self.cid)
        if pid is None:
            return
        try:
            fd = sc.pidfd_open(pid)
        except OSError:
            return
        # Still in the payload cgroup once the pidfd is held: it is PID 1, not a reused pid.
        if find_init(self.cid) != pid:
            os.close(fd)
            return
        self.init_fd, self.init_pid = fd, pid
        self.on_started(pid, self.monitor)
        for sig in self.held:
            self._send(sig)
        self.held.clear()

    def _send(self, sig: int) -> None:
        try:
            signal.pidfd_send_signal(self.init_fd, sig)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        if self.status is not None:
            return
        pid, status = os.waitpid(self.monitor, os.WNOHANG)
        if pid == self.monitor:
            self.status = status

    def _pump_output(self) -> bool:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the monitor closed the terminal
                raise
            data = b""
        if not data:
            self._flush_output()
            return False
        if self.undo is None:
            # liblxc sets OPOST|ONLCR on its terminal peer (lxc_setup_tios), so our pty turns
            # every "\n" the container's own pty sent into "\r\n": undo exactly that.
            self.undo = UndoOnlcr(peer_adds_cr(self.slave_path))
        _write_all(1, self.undo(data))
        return True

    def _flush_output(self) -> None:
        """What the relay held back (a last "\r"), once the terminal is done."""
        _write_all(1, self.undo.flush() if self.undo is not None else b"")

    def _pump_input(self) -> None:
        data = os.read(0, 65536)
        if not data:
            self.stdin_open = False
            data = b"\x04"  # EOF on ctr's stdin: ^D to the container
        elif self.init_pid is not None and re.search(rb"[\x00-\x1f\x7f]", data):
            self._terminal_signals(data)
        self.to_container += data
        self._flush_input()

    def _flush_input(self) -> None:
        try:
            while self.to_container:
                del self.to_container[: os.write(self.master, self.to_container)]
        except BlockingIOError:
            pass  # the container is not reading: wait until the pty takes more
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self.to_container.clear()  # the terminal is gone

    def _terminal_signals(self, data: bytes) -> None:
        """Do what the container's pty would do with ^C, ^\\ and ^Z if it were PID 1's
        controlling terminal: liblxc makes PID 1 a session leader on it (setsid) but never
        makes it the controlling terminal (no TIOCSCTTY), so the kernel signals no one."""
        import termios

        try:
            fd = os.open(
                f"/proc/{self.init_pid}/root/dev/console", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
            )
            try:
                attrs = termios.tcgetattr(fd)
            finally:
                os.close(fd)
        except (OSError, termios.error):
            return
        lflag, cc = attrs[3], attrs[6]
        if not lflag & termios.ISIG:
            return
        for index, sig in (
            (termios.VINTR, signal.SIGINT),
            (termios.VQUIT, signal.SIGQUIT),
            (termios.VSUSP, signal.SIGTSTP),
        ):
            char = cc[index]
            if isinstance(char, bytes) and char != b"\x00" and char in data:
                try:
                    os.killpg(self.init_pid, sig)  # PID 1's group: the foreground without job control
                except ProcessLookupError:
                    pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
