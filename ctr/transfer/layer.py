"""A container's writable layer as an OCI layer tar, and back.

The writable layer of every backend is an overlayfs upper directory (native and
lxc: `containers/<name>/upper`; docker: overlay2's UpperDir), in which deletions
are overlayfs whiteouts. write_layer() turns such a directory into an OCI layer
tar, converting whiteouts back into the form the image spec uses:

    0:0 character device NAME             -> empty regular file .wh.NAME
    directory with trusted.overlay.opaque -> the directory, then .wh..wh..opq in it

and unpack_layer() does the reverse, into an (empty) upper directory. Both keep
what a root filesystem needs: content, mode, owner (numeric), mtime and atime to
the nanosecond (PAX records), directories, symlinks, hard links (one inode, as
in the source tree), device nodes, fifos, and extended attributes as PAX
`SCHILY.xattr.*` records (user.*, security.capability, ACLs; overlayfs's own
bookkeeping and SELinux labels, which belong to the host, are not carried).
Sockets cannot be stored in a tar and are skipped, as `docker export` does.

The tree is read by ctr.transfer.tree, whose digest write_layer computes in the
same pass; image layers (lowerdirs) are unpacked by ctr.images.layers instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from typing import IO, BinaryIO

from ctr.errors import CtrError
from ctr.images.layers import (
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    clear_path,
    is_plain_dir,
    member_parts,
    safe_parent,
)
from ctr.images.streams import HashingReader
from ctr.transfer.tree import Listing, carried, open_quietly, storable, walk

PAX_XATTR = "SCHILY.xattr."
_CHUNK = 1 << 20


class _HashingWriter:
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _pax_time(ns: int) -> str:
    sign = "-" if ns < 0 else ""
    sec, frac = divmod(abs(ns), 10**9)
    return f"{sign}{sec}.{frac:09d}"


def _time_ns(member: tarfile.TarInfo, key: str, fallback: float) -> int:
    """A PAX time record to the nanosecond (tarfile's own float keeps only microseconds)."""
    text = member.pax_headers.get(key)
    if text:
        try:
            sign = -1 if text.startswith("-") else 1
            whole, _, frac = text.lstrip("-").partition(".")
            return sign * (int(whole) * 10**9 + int((frac + "000000000")[:9]))
        except ValueError:
            pass
    return int(fallback * 10**9)


def _info(name: str, st: os.stat_result, type_: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid, ti.uname, ti.gname = st.st_uid, st.st_gid, "", ""
    ti.mtime = st.st_mtime_ns // 10**9
    ti.pax_headers = {"mtime": _pax_time(st.st_mtime_ns), "atime": _pax_time(st.st_atime_ns)}
    return ti


@dataclass(frozen=True)
class LayerInfo:
    diff_id: str  # sha256 of the tar stream
    size: int
    tree_digest: str  # tree_digest() of the directory, as it was read for this layer


def write_layer(root: str | os.PathLike, out: BinaryIO, overlay: bool = True) -> LayerInfo:
    """Write the directory `root` as an uncompressed OCI layer tar to `out`.

    With `overlay`, `root` is an overlayfs upper directory and its whiteouts become
    `.wh.` entries; without, it is a plain root filesystem, copied as it is. The tree
    digest is computed in the same pass, so it describes exactly what was written.
    """
    writer = _HashingWriter(out)
    digest = hashlib.sha256()
    listing = Listing()

    def emit(line: str) -> None:
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")

    with tarfile.open(
        fileobj=writer,
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",  # type: ignore[call-overload]
        errors="surrogateescape",
    ) as tar:
        for e in walk(root, overlay):
            if not storable(e):
                continue
            st, name = e.st, e.rel or "."
            if e.overlay == "whiteout":
                parent, _, base = e.rel.rpartition("/")
                ti = _info((parent + "/" if parent else "") + WHITEOUT_PREFIX + base, st, tarfile.REGTYPE)
                ti.mode = 0o600  # as Docker's overlay2 writes one
                tar.addfile(ti)
                emit(listing.add(e))  # type: ignore[arg-type]
                continue
            first = listing.link_target(e)
            if first is not None:
                ti = _info(name, st, tarfile.LNKTYPE)
                ti.linkname = first
                tar.addfile(ti)
                emit(listing.add(e))  # type: ignore[arg-type]
                continue
            if stat.S_ISDIR(st.st_mode):
                ti = _info(name, st, tarfile.DIRTYPE)
            elif stat.S_ISREG(st.st_mode):
                ti = _info(name, st, tarfile.REGTYPE)
                ti.size = st.st_size
            elif stat.S_ISLNK(st.st_mode):
                ti = _info(name, st, tarfile.SYMTYPE)
                ti.linkname = os.readlink(e.path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti = _info(name, st, tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE)
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:
                ti = _info(name, st, tarfile.FIFOTYPE)
            for k, v in e.xattrs.items():
                ti.pax_headers[PAX_XATTR + k] = v.decode("utf-8", "surrogateescape")
            line = listing.add(e)
            if line is None:  # a regular file: hashed as it is archived
                fd = open_quietly(e.path)
                with os.fdopen(fd, "rb") as f:
                    tar.addfile(ti, _Checked(f, e.path, st.st_size, listing))
                line = listing.finish()
            else:
                tar.addfile(ti)
            emit(line)
            if e.overlay == "opaque":
                # Docker's form: an empty file inheriting the directory's permissions and owner.
                wo = _info(f"{name}/{WHITEOUT_OPAQUE}", st, tarfile.REGTYPE)
                wo.mode = stat.S_IMODE(st.st_mode) & 0o777
                tar.addfile(wo)
    writer.flush()
    return LayerInfo(writer.digest, writer.size, "sha256:" + digest.hexdigest())


class _Checked:
    """A file being archived: fed to the listing, and refused if it changed size meanwhile."""

    def __init__(self, f: IO[bytes], path: str, size: int, listing: Listing) -> None:
        self.f, self.path, self.size, self.listing, self.got = f, path, size, listing, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.got += len(data)
        if self.got > self.size or (not data and n and self.got < self.size):
            raise CtrError(f"{self.path} changed while its layer was written: stop the container first")
        self.listing.feed(data)
        return data


def layer_names(src: IO[bytes]) -> set[str]:
    """The relative paths a layer tar puts in an upper directory (whiteouts as the name
    they hide), and '' for its root."""
    names = {""}
    with tarfile.open(fileobj=src, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:  # type: ignore[call-overload]
        for member in tar:
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if parts and parts[-1] == WHITEOUT_OPAQUE:
                parts = parts[:-1]
            elif parts and parts[-1].startswith(WHITEOUT_PREFIX):
                parts[-1] = parts[-1][len(WHITEOUT_PREFIX) :]
            for i in range(1, len(parts) + 1):
                names.add("/".join(parts[:i]))
    return names


# --- unpacking a layer ------------------------------------------------------------------


def unpack_layer(src: IO[bytes], dest: str | os.PathLike, *, layer: str = "") -> str:
    """Unpack an uncompressed layer tar into the overlay upper directory `dest`; returns its diff_id.

    The counterpart of write_layer, stricter than images.layers.extract_layer about what
    must survive: xattrs, nanosecond times, atimes. `.wh.NAME` becomes a 0:0
    character device, `.wh..wh..opq` the opaque xattr; names are checked as
    extract_layer checks them (no absolute paths, no '..', nothing through a symlink).
    """
    root = os.fspath(dest)
    layer = layer or root
    reader = HashingReader(src)
    dirs: list[tuple[list[str], tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape")  # type: ignore[call-overload]
    except tarfile.ReadError as exc:
        raise CtrError(f"layer {layer} is not a tar archive: {exc}") from None
    with tar:
        for member in tar:
            parts = member_parts(member.name, layer)
            if not parts:
                if not member.isdir():
                    raise CtrError(f"unsafe layer {layer}: the root entry {member.name!r} is not a directory")
                os.chown(root, member.uid, member.gid)
                _set_xattrs(root, member, layer)
                dirs.append((parts, member))
                continue
            if _unpack_whiteout(member, parts, root, layer):
                continue
            path = os.path.join(safe_parent(root, parts, layer, create=True), parts[-1])
            clear_path(path, keep_dir=member.isdir())
            if member.isdir():
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
                os.chown(path, member.uid, member.gid)
                _set_xattrs(path, member, layer)
                dirs.append((parts, member))
            elif _unpack_entry(tar, member, path, root, layer):
                _set_metadata(path, member, layer)
        reader.drain()
    # Deepest first, so a directory's time is not changed again by its children.
    for parts, member in sorted(dirs, key=lambda d: len(d[0]), reverse=True):
        if is_plain_dir(root, parts):
            path = os.path.join(root, *parts)
            os.chmod(path, member.mode & 0o7777)
            os.utime(path, ns=(_time_ns(member, "atime", member.mtime), _time_ns(member, "mtime", member.mtime)))
    return reader.digest


def _unpack_whiteout(member: tarfile.TarInfo, parts: list[str], root: str, layer: str) -> bool:
    """Make the overlayfs form of a whiteout member (`.wh.NAME`, `.wh..wh..opq`); False if it is none."""
    base = parts[-1]
    if base == WHITEOUT_OPAQUE:
        parent = safe_parent(root, parts, layer, create=True)
        os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
        return True
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return True  # aufs bookkeeping
    if not base.startswith(WHITEOUT_PREFIX):
        return False
    name = base[len(WHITEOUT_PREFIX) :]
    if name in ("", ".", ".."):
        raise CtrError(f"unsafe layer {layer}: bad whiteout {member.name!r}")
    path = os.path.join(safe_parent(root, parts, layer, create=True), name)
    clear_path(path, keep_dir=False)
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))  # mode 0, as the kernel makes them
    return True


def _unpack_entry(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, root: str, layer: str) -> bool:
    """Create the non-directory `member` at `path`; False for a hard link, whose shared
    inode keeps the metadata of its first name."""
    if member.islnk():
        target_parts = member_parts(member.linkname, layer, "hard link target")
        if not target_parts:
            raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} points at the root")
        target = os.path.join(safe_parent(root, target_parts, layer, create=False), target_parts[-1])
        if not os.path.lexists(target) or (os.path.isdir(target) and not os.path.islink(target)):
            raise CtrError(
                f"unsafe layer {layer}: hard link {member.name!r} -> {member.linkname!r}: no such file in the layer"
            )
        os.link(target, path, follow_symlinks=False)
        return False
    if member.issym():
        os.symlink(member.linkname, path)
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, 0o600 | kind, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    elif member.isreg() or member.type not in tarfile.SUPPORTED_TYPES:
        data = tar.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            if data is not None:
                while chunk := data.read(_CHUNK):
                    out.write(chunk)
    else:
        raise CtrError(f"layer {layer}: {member.name!r} has the unsupported tar type {member.type!r}")
    return True


def _set_metadata(path: str, member: tarfile.TarInfo, layer: str) -> None:
    """Owner, mode, xattrs and both times of a non-directory, never following a symlink."""
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)  # after chown, which clears set-id bits
    _set_xattrs(path, member, layer)  # after chown, which clears security.capability
    os.utime(
        path,
        ns=(_time_ns(member, "atime", member.mtime), _time_ns(member, "mtime", member.mtime)),
        follow_symlinks=False,
    )


def _set_xattrs(path: str, member: tarfile.TarInfo, layer: str) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith(PAX_XATTR):
            continue
        name = key[len(PAX_XATTR) :]
        if not carried(name):  # overlayfs's own (they could redirect lookups), host labels
            continue
        try:
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as exc:
            raise CtrError(f"cannot unpack layer {layer}: xattr {name} on {member.name!r}: {exc.strerror}") from None
