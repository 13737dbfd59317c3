"""A minimal inotify watch (the syscalls in ctr.native.syscalls), so `logs -f` sleeps until the kernel says a file changed."""

from __future__ import annotations

import os
import select

from ctr.native import syscalls as sc


class Watch:
    def __init__(self, path) -> None:
        self.fd = sc.inotify_watch(path, sc.IN_MODIFY | sc.IN_CLOSE_WRITE)

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                pass

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)
