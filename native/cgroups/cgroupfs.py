"""The kernel's cgroup files, as the drivers read and write them: one seam for every access.

Every kernel file goes through read/write/mkdir/rmdir here: kernel errors come out as
OSError(errno, strerror, path), and the unit tests put a small fake cgroupfs behind them
(by replacing these functions on this module, which is why the drivers call them as
`cgroupfs.write(...)`). The bounded waits (freeze, empty, rmdir) live here too.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_ROOT = Path("/sys/fs/cgroup")

TIMEOUT = 2.0  # seconds any wait (freeze, empty, rmdir) may take before we give up
POLL = 0.01


def read(path: Path) -> str:
    with open(path) as f:
        return f.read()


# A cgroup removed under us: ENOENT at open, ENODEV when it goes between open and read.
VANISHED = (errno.ENOENT, errno.ENODEV, errno.ESRCH)


def read_present(path: Path) -> str | None:
    """The file's text, or None when it (or its cgroup) is gone: ordinary, never an error."""
    try:
        return read(path)
    except OSError as exc:
        if exc.errno in VANISHED:
            return None
        raise


def write(path: Path, value: str) -> None:
    """Write one value as one write(2), as the kernel wants; no O_CREAT, so a missing
    interface file is ENOENT rather than a misleading EACCES from cgroupfs."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        # os.write's error has no file name; the kernel's EINVAL/EBUSY means little without it.
        raise OSError(exc.errno, f"{exc.strerror} (writing {value!r})", str(path)) from None


def mkdir(path: Path) -> None:
    os.mkdir(path)


def rmdir(path: Path) -> None:
    os.rmdir(path)


def read_int(path: Path) -> int | None:
    """An integer file, or None when the file is missing or says "max"."""
    text = read_present(path)
    if text is None or text.strip() == "max":
        return None
    return int(text)


def read_keyed(path: Path, key: str) -> int | None:
    """The value of `key` in a flat-keyed file such as memory.events or cpu.stat."""
    text = read_present(path)
    if text is None:
        return None
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return None


def wait_for(check: Callable[[], bool], timeout: float | None = None) -> bool:
    """Poll `check` every POLL seconds until it holds; bounded both in time and in count."""
    timeout = TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 1):
        if check():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    return False


def remove_tree(top: Path) -> None:
    """rmdir `top` and any cgroups the container made below it, deepest first.

    A cgroup directory holds only kernel files, so rmdir (not unlink) is the only way to
    remove it; EBUSY right after a kill just means the kernel is still tearing down, so retry.
    """
    if not top.exists():
        return
    for dirpath, _, _ in os.walk(top, topdown=False):
        path = Path(dirpath)

        def gone(path: Path = path) -> bool:
            try:
                rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                return False
            return True

        if not wait_for(gone):
            raise OSError(errno.EBUSY, f"cgroup still busy after {TIMEOUT:g}s", str(path))
