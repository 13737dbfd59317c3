"""The writable-layer codec (overlay upper dir <-> OCI layer tar), the tree digest, and
the bundle file: whiteouts, opaque directories, hard links, xattrs, nanosecond times."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from ctr.transfer.bundle import (
    BUNDLE_FILE,
    Bundle,
    BundleInfo,
    tree_digest,
    tree_listing,
    unpack_layer,
    write_bundle,
    write_layer,
)
from ctr.images.layers import OVERLAY_OPAQUE_XATTR, extract_layer, scan_layer
from ctr.errors import CtrError, InvalidSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, trusted xattrs)")

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


def test_layer_uses_the_oci_whiteout_forms(tmp_path):
    info, data = layer_of(make_upper(tmp_path))
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(data))}
    assert members["etc/.wh.deleted"].isreg() and members["etc/.wh.deleted"].size == 0
    assert "etc/deleted" not in members
    assert members["usr/lib/.wh..wh..opq"].isreg()
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in members.values() for k in m.pax_headers)
    assert members["etc/sub/a-again"].islnk() and members["etc/sub/a-again"].linkname == "etc/a"
    a = members["etc/a"]
    assert (a.uid, a.gid, a.mode) == (1000, 1001, 0o4750)
    assert a.pax_headers["mtime"] == "1577934245.123456789"
    assert a.pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == b"bin\xffary"
    assert members["null"].ischr() and (members["null"].devmajor, members["null"].devminor) == (1, 3)
    assert members["fifo"].isfifo()
    assert "sock" not in members
    assert info.diff_id.startswith("sha256:") and info.size == len(data)


def test_round_trip_keeps_everything(tmp_path):
    up = make_upper(tmp_path)
    info, data = layer_of(up)
    out = tmp_path / "out"
    out.mkdir()
    assert unpack_layer(io.BytesIO(data), out) == info.diff_id
    assert tree_digest(out) == tree_digest(up) == info.tree_digest
    st = os.lstat(out / "etc" / "deleted")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(out / "usr" / "lib", OVERLAY_OPAQUE_XATTR) == b"y"
    assert os.stat(out / "etc" / "a").st_ino == os.stat(out / "etc" / "sub" / "a-again").st_ino
    assert os.getxattr(out / "etc" / "a", "user.note") == b"bin\xffary"
    assert os.stat(out / "etc" / "a").st_mtime_ns == MTIME_NS
    assert os.stat(out / "etc").st_mtime_ns == MTIME_NS + 1  # directories' times survive their children
    assert stat.S_IMODE(os.stat(out / "etc" / "a").st_mode) == 0o4750  # set-id kept despite the chown
    assert os.readlink(out / "dangling") == "/nowhere"
    assert (out / os.fsdecode(b"latin1-\xe9")).read_text() == "y"
    assert (out / "big").read_bytes() == (up / "big").read_bytes()
    assert not (out / "sock").exists()


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


def test_layer_is_what_the_image_store_unpacks(tmp_path):
    """A committed layer goes through images.scan_layer and extract_layer: same whiteouts."""
    _, data = layer_of(make_upper(tmp_path))
    assert scan_layer(io.BytesIO(data), layer="t")  # device nodes (whiteouts too) are accepted
    out = tmp_path / "extracted"
    out.mkdir()
    extract_layer(io.BytesIO(data), out)
    assert os.lstat(out / "etc" / "deleted").st_rdev == 0
    assert os.getxattr(out / "usr" / "lib", OVERLAY_OPAQUE_XATTR) == b"y"


def test_unpacks_docker_style_layers(tmp_path):
    """What docker export / docker's overlay2 diff writes: .wh. files in AUFS form."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, type_ in (("etc", tarfile.DIRTYPE), ("etc/.wh.passwd", tarfile.REGTYPE),
                            ("var", tarfile.DIRTYPE), ("var/.wh..wh..opq", tarfile.REGTYPE),
                            ("var/.wh..wh.plnk", tarfile.DIRTYPE)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = type_, 0o755
            tar.addfile(ti)
    out = tmp_path / "up"
    out.mkdir()
    unpack_layer(io.BytesIO(buf.getvalue()), out)
    assert stat.S_ISCHR(os.lstat(out / "etc" / "passwd").st_mode)
    assert os.getxattr(out / "var", OVERLAY_OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(out / "var")) == []


@pytest.mark.parametrize("name,type_,link,message", [
    ("../escape", tarfile.REGTYPE, "", "'..'"),
    ("/abs", tarfile.REGTYPE, "", "absolute"),
    ("hl", tarfile.LNKTYPE, "../../etc/passwd", "'..'"),
])
def test_unpack_refuses_hostile_names(tmp_path, name, type_, link, message):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = type_, link
        tar.addfile(ti)
    (tmp_path / "up").mkdir()
    with pytest.raises(CtrError, match=message):
        unpack_layer(io.BytesIO(buf.getvalue()), tmp_path / "up")


def test_unpack_refuses_paths_through_symlinks(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("etc")
        ti.type, ti.linkname = tarfile.SYMTYPE, str(tmp_path / "host")
        tar.addfile(ti)
        ti = tarfile.TarInfo("etc/passwd")
        tar.addfile(ti, io.BytesIO(b""))
    (tmp_path / "host").mkdir()
    (tmp_path / "up").mkdir()
    with pytest.raises(CtrError, match="symlink"):
        unpack_layer(io.BytesIO(buf.getvalue()), tmp_path / "up")
    assert not (tmp_path / "host" / "passwd").exists()


def test_unpack_never_sets_overlay_attributes_from_the_tar(tmp_path):
    """trusted.overlay.redirect from an untrusted layer could point lookups elsewhere."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("d")
        ti.type = tarfile.DIRTYPE
        ti.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.ok": "1"}
        tar.addfile(ti)
    (tmp_path / "up").mkdir()
    unpack_layer(io.BytesIO(buf.getvalue()), tmp_path / "up")
    assert os.listxattr(tmp_path / "up" / "d") == ["user.ok"]


def test_writing_refuses_redirected_directories(tmp_path):
    up = tmp_path / "up"
    (up / "moved").mkdir(parents=True)
    os.setxattr(up / "moved", "trusted.overlay.redirect", b"/old")
    with pytest.raises(CtrError, match="redirect"):
        write_layer(up, io.BytesIO())


def _info(layer_digest: str, tree: str, included: bool) -> BundleInfo:
    return BundleInfo(
        name="web", backend="native", spec={"image": "busybox:latest", "name": "web", "hostname": "h1"},
        hostname="h1", image={"name": "busybox:latest", "digest": "sha256:" + "a" * 64,
                              "config_digest": "sha256:" + "b" * 64, "included": included},
        layer={"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": 1,
               "tree_digest": tree, "mac": ""},
        container={"id": "c" * 64, "status": "exited", "exit_code": 0}, created="2026-01-01T00:00:00Z")


def test_bundle_round_trip_without_image(tmp_path):
    up = make_upper(tmp_path)
    layer_file = tmp_path / "layer.tar"
    with open(layer_file, "wb") as f:
        info = write_layer(up, f)
    bundle_file = tmp_path / "web.bundle"
    with open(bundle_file, "wb") as f:
        write_bundle(f, _info(info.diff_id, info.tree_digest, False), layer_file, None)
    with tarfile.open(bundle_file) as tar:
        names = tar.getnames()
        assert names[0] == BUNDLE_FILE  # first, so a streaming reader learns what follows
        index = json.load(tar.extractfile("index.json"))
        assert index["manifests"] == []
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    with Bundle(bundle_file) as b:
        assert b.info.name == "web" and b.info.hostname == "h1" and not b.info.image["included"]
        out = tmp_path / "out"
        out.mkdir()
        with b.open_layer() as layer:
            assert unpack_layer(layer, out) == info.diff_id
    assert tree_digest(out) == info.tree_digest


def test_bundle_keeps_an_image_layout(tmp_path):
    """With the image: the members of an OCI layout tar, plus the layer blob and ctr-bundle.json."""
    layer_file = tmp_path / "layer.tar"
    layer_file.write_bytes(b"\0" * 1024)
    image_tar = tmp_path / "image.tar"
    with tarfile.open(image_tar, "w") as tar:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", b'{"manifests":[]}'),
                           ("blobs/sha256/" + "d" * 64, b"blob")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    import hashlib

    digest = "sha256:" + hashlib.sha256(layer_file.read_bytes()).hexdigest()
    buf = io.BytesIO()
    write_bundle(buf, _info(digest, "sha256:" + "e" * 64, True), layer_file, image_tar)
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert names == [BUNDLE_FILE, "oci-layout", "index.json", "blobs/sha256/" + "d" * 64, "blobs/sha256/" + digest[7:]]


def test_an_image_archive_is_not_a_bundle(tmp_path):
    path = tmp_path / "image.tar"
    with tarfile.open(path, "w") as tar:
        ti = tarfile.TarInfo("index.json")
        tar.addfile(ti, io.BytesIO(b""))
    with pytest.raises(InvalidSpec, match="not a ctr bundle"):
        Bundle(path)


def test_a_bundle_of_another_version_is_refused(tmp_path):
    path = tmp_path / "b.tar"
    data = json.dumps({"ctrBundleVersion": 99}).encode()
    with tarfile.open(path, "w") as tar:
        ti = tarfile.TarInfo(BUNDLE_FILE)
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    with pytest.raises(CtrError, match="unsupported ctrBundleVersion 99"):
        Bundle(path)
