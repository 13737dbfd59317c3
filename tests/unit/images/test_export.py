"""Images out as archives: the docker-archive and OCI layout exports, round trips that keep
every digest, a file that appears whole, large layers streamed."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ctr.errors import CtrError, NotFound
from ctr.images import export
from ctr.images.archive import import_image
from ctr.images.export import export_docker_archive, export_image
from ctr.images.model import ImageConfig
from ctr.images.store import ImageStore
from ctr.state.paths import Paths
from tests.unit.images.helpers import GOOD_LAYER, C, D, L, R, make_tar, sha256, write

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (device nodes)")


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable sink, as stdout piped into `docker load` is."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def read_docker_archive(data: bytes) -> tuple[dict, dict, dict[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    [manifest] = json.loads(files["manifest.json"])
    config = json.loads(files[manifest["Config"]])
    return manifest, config, files


def test_export_docker_archive(store: ImageStore) -> None:
    image = store.get("busybox")
    out = _Pipe()
    export_docker_archive(store, image, out)  # type: ignore[arg-type]
    manifest, config, files = read_docker_archive(bytes(out.data))
    assert manifest["RepoTags"] == ["busybox:latest"]
    assert sha256(files[manifest["Config"]]) == image.config_digest
    assert manifest["Config"] == image.config_digest.split(":")[1] + ".json"
    assert len(manifest["Layers"]) == len(config["rootfs"]["diff_ids"]) == 1
    for name, diff_id in zip(manifest["Layers"], config["rootfs"]["diff_ids"]):
        assert name.endswith("/layer.tar") and sha256(files[name]) == diff_id
    top = manifest["Layers"][-1].split("/")[0]
    assert json.loads(files["repositories"]) == {"busybox": {"latest": top}}


def test_export_uncompresses_gzip_layers(store: ImageStore) -> None:
    base = make_tar(("base", tarfile.REGTYPE, b"b"))
    top = make_tar(("top", tarfile.REGTYPE, b"t"))
    image = store.create("127.0.0.1:5000/demo:1", [base, gzip.compress(top), base])
    out = io.BytesIO()
    export_docker_archive(store, image, out)
    manifest, config, files = read_docker_archive(out.getvalue())
    assert manifest["RepoTags"] == ["127.0.0.1:5000/demo:1"]
    assert config["rootfs"]["diff_ids"] == [sha256(base), sha256(top), sha256(base)]
    assert [sha256(files[n]) for n in manifest["Layers"]] == config["rootfs"]["diff_ids"]
    assert json.loads(files["repositories"]) == {"127.0.0.1:5000/demo": {"1": sha256(base).split(":")[1]}}


def test_round_trip_keeps_digests(tmp_path: Path, store: ImageStore) -> None:
    base, top = GOOD_LAYER, gzip.compress(make_tar(("etc", D), ("etc/.wh.motd", R), ("t", R, b"t")))
    image = store.create("rt:1", [base, top], ImageConfig(cmd=("sh",)))
    for fmt in ("oci", "docker-archive"):
        out = tmp_path / f"rt-{fmt}.tar"
        export_image(store, "rt:1", str(out), fmt)
        other = ImageStore(Paths.default(tmp_path / f"other-{fmt}"))
        [again] = import_image(other, str(out))
        assert again.name == "rt:1"
        assert again.config_digest == image.config_digest and again.diff_ids == image.diff_ids
        if fmt == "oci":  # byte for byte: every blob, so the manifest too
            assert again.layer_digests == image.layer_digests and again.digest == image.digest
        out2 = tmp_path / f"rt2-{fmt}.tar"
        export_image(other, "rt:1", str(out2), "oci")
        [third] = import_image(ImageStore(Paths.default(tmp_path / f"third-{fmt}")), str(out2))
        assert (third.digest, third.layer_digests, third.config_digest) == (
            again.digest,
            again.layer_digests,
            again.config_digest,
        )


def test_export_leaves_no_partial_file(tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create("e:1", [GOOD_LAYER])
    dest = tmp_path / "out" / "e.tar"
    dest.parent.mkdir()

    def boom(*a, **kw):
        raise CtrError("disk full")

    monkeypatch.setattr(export, "export_oci", boom)
    with pytest.raises(CtrError, match="disk full"):
        export_image(store, "e:1", str(dest), "oci")
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(NotFound):
        export_image(store, "nope:1", str(dest), "oci")


@needs_root
@pytest.mark.parametrize("fmt", ["rootfs", "oci", "docker-archive"])
def test_device_nodes_fifos_and_hard_links_come_in_from_anyone(fmt: str, tmp_path: Path, store: ImageStore) -> None:
    """What a debootstrap root or a docker save of Debian carries, as Docker accepts it: the
    device policy, not the import, decides what a container may open."""
    layer = make_tar(
        ("dev", D),
        ("dev/null", C),
        ("dev/sda", tarfile.BLKTYPE),
        ("run", D),
        ("run/initctl", tarfile.FIFOTYPE),
        ("bin", D),
        ("bin/a", R, b"a"),
        ("bin/b", L, "bin/a"),
    )
    if fmt == "rootfs":
        path = write(tmp_path, "root.tar", layer)
    else:
        other = ImageStore(Paths.default(tmp_path / "elsewhere"))  # someone else's export
        other.create("dev:1", [layer])
        path = str(tmp_path / f"dev-{fmt}.tar")
        export_image(other, "dev:1", path, fmt)
    [image] = import_image(store, path, name="dev:1")
    assert image.diff_ids == (sha256(layer),)
    [unpacked] = store.layer_paths(image)
    st = os.lstat(unpacked / "dev" / "sda")
    assert stat.S_ISBLK(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_ISCHR(os.lstat(unpacked / "dev" / "null").st_mode)
    assert stat.S_ISFIFO(os.lstat(unpacked / "run" / "initctl").st_mode)
    assert os.stat(unpacked / "bin" / "a").st_ino == os.stat(unpacked / "bin" / "b").st_ino


def test_large_layers_are_streamed(tmp_path: Path) -> None:
    """A 96 MB layer goes in (gzip'd) and out without being held in memory."""
    import subprocess
    import sys

    layer = tmp_path / "big.tar"
    with tarfile.open(layer, "w") as tar:
        ti = tarfile.TarInfo("big")
        ti.size = 96 << 20
        with open("/dev/urandom", "rb") as rnd:
            tar.addfile(ti, rnd)
    with open(layer, "rb") as src, gzip.open(tmp_path / "big.tar.gz", "wb", compresslevel=1) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    layer.unlink()
    code = (
        "import sys\n"
        "from ctr.images.store import ImageStore\n"
        "from ctr.state.paths import Paths\n"
        "from ctr.images.archive import import_image\n"
        "from ctr.images.export import export_image\n"
        "store = ImageStore(Paths.default(sys.argv[1]))\n"
        "import_image(store, sys.argv[2], name='big:1')\n"
        "export_image(store, 'big:1', sys.argv[3], 'docker-archive')\n"
        "import_image(ImageStore(Paths.default(sys.argv[1] + '2')), sys.argv[3])\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of a large pytest
        # process (vfork shares its memory) would report the parent's peak
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "root"), str(tmp_path / "big.tar.gz"), str(tmp_path / "out.tar")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 80 << 10, f"peak RSS {int(r.stdout) >> 10} MiB"  # KiB: well under the layer's 96 MiB
