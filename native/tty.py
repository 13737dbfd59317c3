"""ctr's side of a container terminal: raw mode, window size, and copying bytes."""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import signal
import struct
import termios
import tty as _tty
from collections.abc import Iterator
from contextlib import contextmanager


def winsize(fd: int) -> bytes | None:
    """The raw struct winsize of terminal `fd`, or None when it is not a terminal."""
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    except OSError:
        return None


def copy_winsize(src_fd: int, dst_fd: int) -> None:
    size = winsize(src_fd)
    if size is not None:
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on ctr's terminal for the duration, as `docker run -t` does."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    _tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay(master: int, forward_stdin: bool, stdin: int = 0, stdout: int = 1) -> None:
    """Copy container output to stdout (and stdin to it) until the terminal closes."""
    previous = signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    if forward_stdin:
        sel.register(stdin, selectors.EVENT_READ)
    try:
        with raw_terminal(stdin) if forward_stdin else _nothing():
            while True:
                for key, _ in sel.select():
                    if key.fd == master:
                        try:
                            data = os.read(master, 65536)
                        except OSError as exc:
                            if exc.errno == errno.EIO:  # every slave fd closed: the container is gone
                                return
                            raise
                        if not data:
                            return
                        _write_all(stdout, data)
                    else:
                        data = os.read(stdin, 65536)
                        if not data:
                            sel.unregister(stdin)
                            _write_all(master, b"\x04")  # EOF on ctr's stdin: ^D to the container
                            continue
                        _write_all(master, data)
    finally:
        sel.close()
        signal.signal(signal.SIGWINCH, previous)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
