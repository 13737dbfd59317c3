"""The image store: references, the built-in busybox, atomic and concurrent writes,
safe layer unpacking (hostile archives, whiteouts) and the docker-archive export."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from ctr.images import store as images
from ctr.images.store import (
    BUILTIN_PATH_ENV,
    MEDIA_CONFIG,
    MEDIA_LAYER,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    REF_ANNOTATION,
    ImageConfig,
    ImageStore,
    extract_layer,
    normalize_ref,
    split_ref,
)
from ctr.state.paths import Paths
from ctr.errors import CtrError, InvalidSpec, NotFound

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mknod, chown, trusted xattrs)")
DIGEST = "sha256:" + "ab" * 32


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(Paths.default(tmp_path / "root"))


def make_tar(*members: tuple) -> bytes:
    """(name, type, extra) tuples -> tar bytes; extra is file content or a link target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, type_, *rest in members:
            extra = rest[0] if rest else b""
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = type_, 0o755 if type_ == tarfile.DIRTYPE else 0o644, 1_000_000
            if type_ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = extra
                tar.addfile(ti)
            elif type_ == tarfile.REGTYPE:
                ti.size = len(extra)
                tar.addfile(ti, io.BytesIO(extra))
            else:
                if type_ in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                    ti.devmajor, ti.devminor = extra or (1, 3)  # 0:0 would be a whiteout
                tar.addfile(ti)
    return buf.getvalue()


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("busybox", "busybox:latest"),
        ("busybox:latest", "busybox:latest"),
        ("busybox:1.36.1-musl", "busybox:1.36.1-musl"),
        ("library/busybox", "busybox:latest"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("index.docker.io/library/busybox", "busybox:latest"),
        ("docker.io/foo/bar", "foo/bar:latest"),
        ("foo/bar_baz.x__y-z", "foo/bar_baz.x__y-z:latest"),
        ("127.0.0.1:5000/demo:1", "127.0.0.1:5000/demo:1"),
        ("localhost/demo", "localhost/demo:latest"),
        ("localhost:5000/demo", "localhost:5000/demo:latest"),
        ("registry.example.com/a/b/c:v2", "registry.example.com/a/b/c:v2"),
        ("localhost:5000", "localhost:5000"),  # docker reads this as image localhost, tag 5000
        (f"busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
        (f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    ],
)
def test_normalize_ref(ref: str, expected: str) -> None:
    assert normalize_ref(ref) == expected
    assert normalize_ref(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "ref",
    ["", " busybox", "Busybox", "foo/Bar", "busybox:", ":tag", "a b", "busybox:bad tag",
     "busybox:" + "x" * 129, "busybox@sha256:abc", "busybox@", "@" + DIGEST, "-foo", "foo-",
     "foo/", "foo//bar", "a" * 64, "foo..bar", "bad_host:x/y"],
)
def test_normalize_ref_refuses(ref: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid reference format"):
        normalize_ref(ref)


def test_normalize_ref_says_lowercase() -> None:
    with pytest.raises(InvalidSpec, match="must be lowercase"):
        normalize_ref("foo/BusyBox")


def test_split_ref() -> None:
    assert split_ref("busybox:latest") == ("busybox", "latest", "")
    assert split_ref("127.0.0.1:5000/demo:1") == ("127.0.0.1:5000/demo", "1", "")
    assert split_ref("localhost:5000/demo") == ("localhost:5000/demo", "", "")
    assert split_ref(f"a/b:1@{DIGEST}") == ("a/b", "1", DIGEST)


# --- the built-in busybox -----------------------------------------------------------------


def test_host_busybox_is_static() -> None:
    path, arch = images.find_busybox()
    assert images._elf_info(path) == (True, arch)
    assert arch == {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, arch)


def test_busybox_digests_match_blobs(store: ImageStore) -> None:
    image = store.get("busybox")
    root = store.paths.images
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"][REF_ANNOTATION] == "busybox:latest"
    assert entry["mediaType"] == MEDIA_MANIFEST
    assert entry["platform"] == {"architecture": image.architecture, "os": "linux"}

    def blob(digest: str) -> bytes:
        data = (root / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert sha256(data) == digest
        return data

    manifest_bytes = blob(entry["digest"])
    assert entry["size"] == len(manifest_bytes) and entry["digest"] == image.digest
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MEDIA_MANIFEST
    assert manifest["config"]["mediaType"] == MEDIA_CONFIG
    config_bytes = blob(manifest["config"]["digest"])
    assert manifest["config"]["size"] == len(config_bytes)
    [layer] = manifest["layers"]
    assert layer["mediaType"] == MEDIA_LAYER
    layer_bytes = blob(layer["digest"])
    assert layer["size"] == len(layer_bytes)

    config = json.loads(config_bytes)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(layer_bytes)]}
    assert config["os"] == "linux" and config["architecture"] == image.architecture
    assert config["config"]["Cmd"] == ["sh"]
    assert config["config"]["Env"] == [BUILTIN_PATH_ENV]
    version = config["config"]["Labels"]["org.opencontainers.image.version"]
    assert version[0].isdigit() and manifest["annotations"]["org.opencontainers.image.version"] == version

    assert image.name == "busybox:latest"
    assert image.config == ImageConfig(cmd=("sh",), env=(BUILTIN_PATH_ENV,))
    assert image.config_digest == manifest["config"]["digest"] == image.id
    assert image.diff_ids == image.layer_digests == (layer["digest"],)
    assert dict(image.labels)["org.opencontainers.image.version"] == version
    assert store.get("busybox:latest") == store.get("docker.io/library/busybox") == image


def test_busybox_layer_is_deterministic_and_complete(store: ImageStore) -> None:
    image = store.get("busybox")
    data = store.blob_path(image.layer_digests[0]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
        assert tar.extractfile("etc/passwd").read() == (  # type: ignore[union-attr]
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
        assert tar.extractfile("etc/group").read() == b"root:x:0:\nnobody:x:65534:\n"  # type: ignore[union-attr]
    for m in members.values():
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0), m.name
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var", "home", "proc", "sys", "dev", "run"):
        assert members[d].isdir(), d
    assert members["tmp"].mode == 0o1777
    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    busybox, _ = images.find_busybox()
    assert members["bin/busybox"].size == os.path.getsize(busybox)
    for applet in ("bin/sh", "bin/ls", "usr/bin/env"):
        assert members[applet].islnk() and members[applet].linkname == "bin/busybox"
    # Hard links come after the file they point to, or no tar could unpack them.
    names = list(members)
    assert names.index("bin/busybox") < min(names.index(n) for n, m in members.items() if m.islnk())


def test_busybox_build_is_reproducible(tmp_path: Path) -> None:
    a = ImageStore(Paths.default(tmp_path / "a")).get("busybox")
    b_store = ImageStore(Paths.default(tmp_path / "b"))
    b = b_store.get("busybox")
    assert a == b
    b_store.remove("busybox")
    assert b_store.get("busybox").digest == a.digest


def _get_busybox_digest(root: str) -> str:
    return ImageStore(Paths.default(root)).get("busybox").digest


def _assert_single_clean_image(store: ImageStore) -> None:
    index = json.loads((store.paths.images / "index.json").read_text())
    assert len(index["manifests"]) == 1
    assert sorted(p.name for p in store.blobs.iterdir() if p.name.startswith(".")) == []
    assert len(list(store.blobs.iterdir())) == 3  # manifest, config, layer


def test_concurrent_builds_in_processes_give_one_image(store: ImageStore) -> None:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        digests = pool.map(_get_busybox_digest, [str(store.paths.data)] * 8)
    assert len(set(digests)) == 1
    _assert_single_clean_image(store)
    assert store.get("busybox").digest == digests[0]


def test_concurrent_builds_in_threads_give_one_image(store: ImageStore) -> None:
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(_get_busybox_digest(str(store.paths.data))))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    _assert_single_clean_image(store)


def test_unknown_image(store: ImageStore) -> None:
    with pytest.raises(NotFound) as exc:
        store.get("foo")
    msg = str(exc.value)
    assert msg.startswith("image 'foo:latest' not found") and "\n" not in msg
    assert str(store.paths.images) in msg


def test_missing_busybox_says_how_to_install(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr(images, "BUSYBOX_CANDIDATES", ("/nonexistent/busybox",))
    with pytest.raises(NotFound, match="apt-get install busybox-static"):
        store.get("busybox")
    assert not (store.paths.images / "index.json").exists()
    assert list(store.blobs.iterdir()) == []


def test_dynamic_busybox_is_refused(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert images._elf_info("/bin/ls")[0] is False  # type: ignore[index]
    monkeypatch.setattr("shutil.which", lambda name: "/bin/ls")
    monkeypatch.setattr(images, "BUSYBOX_CANDIDATES", ())
    with pytest.raises(NotFound, match="dynamically linked.*apt-get install busybox-static"):
        store.get("busybox")


def test_failed_blob_write_leaves_nothing(store: ImageStore) -> None:
    with store._lock():
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


# --- layers -----------------------------------------------------------------------------


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
    threads = [threading.Thread(target=lambda: results.append(ImageStore(store.paths).layer_paths(image)))
               for _ in range(4)]
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


def layer_threads() -> list[str]:
    """The unpack's helper threads still alive (the hash of a plain blob, the read-ahead of a stream)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("ctr-layer-")]


def layer_dirs(store: ImageStore) -> list[str]:
    return sorted(p.name for p in store.paths.layers.iterdir())


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
        for name, type_, content in [("d", tarfile.DIRTYPE, b""), ("d/f", tarfile.REGTYPE, os.urandom(3 << 20)),
                                     ("d/empty", tarfile.REGTYPE, b""), ("s", tarfile.SYMTYPE, b""),
                                     ("h", tarfile.LNKTYPE, b""), ("odd", b"Z", b"odd!\n")]:
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


def test_blob_rewritten_while_unpacked_is_refused(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpacking and hashing read the blob file apart: rewriting it in place between them is caught."""
    data = make_tar(("a", tarfile.REGTYPE, b"1"), ("b", tarfile.REGTYPE, b"2"))
    image = store.create("plain:1", [data])
    blob = store.blob_path(image.layer_digests[0])
    copy_range = images._copy_range

    def rewrite_then_copy(*args: int) -> int:
        time.sleep(0.05)  # past the clock tick of the first look, where file times are coarse
        fd = os.open(blob, os.O_WRONLY)
        os.pwrite(fd, data[:512], 0)  # the same bytes: only the file's times tell
        os.close(fd)
        return copy_range(*args)

    monkeypatch.setattr(images, "_copy_range", rewrite_then_copy)
    with pytest.raises(CtrError, match="changed while it was unpacked"):
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
        for name, type_, size in [("link", tarfile.SYMTYPE, 0), ("link/pwned", tarfile.REGTYPE, 0),
                                  ("zeros", tarfile.REGTYPE, 24 << 20)]:  # more than the read-ahead holds
            ti = tarfile.TarInfo(name)
            ti.type, ti.size, ti.linkname = type_, size, str(outside)
            tar.addfile(ti, zero)  # from a file, not in memory: a later test measures this process's peak RSS
    image = store.create("evil:1", [dest / "evil.tar.gz"])
    with pytest.raises(CtrError, match="goes through the symlink 'link'"):
        store.layer_paths(image)
    assert layer_dirs(store) == [".lock"] and layer_threads() == [] and tree(outside) == ["secret"]


def test_create_tag_list_remove(store: ImageStore) -> None:
    busybox = store.get("busybox")
    extra = store.create("127.0.0.1:5000/demo:1", [make_tar(("hello", tarfile.REGTYPE, b"hi"))],
                         ImageConfig(cmd=("/hello",)), labels={"a": "b"})
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
        d.split(":")[1] for d in (extra.digest, extra.config_digest, *extra.layer_digests)}
    with pytest.raises(NotFound, match="image 'mine:latest' not found"):
        store.remove("mine")
    assert [i.name for i in store.list()] == ["127.0.0.1:5000/demo:1"]


# --- hostile archives -------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(empty destination, a directory outside it holding one secret file)."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    return dest, outside


def hostile_cases(outside: Path) -> dict[str, bytes]:
    R, D, S, L = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    return {
        "absolute path": make_tar((f"{outside}/abs", R, b"x")),
        "dot-dot": make_tar(("../outside/dotdot", R, b"x")),
        "dot-dot inside": make_tar(("a", D), ("a/../../outside/dotdot", R, b"x")),
        "file through absolute symlink": make_tar(("link", S, str(outside)), ("link/pwned", R, b"x")),
        "file through relative symlink": make_tar(("link", S, "../outside"), ("link/pwned", R, b"x")),
        "dir through symlink": make_tar(("link", S, str(outside)), ("link/newdir", D)),
        "hardlink to /etc/passwd": make_tar(("hl", L, "/etc/passwd")),
        "hardlink with dot-dot": make_tar(("hl", L, "../outside/secret")),
        "hardlink through symlink": make_tar(("link", S, str(outside)), ("hl", L, "link/secret")),
        "whiteout through symlink": make_tar(("link", S, str(outside)), ("link/.wh.secret", R)),
        "opaque through symlink": make_tar(("link", S, str(outside)), ("link/.wh..wh..opq", R)),
    }


@pytest.mark.parametrize("case", list(hostile_cases(Path("/x"))))
def test_hostile_archive_is_refused(case: str, dirs: tuple[Path, Path]) -> None:
    dest, outside = dirs
    passwd = os.stat("/etc/passwd")
    with pytest.raises(CtrError, match="unsafe layer"):
        extract_layer(io.BytesIO(hostile_cases(outside)[case]), dest)
    assert tree(outside) == ["secret"] and (outside / "secret").read_text() == "secret"
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink
    assert not list(dest.rglob("pwned")) and not list(dest.rglob("dotdot"))


def test_hostile_layer_through_the_store_leaves_nothing(store: ImageStore, dirs: tuple[Path, Path]) -> None:
    _, outside = dirs
    image = store.create("evil:1", [hostile_cases(outside)["file through absolute symlink"]])
    with pytest.raises(CtrError, match="unsafe layer .* goes through the symlink 'link'"):
        store.layer_paths(image)
    assert sorted(p.name for p in store.paths.layers.iterdir()) == [".lock"]
    assert tree(outside) == ["secret"]


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
    layer = make_tar(("dev", tarfile.DIRTYPE), ("dev/null", tarfile.CHRTYPE, (1, 3)),
                     ("dev/sda", tarfile.BLKTYPE, (8, 0)), ("dev/zero", tarfile.CHRTYPE, (1, 5)),
                     ("etc", tarfile.DIRTYPE), ("etc/hosts", tarfile.REGTYPE, b"h"))
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
        assert err.read_text().splitlines() == ["ctr: warning: layer L: skipped 3 device nodes: creating them needs "
                                                "CAP_MKNOD (rootless Docker and Podman skip them too)"]
        assert sorted(os.listdir(dest / "dev")) == [] and (dest / "etc" / "hosts").read_bytes() == b"h"
    finally:
        shutil.rmtree(top)


# --- whiteouts --------------------------------------------------------------------------

LOWER = make_tar(("a", tarfile.DIRTYPE), ("a/gone", tarfile.REGTYPE, b"1"), ("a/keep", tarfile.REGTYPE, b"2"),
                 ("opq", tarfile.DIRTYPE), ("opq/old", tarfile.REGTYPE, b"3"))
UPPER = make_tar(("a", tarfile.DIRTYPE), ("a/.wh.gone", tarfile.REGTYPE),
                 ("opq", tarfile.DIRTYPE), ("opq/.wh..wh..opq", tarfile.REGTYPE), ("opq/new", tarfile.REGTYPE, b"4"))


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
    mount = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", str(mnt)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {mount.stderr.strip()}")
    try:
        assert sorted(os.listdir(mnt / "a")) == ["keep"]
        assert sorted(os.listdir(mnt / "opq")) == ["new"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# --- docker-archive export --------------------------------------------------------------


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
    store.export_docker_archive(image, out)  # type: ignore[arg-type]
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
    store.export_docker_archive(image, out)
    manifest, config, files = read_docker_archive(out.getvalue())
    assert manifest["RepoTags"] == ["127.0.0.1:5000/demo:1"]
    assert config["rootfs"]["diff_ids"] == [sha256(base), sha256(top), sha256(base)]
    assert [sha256(files[n]) for n in manifest["Layers"]] == config["rootfs"]["diff_ids"]
    assert json.loads(files["repositories"]) == {"127.0.0.1:5000/demo": {"1": sha256(base).split(":")[1]}}
