"""A container's writable layer as an OCI layer, and the bundle that carries one container.

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

tree_digest() hashes such a directory the same way whichever backend made it, so
a migration can prove the layer arrived unchanged.

The bundle (docs/bundle-format.md) is an OCI image layout tar holding the base
image, the writable layer as one more blob, and `ctr-bundle.json` describing
the container; write_bundle() and read_bundle() make and read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Iterator

from ctr.errors import CtrError, InvalidSpec, NotFound

from ctr.images.layers import OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, HashingReader, clear_path, is_plain_dir, member_parts, safe_parent
from ctr.images.model import MEDIA_LAYER

BUNDLE_FILE = "ctr-bundle.json"
BUNDLE_VERSION = 1
BUNDLE_LIMIT = 4 << 20
PAX_XATTR = "SCHILY.xattr."
_CHUNK = 1 << 20

# overlayfs writes these itself; carrying them would confuse the target's overlay mount.
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# ...except these, which change what the merged view shows and have no tar form.
_OVERLAY_SEMANTIC = ("redirect", "metacopy")
_HOST_XATTRS = ("security.selinux",)


# --- reading a tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One name in a tree walk: its path relative to the root ('' for the root itself)."""

    rel: str
    path: str
    st: os.stat_result
    overlay: str  # 'whiteout', 'opaque' or ''
    xattrs: dict[str, bytes]  # those that travel with it (see _carried)


def _carried(name: str) -> bool:
    """Whether an xattr belongs to the file rather than to overlayfs or the host's policy."""
    return not name.startswith(_OVERLAY_XATTR_PREFIXES) and name not in _HOST_XATTRS


def _entry(rel: str, path: str, st: os.stat_result, overlay: bool) -> Entry:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        names = []  # a filesystem without xattrs
    values: dict[str, bytes] = {}
    for name in sorted(names):
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile
    state = ""
    if overlay:
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return Entry(rel, path, st, "whiteout", {})
        for prefix in _OVERLAY_XATTR_PREFIXES:
            if stat.S_ISDIR(st.st_mode) and values.get(prefix + "opaque") == b"y":
                state = "opaque"
            for kind in _OVERLAY_SEMANTIC:
                if prefix + kind in values:
                    raise CtrError(f"cannot read the writable layer at {path}: it carries the overlayfs attribute "
                                   f"{prefix + kind} (redirect_dir or metacopy is on), which no layer format can hold")
    return Entry(rel, path, st, state, {k: v for k, v in values.items() if _carried(k)})


def walk(root: str | os.PathLike, overlay: bool = True) -> Iterator[Entry]:
    """Every name under `root`, parents before children, siblings sorted by name (bytes order).

    Never follows symlinks and never leaves the root's filesystem (a mount below it
    is not part of the layer). With `overlay`, `root` is an overlayfs upper directory."""
    root = os.fspath(root)
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        raise NotFound(f"writable layer {root} does not exist") from None
    if not stat.S_ISDIR(top.st_mode):
        raise NotFound(f"writable layer {root} is not a directory")

    def visit(rel: str, path: str, st: os.stat_result) -> Iterator[Entry]:
        entry = _entry(rel, path, st, overlay)
        yield entry
        if not stat.S_ISDIR(st.st_mode):
            return
        try:
            fd = _open_quietly(path)
        except FileNotFoundError:
            return
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        finally:
            os.close(fd)
        for raw in names:
            name = os.fsdecode(raw)
            child = os.path.join(path, name)
            try:
                cst = os.lstat(child)
            except FileNotFoundError:
                continue
            if cst.st_dev != top.st_dev:
                continue
            yield from visit(f"{rel}/{name}" if rel else name, child, cst)

    yield from visit("", root, top)


def _open_quietly(path: str) -> int:
    """Open for reading without touching its atime (O_NOATIME: the owner or CAP_FOWNER may),
    so that copying a container leaves even its access times as they were."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        return os.open(path, flags)


class _Listing:
    """The lines of tree_listing(), one entry at a time; a regular file's line is complete
    once its content has been fed (so write_layer reads each file only once)."""

    def __init__(self) -> None:
        self.inodes: dict[tuple[int, int], str] = {}  # first name of each multiply-linked inode
        self.pending: tuple[str, str] | None = None
        self.file_hash = hashlib.sha256()

    def link_target(self, e: Entry) -> str | None:
        """The earlier name of the same inode, when `e` is a further hard link to it."""
        st = e.st
        if e.overlay == "whiteout" or stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
            return None
        return self.inodes.get((st.st_dev, st.st_ino))

    def add(self, e: Entry) -> str | None:
        """The entry's line, or None for a regular file (then feed() its content and finish())."""
        st = e.st
        name = json.dumps(e.rel or ".")
        if e.overlay == "whiteout":
            return f"{name} whiteout"
        first = self.link_target(e)
        if first is not None:
            return f"{name} hardlink {json.dumps(first)}"
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            self.inodes[(st.st_dev, st.st_ino)] = e.rel
        tail = f" {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid} {st.st_mtime_ns}"
        tail += "".join(f" {k}={v.hex()}" for k, v in e.xattrs.items())
        if stat.S_ISDIR(st.st_mode):
            return f"{name} dir" + (" opaque" if e.overlay == "opaque" else "") + tail
        if stat.S_ISREG(st.st_mode):
            self.pending, self.file_hash = (f"{name} file {st.st_size} ", tail), hashlib.sha256()
            return None
        if stat.S_ISLNK(st.st_mode):
            return f"{name} symlink {json.dumps(os.readlink(e.path))}{tail}"
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            kind = "chr" if stat.S_ISCHR(st.st_mode) else "blk"
            return f"{name} {kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}{tail}"
        return f"{name} fifo{tail}"

    def feed(self, data: bytes) -> None:
        self.file_hash.update(data)

    def finish(self) -> str:
        assert self.pending is not None
        head, tail = self.pending
        self.pending = None
        return f"{head}{self.file_hash.hexdigest()}{tail}"


def _storable(e: Entry) -> bool:
    """Sockets have no tar form (docker export skips them too); neither do unknown types."""
    mode = e.st.st_mode
    return e.overlay == "whiteout" or not (stat.S_ISSOCK(mode) or stat.S_IFMT(mode) == 0)


def tree_listing(root: str | os.PathLike, overlay: bool = True, exclude: frozenset[str] = frozenset()) -> Iterator[str]:
    """One line per name: what a layer made of this tree carries, in a fixed order.

    Kept: type, permissions, owner, mtime (ns), content hash, link target, device
    numbers, xattrs, opaque marks, whiteouts and which names share an inode. Left
    out: atime (reading changes it), ctime and inode numbers (nobody can set them),
    sockets (no tar form), a whiteout's own metadata (invisible in the container), and
    the relative paths in `exclude`."""
    listing = _Listing()
    for e in walk(root, overlay):
        if not _storable(e) or e.rel in exclude:
            continue
        line = listing.add(e)
        if line is None:
            fd = _open_quietly(e.path)
            with os.fdopen(fd, "rb") as f:
                while chunk := f.read(_CHUNK):
                    listing.feed(chunk)
            line = listing.finish()
        yield line


def tree_digest(root: str | os.PathLike, overlay: bool = True, exclude: frozenset[str] = frozenset()) -> str:
    """sha256 of tree_listing(): equal for two trees no layer can tell apart."""
    h = hashlib.sha256()
    for line in tree_listing(root, overlay, exclude):
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return "sha256:" + h.hexdigest()


# --- writing a layer --------------------------------------------------------------------


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
    listing = _Listing()

    def emit(line: str) -> None:
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")

    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",  # type: ignore[call-overload]
                      errors="surrogateescape") as tar:
        for e in walk(root, overlay):
            if not _storable(e):
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
                fd = _open_quietly(e.path)
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

    def __init__(self, f: IO[bytes], path: str, size: int, listing: _Listing) -> None:
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
                parts[-1] = parts[-1][len(WHITEOUT_PREFIX):]
            for i in range(1, len(parts) + 1):
                names.add("/".join(parts[:i]))
    return names


# --- unpacking a layer ------------------------------------------------------------------

def unpack_layer(src: IO[bytes], dest: str | os.PathLike, *, layer: str = "") -> str:
    """Unpack an uncompressed layer tar into the overlay upper directory `dest`; returns its diff_id.

    The counterpart of write_layer, stricter than images.extract_layer about what
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
            base = parts[-1]
            if base == WHITEOUT_OPAQUE:
                parent = safe_parent(root, parts, layer, create=True)
                os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
                continue
            if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                continue  # aufs bookkeeping
            if base.startswith(WHITEOUT_PREFIX):
                name = base[len(WHITEOUT_PREFIX):]
                if name in ("", ".", ".."):
                    raise CtrError(f"unsafe layer {layer}: bad whiteout {member.name!r}")
                path = os.path.join(safe_parent(root, parts, layer, create=True), name)
                clear_path(path, keep_dir=False)
                os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))  # mode 0, as the kernel makes them
                continue
            path = os.path.join(safe_parent(root, parts, layer, create=True), base)
            clear_path(path, keep_dir=member.isdir())
            if member.isdir():
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
                os.chown(path, member.uid, member.gid)
                _set_xattrs(path, member, layer)
                dirs.append((parts, member))
                continue
            if member.islnk():
                target_parts = member_parts(member.linkname, layer, "hard link target")
                if not target_parts:
                    raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} points at the root")
                target = os.path.join(safe_parent(root, target_parts, layer, create=False), target_parts[-1])
                if not os.path.lexists(target) or (os.path.isdir(target) and not os.path.islink(target)):
                    raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} -> {member.linkname!r}: "
                                   "no such file in the layer")
                os.link(target, path, follow_symlinks=False)
                continue
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
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
            if not member.issym():
                os.chmod(path, member.mode & 0o7777)  # after chown, which clears set-id bits
            _set_xattrs(path, member, layer)  # after chown, which clears security.capability
            os.utime(path, ns=(_time_ns(member, "atime", member.mtime), _time_ns(member, "mtime", member.mtime)),
                     follow_symlinks=False)
        reader.drain()
    # Deepest first, so a directory's time is not changed again by its children.
    for parts, member in sorted(dirs, key=lambda d: len(d[0]), reverse=True):
        if is_plain_dir(root, parts):
            path = os.path.join(root, *parts)
            os.chmod(path, member.mode & 0o7777)
            os.utime(path, ns=(_time_ns(member, "atime", member.mtime), _time_ns(member, "mtime", member.mtime)))
    return reader.digest


def _set_xattrs(path: str, member: tarfile.TarInfo, layer: str) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith(PAX_XATTR):
            continue
        name = key[len(PAX_XATTR):]
        if not _carried(name):  # overlayfs's own (they could redirect lookups), host labels
            continue
        try:
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as exc:
            raise CtrError(f"cannot unpack layer {layer}: xattr {name} on {member.name!r}: {exc.strerror}") from None


# --- the bundle -------------------------------------------------------------------------


@dataclass
class BundleInfo:
    """What ctr-bundle.json says (docs/bundle-format.md)."""

    name: str
    backend: str
    spec: dict
    hostname: str
    image: dict  # name, digest, config_digest, included
    layer: dict  # mediaType, digest, size, tree_digest
    container: dict = field(default_factory=dict)  # id, created, status, exit_code of the source
    created: str = ""
    version: int = BUNDLE_VERSION

    def to_json(self) -> dict:
        return {
            "ctrBundleVersion": self.version,
            "created": self.created,
            "name": self.name,
            "backend": self.backend,
            "hostname": self.hostname,
            "spec": self.spec,
            "image": self.image,
            "layer": self.layer,
            "container": self.container,
        }

    @classmethod
    def from_json(cls, doc: dict, what: str) -> "BundleInfo":
        version = doc.get("ctrBundleVersion")
        if version != BUNDLE_VERSION:
            raise CtrError(f"bundle {what}: unsupported ctrBundleVersion {version!r} (this ctr reads {BUNDLE_VERSION})")
        try:
            info = cls(name=str(doc["name"]), backend=str(doc.get("backend", "")), spec=dict(doc["spec"]),
                       hostname=str(doc.get("hostname") or ""), image=dict(doc["image"]), layer=dict(doc["layer"]),
                       container=dict(doc.get("container") or {}), created=str(doc.get("created") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise CtrError(f"bundle {what}: {BUNDLE_FILE} is malformed: {exc}") from None
        for key in ("digest", "tree_digest"):
            if not isinstance(info.layer.get(key), str) or not info.layer[key].startswith("sha256:"):
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} has no valid layer.{key}")
        return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
    tar.addfile(ti, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(ti)


def write_bundle(out: BinaryIO, info: BundleInfo, layer_file: str | os.PathLike, image_tar: str | os.PathLike | None) -> None:
    """Write a bundle to `out` (may be a pipe): ctr-bundle.json first, so a reader learns
    what it holds before the big parts; then the OCI layout (when the image is included)
    and the writable layer as blobs/sha256/<digest>."""
    from ctr.images.reference import hex_digest

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, BUNDLE_FILE, json.dumps(info.to_json(), indent=1, sort_keys=True).encode() + b"\n")
        names: set[str] = set()
        if image_tar is not None:
            with tarfile.open(image_tar, mode="r:") as src:
                for member in src:
                    names.add(member.name)
                    tar.addfile(member, src.extractfile(member) if member.isfile() else None)
        else:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "mediaType":
                       "application/vnd.oci.image.index.v1+json", "manifests": []}).encode())
            _add_dir(tar, "blobs")
            _add_dir(tar, "blobs/sha256")
        blob = f"blobs/sha256/{hex_digest(info.layer['digest'])}"
        if blob not in names:  # an empty layer may equal a layer of the image
            ti = tarfile.TarInfo(blob)
            ti.size, ti.mode, ti.mtime = os.path.getsize(layer_file), 0o644, 0
            with open(layer_file, "rb") as f:
                tar.addfile(ti, f)


class Bundle:
    """An open bundle file: its description, and its writable layer to read."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        what = str(path)
        try:
            self.tar = tarfile.open(self.path, mode="r:")
        except FileNotFoundError:
            raise NotFound(f"no such bundle: {path}") from None
        except (tarfile.TarError, OSError) as exc:
            raise CtrError(f"{path} is not a ctr bundle (not a plain tar archive): {exc}") from None
        try:
            members = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}
            meta = members.get(BUNDLE_FILE)
            if meta is None or not meta.isreg():
                raise InvalidSpec(f"{path} is not a ctr bundle: it has no {BUNDLE_FILE} (an image archive? "
                                  "use ctr image import)")
            if meta.size > BUNDLE_LIMIT:
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} is larger than {BUNDLE_LIMIT} bytes")
            try:
                doc = json.loads(self.tar.extractfile(meta).read())  # type: ignore[union-attr]
            except ValueError as exc:
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} is not valid JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} is not a JSON object")
            self.info = BundleInfo.from_json(doc, what)
            from ctr.images.reference import hex_digest

            self.layer_member = members.get(f"blobs/sha256/{hex_digest(self.info.layer['digest'])}")
            if self.layer_member is None or not self.layer_member.isreg():
                raise CtrError(f"bundle {what}: the writable layer blob {self.info.layer['digest']} is missing")
        except BaseException:
            self.tar.close()
            raise

    def open_layer(self) -> IO[bytes]:
        return self.tar.extractfile(self.layer_member)  # type: ignore[return-value]

    def close(self) -> None:
        self.tar.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BUNDLE_FILE", "Bundle", "BundleInfo", "LayerInfo", "MEDIA_LAYER", "layer_names", "tree_digest", "tree_listing",
           "unpack_layer", "walk", "write_bundle", "write_layer"]
