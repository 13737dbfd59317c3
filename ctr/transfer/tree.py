"""Reading a container's writable layer (an overlayfs upper directory) or a root
filesystem as a tree: walk() in a fixed order, and tree_listing()/tree_digest(), which
describe it the same way whichever backend made it, so a migration can prove the layer
arrived unchanged. Which xattrs travel with a file (carried()) is decided here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ctr.errors import CtrError, NotFound

_CHUNK = 1 << 20

# overlayfs writes these itself; carrying them would confuse the target's overlay mount.
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# ...except these, which change what the merged view shows and have no tar form.
_OVERLAY_SEMANTIC = ("redirect", "metacopy")
_HOST_XATTRS = ("security.selinux",)


@dataclass(frozen=True)
class Entry:
    """One name in a tree walk: its path relative to the root ('' for the root itself)."""

    rel: str
    path: str
    st: os.stat_result
    overlay: str  # 'whiteout', 'opaque' or ''
    xattrs: dict[str, bytes]  # those that travel with it (see carried)


def carried(name: str) -> bool:
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
                    raise CtrError(
                        f"cannot read the writable layer at {path}: it carries the overlayfs attribute "
                        f"{prefix + kind} (redirect_dir or metacopy is on), which no layer format can hold"
                    )
    return Entry(rel, path, st, state, {k: v for k, v in values.items() if carried(k)})


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
            fd = open_quietly(path)
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


def open_quietly(path: str) -> int:
    """Open for reading without touching its atime (O_NOATIME: the owner or CAP_FOWNER may),
    so that copying a container leaves even its access times as they were."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        return os.open(path, flags)


class Listing:
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


def storable(e: Entry) -> bool:
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
    listing = Listing()
    for e in walk(root, overlay):
        if not storable(e) or e.rel in exclude:
            continue
        line = listing.add(e)
        if line is None:
            fd = open_quietly(e.path)
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
