"""An overlay upper directory with one of everything a container leaves behind, for the transfer tests."""

from __future__ import annotations

import io
import os
import socket
import stat
from pathlib import Path

from ctr.images.layers import OVERLAY_OPAQUE_XATTR
from ctr.transfer.layer import write_layer

MTIME_NS = 1_577_934_245_123_456_789  # 2020-01-02T03:04:05.123456789Z


def make_upper(root: Path) -> Path:
    """An overlay upper directory with one of everything a container leaves behind."""
    up = root / "upper"
    (up / "etc" / "sub").mkdir(parents=True)
    (up / "etc" / "a").write_bytes(b"hello\n")
    os.chown(up / "etc" / "a", 1000, 1001)
    os.chmod(up / "etc" / "a", 0o4750)
    os.setxattr(up / "etc" / "a", "user.note", b"bin\xffary")
    os.link(up / "etc" / "a", up / "etc" / "sub" / "a-again")  # a hard link across directories
    os.utime(up / "etc" / "a", ns=(MTIME_NS, MTIME_NS))
    os.mknod(up / "etc" / "deleted", stat.S_IFCHR, os.makedev(0, 0))  # whiteout
    (up / "usr" / "lib").mkdir(parents=True)
    os.setxattr(up / "usr" / "lib", OVERLAY_OPAQUE_XATTR, b"y")  # opaque: the image's /usr/lib is hidden
    (up / "usr" / "lib" / "new.so").write_bytes(b"\x7fELF")
    os.symlink("../etc/a", up / "usr" / "link")
    os.symlink("/nowhere", up / "dangling")
    os.mkfifo(up / "fifo")
    os.mknod(up / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (up / "name with spaces").write_text("x")
    (up / os.fsdecode(b"latin1-\xe9")).write_text("y")
    big = up / "big"
    big.write_bytes(os.urandom(3 << 20))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(up / "sock"))  # no tar form: left out, by the digest too
    sock.close()
    os.utime(up / "etc", ns=(MTIME_NS, MTIME_NS + 1))
    return up


def layer_of(up: Path):
    buf = io.BytesIO()
    info = write_layer(up, buf)
    return info, buf.getvalue()
