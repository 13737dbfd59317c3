"""The writable-layer codec: OCI whiteout forms, lossless round trips, what the image store
unpacks the same way, hostile names refused, overlayfs's own attributes never carried."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from ctr.errors import CtrError
from ctr.images.layers import OVERLAY_OPAQUE_XATTR, extract_layer, scan_layer
from ctr.transfer.layer import unpack_layer, write_layer
from ctr.transfer.tree import tree_digest
from tests.unit.transfer.helpers import MTIME_NS, layer_of, make_upper

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, trusted xattrs)")


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
        for name, type_ in (
            ("etc", tarfile.DIRTYPE),
            ("etc/.wh.passwd", tarfile.REGTYPE),
            ("var", tarfile.DIRTYPE),
            ("var/.wh..wh..opq", tarfile.REGTYPE),
            ("var/.wh..wh.plnk", tarfile.DIRTYPE),
        ):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = type_, 0o755
            tar.addfile(ti)
    out = tmp_path / "up"
    out.mkdir()
    unpack_layer(io.BytesIO(buf.getvalue()), out)
    assert stat.S_ISCHR(os.lstat(out / "etc" / "passwd").st_mode)
    assert os.getxattr(out / "var", OVERLAY_OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(out / "var")) == []


@pytest.mark.parametrize(
    "name,type_,link,message",
    [
        ("../escape", tarfile.REGTYPE, "", "'..'"),
        ("/abs", tarfile.REGTYPE, "", "absolute"),
        ("hl", tarfile.LNKTYPE, "../../etc/passwd", "'..'"),
    ],
)
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
