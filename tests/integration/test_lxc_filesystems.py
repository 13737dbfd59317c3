"""The lxc backend's filesystems: volumes, a read-only root, image layers with whiteouts
and symlinked mount targets, layers never modified (helpers: lxc_helpers.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from ctr.images.store import ImageStore
from ctr.spec import Mount

from .lxc_helpers import (
    nothing_left,  # noqa: F401 (autouse: nothing of a container is left)
    run,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lxc backend needs root"),
    pytest.mark.parametrize("backend", ["lxc"], indirect=True),
]


# -- filesystems -------------------------------------------------------------------------


def test_volumes_rw_and_ro(backend, capfd, tmp_path):
    data = tmp_path / "dir with space"
    data.mkdir()
    (data / "in").write_text("from host\n")
    single = tmp_path / "single"
    single.write_text("one file\n")
    code, out, err = run(
        backend,
        capfd,
        "sh",
        "-c",
        "cat /data/deep/in /etc/single; echo from container > /data/deep/out",
        mounts=(Mount(str(data), "/data/deep"), Mount(str(single), "/etc/single", read_only=True)),
    )
    assert (code, out) == (0, "from host\none file\n"), err
    assert (data / "out").read_text() == "from container\n"
    code, out, err = run(
        backend, capfd, "sh", "-c", "echo x > /data/out2", mounts=(Mount(str(data), "/data", read_only=True),)
    )
    assert code != 0 and "Read-only file system" in err
    assert not (data / "out2").exists()


def test_read_only_root(backend, capfd, tmp_path):
    code, out, err = run(backend, capfd, "sh", "-c", "touch /x", read_only=True)
    assert code != 0 and "Read-only file system" in err
    # Mount targets and the working directory are made before the root turns read-only.
    code, out, err = run(
        backend,
        capfd,
        "sh",
        "-c",
        "pwd; echo ok > /dev/shm/x && cat /dev/shm/x; echo v > /new/vol/f",
        read_only=True,
        workdir="/work",
        mounts=(Mount(str(tmp_path), "/new/vol"),),
    )
    assert (code, out.split()) == (0, ["/work", "ok"]), err
    assert (tmp_path / "f").read_text() == "v\n"


def tar_layer(*entries: tuple[str, str, str]) -> bytes:
    """A layer tar from (name, kind, content): kind "file", "dir" or "symlink" (content = target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                data = content.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def layered_image(paths) -> str:
    """busybox plus a second layer: symlinks, a whiteout, an extra user and group."""
    store = ImageStore(paths)
    busybox = store.get("busybox")
    top = tar_layer(
        ("etc", "dir", ""),
        ("etc/motd", "file", "from the top layer\n"),
        ("etc/passwd", "file", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"),
        ("etc/group", "file", "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n"),
        ("bin", "dir", ""),
        ("bin/.wh.vi", "file", ""),  # deletes busybox's /bin/vi
        ("var", "dir", ""),
        ("var/run", "symlink", "../run"),
        ("hostetc", "symlink", "/etc"),  # absolute: must resolve inside the container
    )
    ref = "ctr-lxc-test/layered:1"
    store.create(ref, [store.blob_path(busybox.layer_digests[0]), top], config=busybox.config)
    return ref


def test_layers_whiteouts_and_symlinked_mount_targets(backend, capfd, layered_image, tmp_path):
    (tmp_path / "f").write_text("volume\n")
    tmp_path.chmod(0o755)  # alice reads it
    code, out, err = run(
        backend,
        capfd,
        "sh",
        "-c",
        "cat /etc/motd /run/x/f /etc/evil/f; test -e /bin/vi || echo no-vi; id",
        image=layered_image,
        user="alice",
        mounts=(Mount(str(tmp_path), "/var/run/x"), Mount(str(tmp_path), "/hostetc/evil")),
    )
    assert out.splitlines() == [
        "from the top layer",
        "volume",
        "volume",
        "no-vi",
        "uid=1000(alice) gid=1000(alice) groups=50(staff),1000(alice)",
    ], err
    assert not Path("/etc/evil").exists()  # the image's link to /etc never reached the host's


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            p = Path(dirpath, name)
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_size} {st.st_mtime_ns}".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


def test_image_layers_are_never_modified(backend, capfd, paths):
    run(backend, capfd, "true")
    layers = sorted(paths.layers.iterdir())
    before = [tree_digest(p) for p in layers]
    code, _, err = run(backend, capfd, "sh", "-c", "echo hacked > /etc/passwd; rm /bin/ls; touch /new; mkdir -p /usr/x")
    assert code == 0, err
    assert [tree_digest(p) for p in layers] == before
    assert run(backend, capfd, "head", "-1", "/etc/passwd")[1].startswith("root:")
