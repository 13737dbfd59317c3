"""The tree digest of a writable layer: every change a layer can carry changes it, reading does not."""

from __future__ import annotations

import os

import pytest

from ctr.images.layers import OVERLAY_OPAQUE_XATTR
from ctr.transfer.tree import tree_digest, tree_listing
from tests.unit.transfer.helpers import MTIME_NS, make_upper

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, trusted xattrs)")


def test_digest_sees_every_kind_of_change(tmp_path):
    up = make_upper(tmp_path)
    before = tree_digest(up)
    changes = [
        lambda: os.utime(up / "etc" / "a", ns=(MTIME_NS, MTIME_NS + 1)),
        lambda: os.chmod(up / "etc" / "a", 0o750),
        lambda: os.chown(up / "null", 0, 5),
        lambda: os.setxattr(up / "etc" / "a", "user.note", b"other"),
        lambda: os.removexattr(up / "usr" / "lib", OVERLAY_OPAQUE_XATTR),
        lambda: (up / "big").write_bytes(b"small"),
    ]
    seen = {before}
    for change in changes:
        change()
        digest = tree_digest(up)
        assert digest not in seen
        seen.add(digest)
    atime_only = tree_digest(up)
    os.utime(up / "big", ns=(1, os.stat(up / "big").st_mtime_ns))
    assert tree_digest(up) == atime_only  # reading a file must not change the digest


def test_hard_links_are_one_inode_in_the_listing(tmp_path):
    up = make_upper(tmp_path)
    lines = list(tree_listing(up))
    assert '"etc/sub/a-again" hardlink "etc/a"' in lines
    assert '"etc/deleted" whiteout' in lines
    assert any(line.startswith('"usr/lib" dir opaque') for line in lines)
