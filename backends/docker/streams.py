"""ctr's own stdio, terminal and signals joined to an engine stream (an attach or an exec):
output demultiplexed onto fds 1 and 2, stdin pumped in, the terminal made raw for -it, its
size and ctr's signals passed on. The foreground run and exec share it.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from ctr.native.threads import start_quiet_thread

BUFSIZE = 64 * 1024
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
EXEC_FAILED = b"OCI runtime exec failed"  # how runc's failure to exec reaches an exec's stdout


def in_thread(what: str, fn: Callable[[], Any]) -> None:
    """Fire and forget: signal handlers must not block on HTTP, and the container may
    have exited meanwhile, which is no error."""

    def call() -> None:
        try:
            fn()
        except Exception:
            pass

    start_quiet_thread(threading.Thread(target=call, name=f"ctr-{what}", daemon=True))


def raw_socket(wrapper: Any) -> socket.socket:
    sock = getattr(wrapper, "_sock", wrapper)  # unix: a SocketIO around the socket
    sock.settimeout(None)  # the SDK's 60 s timeout must not cut off a quiet container
    return sock


class Stdio:
    """ctr's stdin, stdout and stderr joined to an attach or exec stream: output demultiplexed
    onto fds 1 and 2 (one raw stream with a tty), ctr's stdin pumped in, and the terminal
    made raw for -it. The foreground run and exec share it."""

    def __init__(self, tty: bool, stdin: bool) -> None:
        self.tty = tty
        self.stdin = stdin
        self._old_term: list | None = None
        self._wake_r = self._wake_w = -1

    def relay(self, sock: socket.socket, out: Output, until: Callable[[], Any] | None = None) -> Any:
        """Until the engine ends the output; then `until()`, whose result is returned, is
        called before ctr's terminal and stdin are let go."""
        pump = None
        if self.stdin:
            self._wake_r, self._wake_w = os.pipe()
            pump = threading.Thread(target=self._pump_stdin, args=(sock,), name="ctr-stdin", daemon=True)
        try:
            if self.tty and self.stdin and os.isatty(0):
                self._make_raw(0)
            if pump:
                start_quiet_thread(pump)
            if self.tty:
                _copy_raw(sock, out)
            else:
                _copy_multiplexed(sock, out)
            return until() if until else None
        finally:
            self._restore_terminal()
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")  # wakes a pump waiting for ctr's stdin,
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # and this one blocked in sendall
                except OSError:
                    pass
                if pump and pump.is_alive():
                    pump.join(timeout=5)
                os.close(self._wake_w)
                os.close(self._wake_r)
                self._wake_r = self._wake_w = -1

    def _pump_stdin(self, sock: socket.socket) -> None:
        """ctr's fd 0 -> the container's stdin. EOF half-closes the socket, which the engine
        passes on (StdinOnce), so `echo hi | ctr run -i busybox cat` ends.

        With a tty, EOF becomes ^D instead, as on the native backend: the engine answers a
        half-close in tty mode by ending the output stream while the container runs on.
        """
        poller = select.poll()
        poller.register(0, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                return
            try:
                data = os.read(0, BUFSIZE)
            except OSError:  # fd 0 closed or unreadable: as good as EOF
                data = b""
            try:
                if data:
                    sock.sendall(data)
                    continue
                if self.tty:
                    sock.sendall(b"\x04")
                else:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the container is gone
            return

    def _make_raw(self, fd: int) -> None:
        import termios
        import tty

        self._old_term = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)

    def _restore_terminal(self) -> None:
        if self._old_term is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._old_term)
            self._old_term = None


def terminal_size() -> tuple[int, int] | None:
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


class Output:
    """Writes to ctr's fds 1 and 2. A reader that went away (`ctr run ... | head`) is
    not fatal: its stream is drained and dropped, the container runs to its end."""

    def __init__(self) -> None:
        self.dead: set[int] = set()

    def write(self, fd: int, data: memoryview | bytes) -> None:
        if fd in self.dead:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except BrokenPipeError:
            self.dead.add(fd)


class HoldingOutput(Output):
    """An exec's output, except that a first line that reads like runc's failure to exec is
    held back until the exec has ended: the engine sends that failure as the process's
    stdout, and only the exec's inspect (no pid) tells it from real output."""

    def __init__(self) -> None:
        super().__init__()
        self.held: bytes | None = b""

    def write(self, fd: int, data: memoryview | bytes) -> None:
        if self.held is None:
            return super().write(fd, data)
        if fd != 1:
            self.release()
            return super().write(fd, data)
        complete = self.held.endswith(b"\n")
        self.held += bytes(data)
        n = min(len(self.held), len(EXEC_FAILED))
        if complete or self.held[:n] != EXEC_FAILED[:n]:
            self.release()

    def release(self) -> None:
        held, self.held = self.held, None
        if held:
            super().write(1, held)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(BUFSIZE)
    except ConnectionResetError:
        return b""


def _copy_raw(sock: socket.socket, out: Output) -> None:
    """A tty container: one stream, no framing."""
    while data := _recv(sock):
        out.write(1, data)


def _copy_multiplexed(sock: socket.socket, out: Output) -> None:
    """Docker's attach framing: an 8-byte header (stream, 0, 0, 0, big-endian length), then
    the payload. Payload is written as it arrives, in slices of what recv returned."""
    header = bytearray()
    remaining = 0
    fd = 1
    while data := _recv(sock):
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if remaining == 0:
                take = min(8 - len(header), end - pos)
                header += view[pos : pos + take]
                pos += take
                if len(header) < 8:
                    break
                fd = 2 if header[0] in (2, 3) else 1  # 2 stderr, 3 the engine's own errors
                remaining = int.from_bytes(header[4:8], "big")
                header.clear()
                continue
            chunk = view[pos : pos + remaining]
            out.write(fd, chunk)
            pos += len(chunk)
            remaining -= len(chunk)
