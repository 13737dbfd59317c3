"""A minimal inotify watch (ctypes), so `logs -f` sleeps until the kernel says a file changed."""

from __future__ import annotations

import ctypes
import os
import select

try:  # the soname directly: find_library forks ldconfig, milliseconds on every start
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    import ctypes.util

    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
IN_MODIFY = 0x2
IN_CLOSE_WRITE = 0x8
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


class Watch:
    def __init__(self, path) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
        if _libc.inotify_add_watch(self.fd, os.fsencode(path), IN_MODIFY | IN_CLOSE_WRITE) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, os.strerror(err), str(path))

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                pass

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)
