"""The image store: create, tag, list and remove, atomic writes, and unpacking layers once,
checked against their digests, leaving nothing behind when a blob is bad."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.images import store as images
from ctr.images.model import MEDIA_LAYER_GZIP, ImageConfig
from ctr.images.store import ImageStore
from tests.unit.images.helpers import (
    DIGEST,
    GOOD_LAYER,
    hostile_cases,
    layer_dirs,
    layer_threads,
    make_tar,
    sha256,
    tree,
)


def test_unknown_image(store: ImageStore) -> None:
    with pytest.raises(NotFound) as exc:
        store.get("foo")
    msg = str(exc.value)
    assert msg.startswith("image 'foo:latest' not found") and "\n" not in msg
    assert str(store.paths.images) in msg


def test_create_tag_list_remove(store: ImageStore) -> None:
    busybox = store.get("busybox")
    extra = store.create(
        "127.0.0.1:5000/demo:1",
        [make_tar(("hello", tarfile.REGTYPE, b"hi"))],
        ImageConfig(cmd=("/hello",)),
        labels={"a": "b"},
    )
    assert extra.name == "127.0.0.1:5000/demo:1" and extra.labels == (("a", "b"),)
    tagged = store.tag("busybox", "mine")
    assert tagged.name == "mine:latest" and tagged.digest == busybox.digest
    assert [i.name for i in store.list()] == ["127.0.0.1:5000/demo:1", "busybox:latest", "mine:latest"]
    assert store.get(f"busybox@{busybox.digest}").digest == busybox.digest
    with pytest.raises(NotFound):
        store.get(f"other@{busybox.digest}")
    with pytest.raises(InvalidSpec):
        store.tag("busybox", f"x@{DIGEST}")

    store.remove("busybox")
    assert store.get("mine").digest == busybox.digest  # blobs still used by the other name
    store.remove("mine")
    assert {p.name for p in store.blobs.iterdir()} == {
        d.split(":")[1] for d in (extra.digest, extra.config_digest, *extra.layer_digests)
    }
    with pytest.raises(NotFound, match="image 'mine:latest' not found"):
        store.remove("mine")
    assert [i.name for i in store.list()] == ["127.0.0.1:5000/demo:1"]


def test_failed_blob_write_leaves_nothing(store: ImageStore) -> None:
    with store.lock():
        with pytest.raises(CtrError, match="expected"):
            store._put_blob_stream(io.BytesIO(b"abc"), expected=DIGEST)
        assert list(store.blobs.iterdir()) == []
        assert store._put_blob_stream(io.BytesIO(b"abc"), expected=sha256(b"abc")) == (sha256(b"abc"), 3)


def test_failed_index_write_leaves_old_index(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    image = store.get("busybox")
    before = (store.paths.images / "index.json").read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(images.os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.tag("busybox", "other:1")
    monkeypatch.undo()
    assert (store.paths.images / "index.json").read_bytes() == before
    assert [p for p in store.paths.images.iterdir() if p.name.startswith(".tmp")] == []
    assert [i.name for i in store.list()] == [image.name]


def test_layer_paths_unpacks_once(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    image = store.get("busybox")
    [layer] = store.layer_paths(image)
    assert layer == store.paths.layers / image.diff_ids[0].split(":")[1]
    assert (layer / "etc/passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh\n")
    assert (layer / "bin/sh").stat().st_ino == (layer / "bin/busybox").stat().st_ino
    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777
    assert (layer / "bin/busybox").stat().st_mtime == 0
    out = subprocess.run([layer / "bin/sh", "-c", "echo hello from the layer"], capture_output=True, text=True)
    assert out.stdout == "hello from the layer\n"
    assert sorted(p.name for p in store.paths.layers.iterdir()) == [".lock", layer.name]

    def no_second_unpack(*args, **kwargs):
        raise AssertionError("layer unpacked twice")

    monkeypatch.setattr(images, "extract_layer", no_second_unpack)
    assert store.layer_paths(image) == [layer]
    assert ImageStore(store.paths).layer_paths(store.get("busybox")) == [layer]


def test_layer_paths_concurrent(store: ImageStore) -> None:
    image = store.get("busybox")
    results: list[list[Path]] = []
    threads = [
        threading.Thread(target=lambda: results.append(ImageStore(store.paths).layer_paths(image))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert sorted(p.name for p in store.paths.layers.iterdir()) == [".lock", results[0][0].name]


def test_layer_paths_refuses_corrupt_blob(store: ImageStore) -> None:
    image = store.create("plain:1", [make_tar(("f", tarfile.REGTYPE, b"original"))])
    blob = store.blob_path(image.layer_digests[0])
    blob.write_bytes(make_tar(("f", tarfile.REGTYPE, b"tampered")))
    with pytest.raises(CtrError, match="corrupt"):
        store.layer_paths(image)
    assert sorted(p.name for p in store.paths.layers.iterdir()) == [".lock"]


def test_gzip_layers_are_read(store: ImageStore) -> None:
    plain = make_tar(("dir", tarfile.DIRTYPE), ("dir/file", tarfile.REGTYPE, b"zipped"))
    image = store.create("zipped:1", [gzip.compress(plain, mtime=0)], ImageConfig(cmd=("cat",)))
    manifest = json.loads(store.read_blob(image.digest))
    assert manifest["layers"][0]["mediaType"] == MEDIA_LAYER_GZIP
    assert image.diff_ids == (sha256(plain),) and image.layer_digests != image.diff_ids
    [layer] = store.layer_paths(image)
    assert (layer / "dir/file").read_bytes() == b"zipped"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_blob_only_the_hash_can_tell_is_not_published(store: ImageStore, compress: bool) -> None:
    """A change past the end-of-archive block unpacks like the original: the digest, computed
    beside the unpack (a thread), refuses to publish it."""
    plain = make_tar(("f", tarfile.REGTYPE, b"x" * 100_000))
    image = store.create("plain:1", [gzip.compress(plain, mtime=0) if compress else plain])
    tampered = plain[:-1] + b"\x01"
    store.blob_path(image.layer_digests[0]).write_bytes(gzip.compress(tampered, mtime=0) if compress else tampered)
    with pytest.raises(CtrError, match="is corrupt: its content has digest"):
        store.layer_paths(image)
    assert layer_dirs(store) == [".lock"] and layer_threads() == []


def test_broken_gzip_layer_leaves_nothing(store: ImageStore) -> None:
    """The read-ahead thread's error reaches the unpack as one clear error (not an EOFError,
    which click would even take for a ^D), and the unpack removes its temp dir."""
    image = store.create("zipped:1", [gzip.compress(make_tar(("f", tarfile.REGTYPE, os.urandom(300_000))))])
    blob = store.blob_path(image.layer_digests[0])
    blob.write_bytes(blob.read_bytes()[:-1000])
    with pytest.raises(CtrError, match=r"is corrupt or truncated: compressed file ended"):
        store.layer_paths(image)
    assert layer_dirs(store) == [".lock"] and layer_threads() == []


def test_garbled_gzip_and_truncated_plain_layers_are_one_clear_error(store: ImageStore) -> None:
    zipped = store.create("garbled:1", [gzip.compress(make_tar(("f", tarfile.REGTYPE, os.urandom(300_000))))])
    blob = store.blob_path(zipped.layer_digests[0])
    data = bytearray(blob.read_bytes())
    data[100:200] = bytes(100)  # inside the deflate stream
    blob.write_bytes(bytes(data))
    with pytest.raises(CtrError, match="is corrupt|is not a tar archive: zlib error"):  # where the damage falls
        store.layer_paths(zipped)
    plain = store.create("cut:1", [make_tar(("f", tarfile.REGTYPE, os.urandom(300_000)))])
    blob = store.blob_path(plain.layer_digests[0])
    blob.write_bytes(blob.read_bytes()[:100_000])
    with pytest.raises(CtrError, match="is corrupt or truncated"):
        store.layer_paths(plain)
    assert layer_dirs(store) == [".lock"] and layer_threads() == []


def test_refused_gzip_layer_stops_the_read_ahead(store: ImageStore, dirs: tuple[Path, Path]) -> None:
    """A refusal early in a long compressed layer does not wait for the rest of it."""
    dest, outside = dirs
    with tarfile.open(dest / "evil.tar.gz", "w:gz", compresslevel=1) as tar, open("/dev/zero", "rb") as zero:
        for name, type_, size in [
            ("link", tarfile.SYMTYPE, 0),
            ("link/pwned", tarfile.REGTYPE, 0),
            ("zeros", tarfile.REGTYPE, 24 << 20),
        ]:  # more than the read-ahead holds
            ti = tarfile.TarInfo(name)
            ti.type, ti.size, ti.linkname = type_, size, str(outside)
            tar.addfile(ti, zero)  # from a file, not in memory: a later test measures this process's peak RSS
    image = store.create("evil:1", [dest / "evil.tar.gz"])
    with pytest.raises(CtrError, match="goes through the symlink 'link'"):
        store.layer_paths(image)
    assert layer_dirs(store) == [".lock"] and layer_threads() == [] and tree(outside) == ["secret"]


def test_hostile_layer_through_the_store_leaves_nothing(store: ImageStore, dirs: tuple[Path, Path]) -> None:
    _, outside = dirs
    image = store.create("evil:1", [hostile_cases(outside)["file through absolute symlink"]])
    with pytest.raises(CtrError, match="unsafe layer .* goes through the symlink 'link'"):
        store.layer_paths(image)
    assert sorted(p.name for p in store.paths.layers.iterdir()) == [".lock"]
    assert tree(outside) == ["secret"]


def test_rm_refused_while_a_container_uses_the_image(store: ImageStore) -> None:
    from ctr.state.records import RecordStore

    image = store.create("used:1", [GOOD_LAYER])
    records = RecordStore(store.paths)
    record = records.reserve("web", "native", {})
    record.image, record.image_digest = image.name, image.digest
    records.save(record)
    with pytest.raises(Conflict, match="image 'used:1' is used by container web: remove it first, or use -f"):
        store.remove_checked("used:1")
    store.tag("used:1", "alias:1")
    store.remove_checked("used:1")  # another name keeps the image: only untagged, as docker rmi does
    with pytest.raises(Conflict):
        store.remove_checked("alias:1")
    store.remove_checked("alias:1", force=True)
    assert [i.name for i in store.list()] == []
    with pytest.raises(NotFound):
        store.remove_checked("alias:1")
