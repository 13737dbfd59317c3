"""Safe layer unpacking: streamed or from a file, hostile archives, links, metadata, whiteouts."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from ctr.errors import CtrError
from ctr.images import layers
from ctr.images.layers import extract_layer
from ctr.images.store import ImageStore
from ctr.state.paths import Paths
from tests.unit.images.helpers import hostile_cases, layer_dirs, layer_threads, make_tar, sha256, tree

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mknod, chown, trusted xattrs)")


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for rel in tree(root):
        path, st = root / rel, os.lstat(root / rel)
        data = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        out[rel] = (st.st_mode, st.st_mtime_ns, st.st_ino == os.lstat(root / "d/f").st_ino, data)
    return out


def test_layer_file_unpacks_as_the_stream(tmp_path: Path) -> None:
    """A plain tar file is read seekably (data copied by the kernel, hashed in a thread): same result as streamed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, type_, content in [
            ("d", tarfile.DIRTYPE, b""),
            ("d/f", tarfile.REGTYPE, os.urandom(3 << 20)),
            ("d/empty", tarfile.REGTYPE, b""),
            ("s", tarfile.SYMTYPE, b""),
            ("h", tarfile.LNKTYPE, b""),
            ("odd", b"Z", b"odd!\n"),
        ]:
            ti = tarfile.TarInfo(name)  # "odd" has an unknown type: unpacked as a regular file, as tarfile reads it
            ti.type, ti.size, ti.mtime, ti.linkname = type_, len(content), 1_000_000, "d/f"
            tar.addfile(ti, io.BytesIO(content))
    data = buf.getvalue()
    (tmp_path / "layer.tar").write_bytes(data)
    seen = {}
    for how in ("stream", "file"):
        dest = tmp_path / how
        dest.mkdir()
        with open(tmp_path / "layer.tar", "rb") as f:
            assert extract_layer(f if how == "file" else io.BytesIO(data), dest) == sha256(data)
        seen[how] = snapshot(dest)
    assert seen["file"] == seen["stream"]
    assert seen["file"]["odd"][3] == b"odd!\n" and seen["file"]["h"][2] and len(seen["file"]["d/f"][3]) == 3 << 20
    assert layer_threads() == []


@pytest.mark.skipif(not shutil.which("tar"), reason="needs GNU tar to write a sparse member")
def test_sparse_member_from_a_file(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(4 << 20)
        f.seek(1 << 20)
        f.write(b"middle")
    subprocess.run(["tar", "--sparse", "-cf", tmp_path / "layer.tar", "-C", src, "sparse"], check=True)
    with open(tmp_path / "layer.tar", "rb") as f, tarfile.open(fileobj=f) as tar:
        assert tar.getmember("sparse").sparse  # the data is scattered: tarfile reassembles it
        f.seek(0)
        extract_layer(f, dest)
    assert (dest / "sparse").read_bytes() == (src / "sparse").read_bytes()


def test_truncated_layer_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cut.tar").write_bytes(make_tar(("f", tarfile.REGTYPE, os.urandom(100_000)))[:50_000])
    (tmp_path / "dest").mkdir()
    with open(tmp_path / "cut.tar", "rb") as f, pytest.raises(CtrError, match="corrupt or truncated: the data of 'f'"):
        extract_layer(f, tmp_path / "dest")
    assert layer_threads() == []


@pytest.mark.parametrize("case", list(hostile_cases(Path("/x"))))
def test_hostile_archive_is_refused(case: str, dirs: tuple[Path, Path]) -> None:
    dest, outside = dirs
    passwd = os.stat("/etc/passwd")
    with pytest.raises(CtrError, match="unsafe layer"):
        extract_layer(io.BytesIO(hostile_cases(outside)[case]), dest)
    assert tree(outside) == ["secret"] and (outside / "secret").read_text() == "secret"
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink
    assert not list(dest.rglob("pwned")) and not list(dest.rglob("dotdot"))


def test_links_are_created_not_followed(dirs: tuple[Path, Path]) -> None:
    """Symlinks may point anywhere (they resolve inside the container); writing never follows them."""
    dest, outside = dirs
    (outside / "sub").mkdir(mode=0o700)
    data = make_tar(
        ("s", tarfile.SYMTYPE, str(outside / "secret")),
        ("h", tarfile.LNKTYPE, "s"),  # a hard link to the symlink itself
        ("s", tarfile.REGTYPE, b"replaced"),  # replaces the symlink, leaves its target alone
        ("d", tarfile.DIRTYPE),
        ("d/sub", tarfile.DIRTYPE),
        ("d", tarfile.SYMTYPE, str(outside)),  # d/sub's deferred mode must not land on outside/sub
    )
    extract_layer(io.BytesIO(data), dest)
    assert (dest / "s").read_bytes() == b"replaced" and not (dest / "s").is_symlink()
    assert os.readlink(dest / "h") == str(outside / "secret")
    assert os.readlink(dest / "d") == str(outside)
    assert (outside / "secret").read_text() == "secret" and (outside / "secret").stat().st_nlink == 1
    assert stat.S_IMODE((outside / "sub").stat().st_mode) == 0o700


@needs_root
def test_metadata_is_preserved(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, type_: bytes, mode: int, data: bytes = b"", **attrs) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.size, ti.mtime, ti.uid, ti.gid = type_, mode, len(data), 1_234_567_890, 1000, 2000
            for k, v in attrs.items():
                setattr(ti, k, v)
            tar.addfile(ti, io.BytesIO(data) if data else None)

        add("./", tarfile.DIRTYPE, 0o755, uid=0, gid=0)
        add("ro", tarfile.DIRTYPE, 0o555)
        add("ro/suid", tarfile.REGTYPE, 0o4755, b"#!/bin/sh\n")
        add("ro/hard", tarfile.LNKTYPE, 0o644, linkname="ro/suid")
        add("sym", tarfile.SYMTYPE, 0o777, linkname="ro/suid")
        add("fifo", tarfile.FIFOTYPE, 0o600)
        add("null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert extract_layer(io.BytesIO(buf.getvalue()), dest) == sha256(buf.getvalue())

    st = os.stat(dest / "ro/suid")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o4755, 1000, 2000, 1_234_567_890)
    assert os.stat(dest / "ro/hard").st_ino == st.st_ino
    ro = os.stat(dest / "ro")
    assert (stat.S_IMODE(ro.st_mode), ro.st_uid, ro.st_mtime) == (0o555, 1000, 1_234_567_890)
    sym = os.lstat(dest / "sym")
    assert os.readlink(dest / "sym") == "ro/suid" and (sym.st_uid, sym.st_mtime) == (1000, 1_234_567_890)
    assert stat.S_ISFIFO(os.stat(dest / "fifo").st_mode)
    null = os.stat(dest / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert os.stat(dest).st_uid == 0 and stat.S_IMODE(os.stat(dest).st_mode) == 0o755


@needs_root
def test_without_cap_mknod_device_nodes_are_skipped_with_one_warning(tmp_path: Path) -> None:
    """As rootless Docker and Podman do: the rest of the layer unpacks, one line gives the count.
    Run as nobody in a child, a real unprivileged mknod."""
    layer = make_tar(
        ("dev", tarfile.DIRTYPE),
        ("dev/null", tarfile.CHRTYPE, (1, 3)),
        ("dev/sda", tarfile.BLKTYPE, (8, 0)),
        ("dev/zero", tarfile.CHRTYPE, (1, 5)),
        ("etc", tarfile.DIRTYPE),
        ("etc/hosts", tarfile.REGTYPE, b"h"),
    )
    import tempfile

    (tmp_path / "layer.tar").write_bytes(layer)
    top = Path(tempfile.mkdtemp(prefix="ctr-test-nobody-"))  # pytest's tmp_path is root's alone
    try:
        os.chmod(top, 0o755)
        dest, err = top / "dest", top / "stderr"
        dest.mkdir()
        os.chown(dest, 65534, 65534)
        with open(tmp_path / "layer.tar", "rb") as f:
            pid = os.fork()
            if pid == 0:  # the child: nobody, then the unpack, stderr to a file
                try:
                    import sys

                    sys.stderr = open(err, "w")  # pytest captures the parent's
                    os.setgroups([])
                    os.setresgid(65534, 65534, 65534)
                    os.setresuid(65534, 65534, 65534)
                    ok = extract_layer(f, dest, layer="L") == sha256(layer)
                    os._exit(0 if ok else 2)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    sys.stderr.flush()
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, err.read_text()
        assert err.read_text().splitlines() == [
            "ctr: warning: layer L: skipped 3 device nodes: creating them needs "
            "CAP_MKNOD (rootless Docker and Podman skip them too)"
        ]
        assert sorted(os.listdir(dest / "dev")) == [] and (dest / "etc" / "hosts").read_bytes() == b"h"
    finally:
        shutil.rmtree(top)


LOWER = make_tar(
    ("a", tarfile.DIRTYPE),
    ("a/gone", tarfile.REGTYPE, b"1"),
    ("a/keep", tarfile.REGTYPE, b"2"),
    ("opq", tarfile.DIRTYPE),
    ("opq/old", tarfile.REGTYPE, b"3"),
)


UPPER = make_tar(
    ("a", tarfile.DIRTYPE),
    ("a/.wh.gone", tarfile.REGTYPE),
    ("opq", tarfile.DIRTYPE),
    ("opq/.wh..wh..opq", tarfile.REGTYPE),
    ("opq/new", tarfile.REGTYPE, b"4"),
)


@needs_root
def test_whiteouts_become_overlayfs_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    extract_layer(io.BytesIO(UPPER), upper)
    gone = os.lstat(upper / "a/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == os.makedev(0, 0)
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque") == b"y"
    assert tree(upper) == ["a", "a/gone", "opq", "opq/new"]  # no .wh. files left


@needs_root
def test_whiteouts_hide_lower_files_under_overlayfs(tmp_path: Path) -> None:
    store = ImageStore(Paths.default(tmp_path / "root"))
    image = store.create("layered:1", [LOWER, UPPER])
    lower, upper = store.layer_paths(image)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", str(mnt)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {mount.stderr.strip()}")
    try:
        assert sorted(os.listdir(mnt / "a")) == ["keep"]
        assert sorted(os.listdir(mnt / "opq")) == ["new"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_blob_rewritten_while_unpacked_is_refused(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpacking and hashing read the blob file apart: rewriting it in place between them is caught."""
    data = make_tar(("a", tarfile.REGTYPE, b"1"), ("b", tarfile.REGTYPE, b"2"))
    image = store.create("plain:1", [data])
    blob = store.blob_path(image.layer_digests[0])
    copy_range = layers._copy_range

    def rewrite_then_copy(*args: int) -> int:
        time.sleep(0.05)  # past the clock tick of the first look, where file times are coarse
        fd = os.open(blob, os.O_WRONLY)
        os.pwrite(fd, data[:512], 0)  # the same bytes: only the file's times tell
        os.close(fd)
        return copy_range(*args)

    monkeypatch.setattr(layers, "_copy_range", rewrite_then_copy)
    with pytest.raises(CtrError, match="changed while it was unpacked"):
        store.layer_paths(image)
    assert layer_dirs(store) == [".lock"] and layer_threads() == []
