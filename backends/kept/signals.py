"""Signals to ctr passed on to the container's process (native and lxc, whose exec and
foreground run end the same way): held until the process exists, then sent to it."""

from __future__ import annotations

import os
import signal

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class SignalForwarder:
    """Pass the signals ctr receives to the container's process, from before it exists:
    a signal that arrives while the container is being set up is held and delivered
    as soon as its pid is known, so Ctrl-C never leaves a half-made container."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        self.previous: dict = {}

    def __enter__(self) -> SignalForwarder:
        for sig in FORWARDED_SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def follow(self, pid: int, master_fd: int | None, forward_stdin: bool) -> int:
        """The foreground process `pid`, ours to reap: signals go to it from now on, its
        terminal (`master_fd`, closed here) is relayed while it has one, and its wait
        status is returned once it has ended."""
        self.attach(pid)
        if master_fd is not None:
            from ctr.native import tty

            try:
                tty.relay(master_fd, forward_stdin=forward_stdin)
            finally:
                os.close(master_fd)
        _, status = os.waitpid(pid, 0)
        return status

    def _handle(self, signum: int, _frame) -> None:
        if self.pid is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def attach(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._send(signum)
        self.pending.clear()

    def _send(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass
