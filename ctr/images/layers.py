"""Image layers as tars: opening a layer blob (compression sniffed), checking an
untrusted layer (scan_layer), and unpacking one safely for overlayfs
(extract_layer): no member leaves the layer, whiteouts become overlayfs's.

The member checks (member_parts, safe_parent, ...) are shared with the writable
layer codec of ctr.transfer.layer.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ctr.errors import CtrError, NotFound
from ctr.images.streams import CHUNK, FileHasher, HashingReader, ReadAhead

if TYPE_CHECKING:
    import tarfile

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"


def sniff_compression(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return ""


ZSTD_HINT = "pip install zstandard (or ctr[zstd])"


def decompressed(f: IO[bytes], kind: str, what: str) -> IO[bytes]:
    """A reader of the uncompressed bytes of `f`, compressed as `kind` ('', 'gzip', 'zstd').

    zstd needs the optional `zstandard` package, imported only here.
    """
    import gzip

    if kind == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise CtrError(f"{what} is zstd-compressed, which needs the zstandard package: {ZSTD_HINT}") from None
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
    return f


@contextmanager
def open_layer(path: Path, what: str) -> Iterator[tuple[HashingReader, HashingReader]]:
    """Open a layer blob; yields (blob reader, uncompressed tar reader), both hashing.

    Compression is sniffed from the content, so a `+gzip` layer works whatever
    media type it was filed under.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"layer blob {path} of {what} is missing: remove the image and re-create it") from None
    with f:
        kind = sniff_compression(f.read(4))
        f.seek(0)
        blob = HashingReader(f)
        if kind:
            with decompressed(blob, kind, f"layer {path.name} of {what}") as plain:  # type: ignore[arg-type]
                yield blob, HashingReader(plain)
        else:
            yield blob, blob


# --- safe layer extraction --------------------------------------------------------------


def member_parts(name: str, layer: str, kind: str = "member") -> list[str]:
    """A tar member name as path components, refusing anything that leaves the layer."""
    if name.startswith("/"):
        raise CtrError(f"unsafe layer {layer}: {kind} {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CtrError(f"unsafe layer {layer}: {kind} {name!r} has a '..' component")
    return parts


def safe_parent(root: str, parts: list[str], layer: str, create: bool) -> str:
    """The directory that will hold parts[-1], checking that no component is a symlink.

    Without this, a symlink `etc -> /etc` followed by `etc/passwd` would write the
    host's file. Missing directories are created (0755, as tar does) if `create`.
    """
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise CtrError(f"unsafe layer {layer}: {'/'.join(parts)!r} refers to a missing path") from None
            os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise CtrError(f"unsafe layer {layer}: {'/'.join(parts)!r} goes through the symlink {part!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise CtrError(f"unsafe layer {layer}: {'/'.join(parts)!r} goes through the non-directory {part!r}")
    return path


def is_plain_dir(root: str, parts: list[str]) -> bool:
    """Whether root/parts is a directory reached through directories only (no symlinks)."""
    path = root
    for part in parts:
        path = os.path.join(path, part)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def _ns(mtime: float) -> tuple[int, int]:
    return (int(mtime * 10**9),) * 2


def clear_path(path: str, keep_dir: bool) -> None:
    """Remove what is at `path` (a later tar member replaces an earlier one), never following links."""
    import shutil

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(path)
    else:
        os.unlink(path)


def extract_layer(fileobj: IO[bytes], dest: str | os.PathLike, *, layer: str = "") -> str:
    """Unpack one uncompressed layer tar into the empty directory `dest`, for overlayfs.

    Returns the sha256 digest of the tar stream (the layer's diff_id). Refuses
    absolute names, '..' components, and paths or hard links that go through a
    symlink; symlinks themselves are created as they are (their targets are only
    resolved inside the container). Whiteouts become what overlayfs expects:
    `.wh.NAME` a 0:0 character device NAME, `.wh..wh..opq` the xattr
    trusted.overlay.opaque=y on its directory. Owners and device nodes need root;
    without it owners are left alone and device nodes skipped, with one warning
    line that gives their count.

    A tar read straight from a file (an uncompressed blob in the store) is read
    seekably rather than streamed, which makes the unpack about as fast as tar -x:
    member data goes from file to file in the kernel while a second thread hashes
    the file (FileHasher). Any other stream is read, decompressed if it is a
    decompressor, and hashed in a second thread (ReadAhead).
    """
    root = os.fspath(dest)
    layer = layer or root
    src = _plain_file(fileobj)
    if src is None:
        reader = ReadAhead(fileobj)
        try:
            skipped = _extract_members(reader, "r|", root, layer, None)  # type: ignore[arg-type]
            digest = reader.digest()
        finally:
            reader.stop()
    else:
        hasher = FileHasher(src, fileobj.tell(), layer)
        try:
            skipped = _extract_members(fileobj, "r:", root, layer, src)
            digest = hasher.digest()
        finally:
            hasher.stop()
    if skipped:
        _warn(
            f"layer {layer}: skipped {skipped} device node{'s' if skipped != 1 else ''}: "
            "creating them needs CAP_MKNOD (rootless Docker and Podman skip them too)"
        )
    return digest


def _warn(line: str) -> None:
    """One line on stderr: what a library call did that the user should know of."""
    import sys

    print(f"ctr: warning: {line}", file=sys.stderr, flush=True)


def _plain_file(fileobj: IO[bytes]) -> int | None:
    """The descriptor of the regular file `fileobj` reads as it is, or None (a stream, a decompressor).

    Checked by type: a GzipFile, say, has a fileno() too, but it is the compressed file's.
    """
    import io

    raw = fileobj.raw if isinstance(fileobj, io.BufferedReader) else fileobj
    if isinstance(raw, io.FileIO) and stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
        return raw.fileno()
    return None


def _copy_range(src: int, dst: int, offset: int, size: int) -> int:
    """Copy `size` bytes at `offset` of file `src` to the file `dst`; returns how many (fewer at its end).

    sendfile copies in the kernel, page cache to page cache, without Python
    buffers; a file system that cannot splice gets the user-space copy, as in
    BackgroundCopy.
    """
    copied = 0
    try:
        while copied < size and (n := os.sendfile(dst, src, offset + copied, size - copied)):
            copied += n
    except OSError:
        while copied < size and (data := os.pread(src, min(size - copied, CHUNK), offset + copied)):
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view) :]
            copied += len(data)
    return copied


def _extract_members(fileobj: IO[bytes], mode: str, root: str, layer: str, src: int | None) -> int:
    """extract_layer's checks and writes, member by member, for the tar in `fileobj`;
    returns how many device nodes it could not create (no CAP_MKNOD) and skipped.

    Streamed (mode 'r|'), or seekable ('r:') with `src` its descriptor: then member
    data is copied from there by the kernel instead of read through tarfile.
    """
    import tarfile

    is_root = os.geteuid() == 0
    skipped = 0
    dirs: list[tuple[list[str], tarfile.TarInfo]] = []  # modes and mtimes applied last
    try:
        tar = tarfile.open(fileobj=fileobj, mode=mode)  # type: ignore[call-overload]
    except tarfile.ReadError as exc:
        raise CtrError(f"layer {layer} is not a tar archive: {exc}") from None
    with tar:
        for member in tar:
            parts = member_parts(member.name, layer)
            if not parts:  # "./": the layer's root directory itself
                if not member.isdir():
                    raise CtrError(f"unsafe layer {layer}: the root entry {member.name!r} is not a directory")
                if is_root:
                    os.chown(root, member.uid, member.gid)
                dirs.append((parts, member))
                continue
            if _extract_whiteout(member, parts, root, layer):
                continue
            path = os.path.join(safe_parent(root, parts, layer, create=True), parts[-1])
            clear_path(path, keep_dir=member.isdir())
            if member.isdir():
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)  # real mode set at the end, once children are written
                dirs.append((parts, member))
                if is_root:
                    os.chown(path, member.uid, member.gid)
                continue
            made = _extract_entry(tar, member, path, root, layer, src)
            if made == _SKIPPED:
                skipped += 1
            elif made == _MADE:
                _set_metadata(path, member, is_root)
    _set_dir_metadata(root, dirs)
    return skipped


def _extract_whiteout(member: tarfile.TarInfo, parts: list[str], root: str, layer: str) -> bool:
    """Make the overlayfs form of a whiteout member (`.wh.NAME`, `.wh..wh..opq`); False if it is none."""
    base = parts[-1]
    if base == WHITEOUT_OPAQUE:
        parent = safe_parent(root, parts, layer, create=True)
        try:
            os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
        except OSError as exc:  # EPERM without root, ENOTSUP on a filesystem without xattrs
            raise CtrError(
                f"cannot unpack layer {layer}: opaque whiteout {member.name!r} needs the xattr "
                f"{OVERLAY_OPAQUE_XATTR} on {parent}: {exc.strerror}"
            ) from None
        return True
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return True  # aufs bookkeeping (.wh..wh.plnk and the like): nothing to represent
    if not base.startswith(WHITEOUT_PREFIX):
        return False
    name = base[len(WHITEOUT_PREFIX) :]
    if name in ("", ".", ".."):
        raise CtrError(f"unsafe layer {layer}: bad whiteout {member.name!r}")
    path = os.path.join(safe_parent(root, parts, layer, create=True), name)
    clear_path(path, keep_dir=False)
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    except PermissionError:
        raise CtrError(f"cannot unpack layer {layer}: whiteout {member.name!r} needs root (mknod)") from None
    return True


_MADE, _LINKED, _SKIPPED = "made", "linked", "skipped"


def _extract_entry(
    tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, root: str, layer: str, src: int | None
) -> str:
    """Create the non-directory `member` at `path`: _MADE (its metadata still to set), _LINKED
    (a hard link, whose shared inode keeps the metadata of its first name) or _SKIPPED (a
    device node without CAP_MKNOD)."""
    import shutil

    if member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target_parts = member_parts(member.linkname, layer, "hard link target")
        if not target_parts:
            raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} points at the root")
        target = os.path.join(safe_parent(root, target_parts, layer, create=False), target_parts[-1])
        if not os.path.lexists(target) or os.path.isdir(target) and not os.path.islink(target):
            raise CtrError(
                f"unsafe layer {layer}: hard link {member.name!r} -> {member.linkname!r}: no such file in the layer"
            )
        os.link(target, path, follow_symlinks=False)  # links a symlink itself, never its target
        return _LINKED
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(path, 0o600 | kind, os.makedev(member.devmajor, member.devminor))
        except PermissionError:  # not root, or root of a user namespace
            return _SKIPPED
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:  # regular file (tarfile reads unknown types as regular files too)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if src is None or member.sparse is not None:  # streamed, or scattered data tarfile reassembles
                with open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(tar.extractfile(member), out, CHUNK)  # type: ignore[misc]
            elif _copy_range(src, fd, member.offset_data, member.size) < member.size:
                raise CtrError(f"layer {layer} is corrupt or truncated: the data of {member.name!r} ends early")
        finally:
            os.close(fd)
    return _MADE


def _set_metadata(path: str, member: tarfile.TarInfo, is_root: bool) -> None:
    """Owner (as root), mode and mtime of a non-directory, never following a symlink."""
    if is_root:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)  # after chown, which clears set-id bits
    os.utime(path, ns=_ns(member.mtime), follow_symlinks=False)


def _set_dir_metadata(root: str, dirs: list[tuple[list[str], tarfile.TarInfo]]) -> None:
    """Modes and mtimes of the unpacked directories, once their children are written."""
    # Deepest first, so setting a directory's mtime is not undone by its children. A later
    # member may have replaced the directory or a parent with a symlink: re-check the path.
    for parts, member in sorted(dirs, key=lambda d: len(d[0]), reverse=True):
        if is_plain_dir(root, parts):
            path = os.path.join(root, *parts)
            os.chmod(path, member.mode & 0o7777)
            os.utime(path, ns=_ns(member.mtime))


def scan_layer(fileobj: IO[bytes], *, layer: str) -> str:
    """Check an untrusted uncompressed layer tar without unpacking it; returns its diff_id.

    Done when an image comes in (import, pull), so a hostile archive is refused
    before anything is stored, with the member named. Refused: absolute names
    and '..' components; members that go through a symlink of the same layer;
    hard links whose target leaves the layer; symlinks whose relative target
    climbs above the layer root (absolute targets are kept: the container
    resolves them inside its own root, as /bin/sh -> /bin/busybox wants);
    tar types other than files, directories, links, fifos and device nodes.
    Device nodes are accepted, as Docker accepts them: what keeps a container
    from using a host device through one is the device cgroup every backend
    sets up (ctr.native.devices), and /dev is each backend's own tmpfs.
    extract_layer repeats the path checks at unpack time, since blobs can also
    come from create().
    """
    reader = HashingReader(fileobj)
    with corrupt_layer(layer):
        check_members(reader, "r|", layer)  # type: ignore[arg-type]
        reader.drain()  # the diff_id covers the end-of-archive blocks too
    return reader.digest


@contextmanager
def corrupt_layer(layer: str) -> Iterator[None]:
    """Any error but ours reading a layer (tarfile, gzip, zlib, zstandard, EOFError) as one clear CtrError."""
    try:
        yield
    except CtrError:
        raise
    except Exception as exc:
        raise CtrError(f"layer {layer} is corrupt or truncated: {describe_error(exc)}") from None


def check_members(fileobj: IO[bytes], mode: str, layer: str) -> None:
    """scan_layer's rules, applied to every member of the tar in `fileobj` (mode 'r|' streamed, 'r:' seekable)."""
    import tarfile

    symlinks: set[str] = set()
    with tarfile.open(fileobj=fileobj, mode=mode) as tar:  # type: ignore[call-overload]
        for member in tar:
            parts = member_parts(member.name, layer)
            path = "/".join(parts)
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in symlinks:
                    raise CtrError(f"unsafe layer {layer}: {member.name!r} goes through the symlink {parts[i - 1]!r}")
            if member.issym():
                target = member.linkname
                if not target:
                    raise CtrError(f"unsafe layer {layer}: symlink {member.name!r} has an empty target")
                if not target.startswith("/"):
                    depth = len(parts) - 1
                    for comp in target.split("/"):
                        depth += -1 if comp == ".." else 0 if comp in ("", ".") else 1
                        if depth < 0:
                            raise CtrError(
                                f"unsafe layer {layer}: symlink {member.name!r} -> {target!r} "
                                "leads outside the image root"
                            )
                symlinks.add(path)
                continue
            symlinks.discard(path)
            if member.islnk():
                target_parts = member_parts(member.linkname, layer, "hard link target")
                if not target_parts:
                    raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} points at the root")
                for i in range(1, len(target_parts)):
                    if "/".join(target_parts[:i]) in symlinks:
                        raise CtrError(
                            f"unsafe layer {layer}: hard link {member.name!r} -> {member.linkname!r} "
                            f"goes through the symlink {target_parts[i - 1]!r}"
                        )
            elif not (member.isreg() or member.isdir() or member.isfifo() or member.ischr() or member.isblk()):
                raise CtrError(f"unsafe layer {layer}: {member.name!r} has the unknown tar type {member.type!r}")


def unreadable_layer_errors() -> tuple[type[BaseException], ...]:
    """What reading a broken layer raises: the tar reader's and the decompressors' errors.
    Not OSError at large: a full disk while unpacking is not a corrupt layer."""
    import gzip
    import tarfile
    import zlib

    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]
