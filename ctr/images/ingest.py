"""Blobs coming into the store (import, pull), staged beside it until all are
checked, then published at once (ImageStore.publish); a failed import leaves
nothing behind. Made by `Ingest(store)`, used as a context manager.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ctr.errors import CtrError, NotFound
from ctr.images.layers import check_members, corrupt_layer, decompressed, describe_error, scan_layer, sniff_compression
from ctr.images.model import CONFIG_LIMIT, MANIFEST_LIMIT, Image, check_config, check_manifest, parse_json
from ctr.images.reference import hex_digest, normalize_ref
from ctr.images.store import INGEST_PREFIX, ImageStore
from ctr.images.streams import CHUNK, BackgroundCopy, write_hashed
from ctr.state.files import unlink_quiet


class Ingest:
    """Blobs staged for one import or pull, beside the store, until commit() publishes them.

    A directory `.ingest-*` in the store root holds the verified blobs; its
    flock tells a live ingest from one whose process died (the store's lock
    removes the latter). Nothing reaches blobs/ or index.json before commit(),
    and close() removes the directory, so a failed import leaves nothing.
    """

    def __init__(self, store: ImageStore) -> None:
        import tempfile

        self.store = store
        with store.lock():  # created under the store lock, so the stale-ingest sweep never sees it unlocked
            self.dir = Path(tempfile.mkdtemp(dir=store.root, prefix=INGEST_PREFIX))
            self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        import shutil

        if self._lock_fd >= 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def temp_file(self, suffix: str = "") -> Path:
        """A path for scratch data (a spooled or decompressed archive), removed with the ingest."""
        import tempfile

        fd, path = tempfile.mkstemp(dir=self.dir, prefix=".scratch-", suffix=suffix)
        os.close(fd)
        return Path(path)

    # blobs

    def path(self, digest: str) -> Path | None:
        """Where the blob is: staged here, already in the store, or None."""
        for path in (self.dir / hex_digest(digest), self.store.blob_path(digest)):
            if path.is_file():
                return path
        return None

    def has(self, digest: str) -> bool:
        return self.path(digest) is not None

    def add_blob(
        self,
        src: IO[bytes],
        *,
        what: str,
        expected: str | None = None,
        size: int | None = None,
        limit: int | None = None,
    ) -> tuple[str, int]:
        """Stream `src` into a staged blob; returns (digest, size).

        With `expected` (and `size`), a different digest (or length) is refused and
        nothing is kept. `limit` caps what is read (manifests and configs).
        """
        tmp, digest, n = write_hashed(src, self.dir, what=what, size=size, limit=limit)
        try:
            if expected is not None and digest != expected:
                raise CtrError(f"{what} does not match its digest {expected}: the content has {digest}")
            os.replace(tmp, self.dir / hex_digest(digest))
            return digest, n
        except BaseException:
            unlink_quiet(tmp)
            raise

    def add_file(self, path: Path, *, what: str) -> tuple[str, int]:
        """Copy the regular file `path` into a staged blob; returns (digest, size).

        Faster than add_blob for a big file: a BackgroundCopy copies while this
        thread hashes what has landed in the staged copy, so the digest is that
        of the bytes kept even if `path` changes meanwhile.
        """
        import tempfile

        with open(path, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise CtrError(f"{what}: not a regular file")
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
            os.fchmod(fd, 0o644)
            copy = BackgroundCopy(src.fileno(), fd)
            try:
                h, done = hashlib.sha256(), 0
                buf = memoryview(bytearray(CHUNK))
                while (copied := copy.wait(done)) > done:
                    while done < copied:
                        n = os.preadv(fd, [buf[: copied - done]], done)
                        h.update(buf[:n])
                        done += n
                digest = "sha256:" + h.hexdigest()
                os.replace(tmp, self.dir / hex_digest(digest))
                return digest, done
            except BaseException:
                copy.stop()
                unlink_quiet(tmp)
                raise
            finally:
                os.close(fd)

    def add_bytes(self, data: bytes, *, what: str, expected: str | None = None) -> str:
        import io

        return self.add_blob(io.BytesIO(data), what=what, expected=expected)[0]

    def read(self, digest: str, *, what: str, limit: int = CONFIG_LIMIT) -> bytes:
        """A small blob (manifest, config), staged or stored, checked against its digest."""
        path = self.path(digest)
        if path is None:
            raise NotFound(f"{what}: blob {digest} is missing")
        if path.stat().st_size > limit:
            raise CtrError(f"{what}: blob {digest} is larger than {limit} bytes: refused")
        data = path.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise CtrError(f"{what}: blob {digest} does not match its digest")
        return data

    def diff_id(self, digest: str, *, what: str) -> str:
        """Check the layer blob `digest` (staged or stored) by scan_layer's rules; returns its diff_id."""
        path = self.path(digest)
        if path is None:
            raise NotFound(f"{what}: layer blob {digest} is missing")
        with open(path, "rb") as f:
            kind = sniff_compression(f.read(4))
            f.seek(0)
            if not kind and path.parent == self.dir:
                # Staged here, so hashed as it was written: its digest is its diff_id, and only
                # the headers need reading (seeking past the file data).
                with corrupt_layer(what):
                    check_members(f, "r:", what)
                return digest
            try:
                with decompressed(f, kind, f"layer {what}") as plain:  # type: ignore[union-attr]
                    return scan_layer(plain, layer=what)
            except CtrError:
                raise
            except (OSError, EOFError, ValueError) as exc:  # a gzip header that is not one, and the like
                raise CtrError(f"layer {what} is corrupt or truncated: {describe_error(exc)}") from None

    # publishing

    def commit(self, images: Sequence[tuple[str, str, str]]) -> list[Image]:
        """Name each (name, manifest digest, manifest media type) and publish the blobs they use.

        Under the store lock: every blob each manifest references must be staged or
        stored (a blob an `ctr image rm` collected meanwhile makes this fail), staged
        ones are renamed into blobs/, then index.json is written once. Names that
        pointed elsewhere move, and blobs nothing uses any more are collected.
        """
        store = self.store
        with store.lock():
            entries, needed = [], set()
            for name, digest, media in images:
                entry, blobs = self._checked_entry(name, digest, media)
                entries.append(entry)
                needed.update(blobs)
            return store.publish(entries, {d: self.dir / hex_digest(d) for d in sorted(needed)})

    def _checked_entry(self, name: str, digest: str, media: str) -> tuple[dict, tuple[str, ...]]:
        """The index entry naming manifest `digest` `name`, and the blobs it uses, each there
        (staged or stored); refused when a blob has gone or the manifest or config is not valid."""
        store = self.store
        what = f"image {name}"
        manifest = parse_json(self.read(digest, what=what, limit=MANIFEST_LIMIT), f"manifest of {what}")
        config_desc, layers = check_manifest(manifest, f"manifest of {what}")
        config = parse_json(self.read(config_desc["digest"], what=what), f"config of {what}")
        check_config(config, len(layers), f"config of {what}")
        blobs = (digest, config_desc["digest"], *(layer["digest"] for layer in layers))
        for d in blobs:
            if not self.has(d):
                raise CtrError(
                    f"{what}: blob {d} vanished from {store.blobs} while this import ran "
                    "(an image was removed meanwhile): try again"
                )
        size = self.path(digest).stat().st_size  # type: ignore[union-attr]
        entry = store.index_entry(
            normalize_ref(name), digest, size, str(config.get("architecture", "")), str(config.get("os", "")), media
        )
        return entry, blobs
