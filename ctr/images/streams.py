"""Moving blob bytes quickly and verifiably: a reader that hashes what passes
through, a copy into a temp file that hashes as it writes, and the threads
(Worker) that hash, read ahead or copy beside the caller, on a second core.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO

from ctr.errors import CtrError
from ctr.state.files import unlink_quiet

CHUNK = 1 << 20


class HashingReader:
    """A read-only file wrapper that hashes (sha256) and counts what passes through."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def write_hashed(
    src: IO[bytes], directory: Path, *, what: str, size: int | None = None, limit: int | None = None
) -> tuple[str, str, int]:
    """Copy `src` into a new temp file in `directory` (mode 0644, fsync'd), hashing it as it
    goes; returns (temp path, digest, length), the caller placing or removing the file.
    `limit` caps what is read; `size` is the exact length expected, a longer stream refused
    as soon as it shows. On any error the temp file is gone."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as f:
            while chunk := src.read(CHUNK):
                n += len(chunk)
                if limit is not None and n > limit:
                    raise CtrError(f"{what} is larger than {limit} bytes: refused")
                if size is not None and n > size:
                    raise CtrError(f"{what} is longer than the {size} bytes its descriptor says")
                h.update(chunk)
                f.write(chunk)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        if size is not None and n != size:
            raise CtrError(f"{what} is truncated: {n} of {size} bytes")
        return tmp, "sha256:" + h.hexdigest(), n
    except BaseException:
        unlink_quiet(tmp)
        raise


class Worker:
    """A daemon thread running self._work() beside the caller: its error kept for the
    caller to raise, its end (self.done) and progress announced under self._cond.
    Subclasses set their own fields before calling __init__, which starts the thread."""

    def __init__(self, name: str) -> None:
        import threading

        self.done = self.stopped = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        from ctr.native.threads import start_quiet_thread

        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        start_quiet_thread(self._thread)

    def _work(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.error = exc
        finally:
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def stop(self) -> None:
        """Ask the work to stop at its next step, and wait until it has."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()
        self._thread.join()


class FileHasher(Worker):
    """The sha256 of file descriptor `fd` from `start` to its end, computed in a thread.

    hashlib releases the GIL on large updates, so on a second core the hash costs
    the unpack that reads the same file nothing. digest() also checks the file's
    size and change times: what was hashed is what was unpacked, as when one
    stream was both hashed and unpacked.
    """

    CHUNK = 4 << 20

    def __init__(self, fd: int, start: int, layer: str) -> None:
        self.fd, self.layer, self.offset = fd, layer, start
        self.stamp = self._stamp()
        self.hash = hashlib.sha256()
        super().__init__("ctr-layer-hash")

    def _stamp(self) -> tuple[int, int, int]:
        st = os.fstat(self.fd)
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def _work(self) -> None:
        buf = bytearray(self.CHUNK)
        view = memoryview(buf)
        while not self.stopped and (n := os.preadv(self.fd, [buf], self.offset)):
            self.hash.update(view[:n])
            self.offset += n

    def digest(self) -> str:
        """The file's digest, once hashed; raises if the file could not be read or changed meanwhile."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        if self._stamp() != self.stamp:
            raise CtrError(f"layer {self.layer} changed while it was unpacked")
        return "sha256:" + self.hash.hexdigest()


class ReadAhead(Worker):
    """A reader of `src` that reads and hashes it in a thread, a few chunks ahead of the caller.

    Decompression (zlib, zstandard) and hashlib release the GIL, so a compressed
    layer is decompressed and hashed on one core while it is unpacked on the other.
    read() returns short, as a raw stream may.
    """

    DEPTH = 8  # chunks of CHUNK bytes held ready

    def __init__(self, src: IO[bytes]) -> None:
        import collections

        self.src = src
        self.hash = hashlib.sha256()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.chunk, self.pos = b"", 0
        super().__init__("ctr-layer-read")

    def _work(self) -> None:
        while data := self.src.read(CHUNK):
            self.hash.update(data)
            with self._cond:
                self._cond.wait_for(lambda: len(self.chunks) < self.DEPTH or self.stopped)
                if self.stopped:
                    return
                self.chunks.append(data)
                self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        if self.pos == len(self.chunk):
            with self._cond:
                self._cond.wait_for(lambda: self.chunks or self.done)
                if not self.chunks:
                    if self.error is not None:
                        raise self.error
                    return b""
                self.chunk, self.pos = self.chunks.popleft(), 0
                self._cond.notify_all()
        end = len(self.chunk) if n < 0 else self.pos + n
        data = self.chunk[self.pos : end]
        self.pos += len(data)
        return data

    def digest(self) -> str:
        """The digest of all of `src`, read to its end (the diff_id covers the end-of-archive blocks too)."""
        while self.read(CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


class BackgroundCopy(Worker):
    """Copies file descriptor `src` to `dst` in a thread, telling how far it got.

    sendfile copies in the kernel without holding the GIL, so the copy, and
    then the fsync, run on one core while the caller hashes on the other.
    """

    CHUNK = 8 << 20

    def __init__(self, src: int, dst: int) -> None:
        self.src, self.dst = src, dst
        self.copied, self.through_user_space = 0, False
        super().__init__("ctr-copy")

    def _work(self) -> None:
        while not self.stopped and (n := self._copy_chunk()):
            with self._cond:
                self.copied += n
                self._cond.notify_all()
        if not self.stopped:
            os.fsync(self.dst)

    def _copy_chunk(self) -> int:
        if not self.through_user_space:
            try:
                return os.sendfile(self.dst, self.src, None, self.CHUNK)
            except OSError:
                if self.copied:
                    raise
                self.through_user_space = True  # a file system that cannot splice, as shutil falls back too
        data = view = memoryview(os.read(self.src, self.CHUNK))
        while view:
            view = view[os.write(self.dst, view) :]
        return len(data)

    def wait(self, beyond: int) -> int:
        """The bytes copied, once there are more than `beyond` or the copy has ended (re-raising its error)."""
        with self._cond:
            self._cond.wait_for(lambda: self.copied > beyond or self.done)
        if self.error is not None:
            raise self.error
        return self.copied
