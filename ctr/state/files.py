"""Files that appear whole, and the locks that serialize their writers.

One way to replace a file atomically (replaced_atomically: temp file beside it,
fsync'd, renamed over it, the directory fsync'd), one flock helper, and the
scratch directory on the state root's filesystem; the image store, the container
records and the archives a user asks for (write_output) all use these.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from ctr.errors import InvalidSpec
from ctr.state.paths import Paths


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that a rename or a new name in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quiet(path: str | os.PathLike) -> None:
    """Remove a file that may already be gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def replaced_atomically(path: Path, mode: int = 0o600, *, ignore_umask: bool = False) -> Iterator[BinaryIO]:
    """A new file beside `path` (`mode` under the umask, or exactly `mode` with
    `ignore_umask`), fsync'd and renamed over `path` when the block ends, then the
    directory fsync'd; removed if it raises. Readers see the old file or the new, whole."""
    # (Not tempfile: importing it costs more than a container start should spend here.)
    tmp = path.parent / f".tmp-{path.name}-{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if ignore_umask:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """`data` as the whole new content of `path`, with exactly `mode`, by replaced_atomically."""
    with replaced_atomically(path, mode, ignore_umask=True) as f:
        f.write(data)


def write_json_atomic(path: Path, data: dict) -> None:
    """JSON, written with replaced_atomically."""
    with replaced_atomically(path) as f:
        f.write(json.dumps(data, indent=1, sort_keys=True).encode())


@contextmanager
def flock(path: Path, mode: int = 0o644, *, blocking: bool = True) -> Iterator[int]:
    """An exclusive flock on the file `path` (created, with its parents, if missing); yields its fd.

    It serializes threads too (one open file each). Without `blocking`, a lock held
    elsewhere raises BlockingIOError at once. A process forked while holding it shares
    the lock and must close that fd, or it would hold the lock for as long as it lives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield fd
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextmanager
def scratch_dir(paths: Paths) -> Iterator[Path]:
    """A private directory on the state root's filesystem (layers can be large; /tmp may be small)."""
    import tempfile

    paths.data.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(dir=paths.data, prefix=".scratch-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_output(dest: str, write: Callable[[IO[bytes]], None], what: str) -> None:
    """`write(out)` to stdout when `dest` is '-' (never a terminal), else to a temp file
    beside `dest`, fsync'd and renamed into place once complete, with the mode a new file
    gets under the umask. `what` names the archive in messages ("a bundle")."""
    if dest == "-":
        if sys.stdout.isatty():
            raise InvalidSpec(f"refusing to write {what} to a terminal: use -o FILE or a pipe")
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(dest)
    if target.is_dir():
        raise InvalidSpec(f"cannot export to {dest}: it is a directory")
    with replaced_atomically(target, 0o666) as f:
        write(f)
