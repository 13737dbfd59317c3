"""ctr image import/export: --change, format detection, hostile and broken archives for
each import path (nothing left behind), digests kept across a round trip, platforms."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ctr.images import archive as image_import
from ctr.images import store as images
from ctr.images.archive import (
    detect_format,
    export_image,
    import_image,
    parse_changes,
)
from ctr.images.store import (
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    ImageConfig,
    ImageStore,
    host_platform,
)
from ctr.state.paths import Paths
from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (device nodes)")
R, D, S, L, C = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
HOST = host_platform()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_tar(*members: tuple) -> bytes:
    """(name, type[, content or link target]) -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, type_, *rest in members:
            extra = rest[0] if rest else b""
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = type_, 0o755 if type_ == D else 0o644, 1_000_000
            if type_ in (S, L):
                ti.linkname = extra
                tar.addfile(ti)
            elif type_ == R:
                ti.size = len(extra)
                tar.addfile(ti, io.BytesIO(extra))
            else:
                if type_ in (C, tarfile.BLKTYPE):
                    ti.devmajor, ti.devminor = 1, 3
                tar.addfile(ti)
    return buf.getvalue()


def files_tar(files: dict[str, bytes]) -> bytes:
    return make_tar(*((name, R, data) for name, data in files.items()))


GOOD_LAYER = make_tar(("bin", D), ("bin/hello", R, b"#!/bin/sh\necho hi\n"), ("bin/sh", S, "/bin/busybox"),
                      ("etc", D), ("etc/motd", R, b"hello\n"), ("etc/link", L, "etc/motd"))


def config_for(*layers: bytes, platform: dict | None = None, cmd: list[str] | None = None) -> bytes:
    p = platform or HOST
    doc = {"architecture": p["architecture"], "os": p["os"], "config": {"Cmd": cmd or ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(x) if x[:2] == b"\x1f\x8b" else x)
                                                      for x in layers]}}
    return canonical(doc)


def oci_image(*layers: bytes, platform: dict | None = None, cmd: list[str] | None = None) -> tuple[bytes, bytes, dict]:
    """(manifest, config, blobs by digest) of an OCI image made of `layers`."""
    config = config_for(*layers, platform=platform, cmd=cmd)
    manifest = canonical({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER_GZIP if x[:2] == b"\x1f\x8b" else MEDIA_LAYER, "digest": sha256(x),
                    "size": len(x)} for x in layers]})
    blobs = {sha256(x): x for x in (*layers, config, manifest)}
    return manifest, config, blobs


def oci_layout(index_entries: list[dict], blobs: dict[str, bytes], *, drop: tuple[str, ...] = (),
               extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
             "index.json": json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index_entries}).encode()}
    for digest, data in blobs.items():
        if digest not in drop:
            files[f"blobs/sha256/{digest[7:]}"] = data
    files.update(extra or {})
    return files


def entry(manifest: bytes, name: str | None = "example.com/app:1", media: str = MEDIA_MANIFEST,
          platform: dict | None = None, annotations: dict | None = None) -> dict:
    out: dict = {"mediaType": media, "digest": sha256(manifest), "size": len(manifest)}
    ann = dict(annotations or {})
    if name:
        ann["io.containerd.image.name"] = name
    if ann:
        out["annotations"] = ann
    if platform:
        out["platform"] = platform
    return out


def docker_archive(layers: list[bytes], tags: list[str] | None = None, config: bytes | None = None,
                   layer_names: list[str] | None = None) -> dict[str, bytes]:
    config = config or config_for(*layers)
    names = layer_names or [f"{sha256(x)[7:]}/layer.tar" for x in layers]
    files = {f"{sha256(config)[7:]}.json": config}
    files.update(dict(zip(names, layers)))
    files["manifest.json"] = json.dumps([{"Config": f"{sha256(config)[7:]}.json",
                                          "RepoTags": ["example.com/app:1"] if tags is None else tags,
                                          "Layers": names}]).encode()
    return files


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(Paths.default(tmp_path / "root"))


def snapshot(store: ImageStore) -> dict[str, bytes]:
    """Everything under the image root and the layers dir except the lock files."""
    out = {}
    for base in (store.root, store.paths.layers):
        if base.exists():
            for p in sorted(base.rglob("*")):
                if p.name != ".lock":
                    out[str(p)] = p.read_bytes() if p.is_file() else b"<dir>"
    return out


@pytest.fixture
def seeded(store: ImageStore) -> ImageStore:
    """A store that already holds an image, so 'unchanged' means something."""
    store.create("seed:1", [make_tar(("seed", R, b"s"))])
    return store


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def write_dir(tmp_path: Path, name: str, files: dict[str, bytes]) -> str:
    root = tmp_path / name
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return str(root)


def refused(store: ImageStore, path: str, match: str, **kw) -> None:
    before = snapshot(store)
    with pytest.raises(CtrError, match=match):
        import_image(store, path, **kw)
    assert snapshot(store) == before, "a failed import left something behind"
    assert not list(store.root.glob(".ingest-*"))


# --- --change -------------------------------------------------------------------------


@pytest.mark.parametrize("changes, expected", [
    (['CMD ["sh", "-c", "echo hi"]'], ImageConfig(cmd=("sh", "-c", "echo hi"))),
    (["CMD echo hi"], ImageConfig(cmd=("/bin/sh", "-c", "echo hi"))),
    (["cmd [not json"], ImageConfig(cmd=("/bin/sh", "-c", "[not json"))),
    (["CMD []"], ImageConfig()),
    (['ENTRYPOINT ["/app", "--flag"]', "CMD --help"], ImageConfig(entrypoint=("/app", "--flag"),
                                                                   cmd=("/bin/sh", "-c", "--help"))),
    (["ENTRYPOINT /app run"], ImageConfig(entrypoint=("/bin/sh", "-c", "/app run"))),
    (['ENV A=1 B="two words" C=a\\ b'], ImageConfig(env=("A=1", "B=two words", "C=a b"))),
    (["ENV LEGACY some value here"], ImageConfig(env=("LEGACY=some value here",))),
    (["ENV A=1", "ENV B=$A-${A}-${NOPE:-dflt}-${A:+set} C='$A'"], ImageConfig(env=("A=1", "B=1-1-dflt-set", "C=$A"))),
    (["ENV A=1 B=$A"], ImageConfig(env=("A=1", "B="))),  # Docker: words use the env before the line
    (["ENV A=1", "ENV A=2"], ImageConfig(env=("A=2",))),
    (["WORKDIR /srv", "WORKDIR app/../data"], ImageConfig(workdir="/srv/data")),
    (["WORKDIR rel"], ImageConfig(workdir="/rel")),
    (["ENV D=/opt", "WORKDIR $D/x"], ImageConfig(env=("D=/opt",), workdir="/opt/x")),
    (["USER nobody:nogroup"], ImageConfig(user="nobody:nogroup")),
    (["  user\t1000  "], ImageConfig(user="1000")),
])
def test_parse_changes(changes: list[str], expected: ImageConfig) -> None:
    assert parse_changes(changes)[0] == expected


def test_parse_changes_labels() -> None:
    assert parse_changes(['LABEL a=b "c d"=e'])[1] == {"a": "b", "c d": "e"}


@pytest.mark.parametrize("change, match", [
    ("RUN echo hi", "RUN is not supported"),
    ("EXPOSE 80", "EXPOSE is not supported"),
    ("ENV", "ENV needs an argument"),
    ("ENV A", "ENV needs KEY=VALUE"),
    ("ENV A=1 =2", "is not KEY=VALUE"),
    ("ENV A=\"open", "unterminated double quote"),
    ("ENV A='open", "unterminated single quote"),
    ("ENV A=${B", "missing '}'"),
    ("ENV A=${B?x}", "bad substitution"),
    ("USER", "USER needs an argument"),
    ("CMD", "needs a command"),
])
def test_parse_changes_refuses(change: str, match: str) -> None:
    with pytest.raises(InvalidSpec, match=match):
        parse_changes([change])


# --- format detection -----------------------------------------------------------------


def _detect(path: str, store: ImageStore) -> str:
    with store.ingest() as ingest, image_import._open_source(path, ingest) as (_, archive, _kind):
        return detect_format(archive)


def test_detect_format(tmp_path: Path, store: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    oci = oci_layout([entry(manifest)], blobs)
    cases = {
        "rootfs.tar": (make_tar(("etc", D), ("etc/motd", R, b"x")), "rootfs"),
        "rootfs.tar.gz": (gzip.compress(GOOD_LAYER), "rootfs"),
        "rootfs-with-manifest-file.tar": (files_tar({"manifest.json": b'{"not": "docker"}'}), "rootfs"),
        "save.tar": (files_tar(docker_archive([GOOD_LAYER])), "docker-archive"),
        "save.tar.gz": (gzip.compress(files_tar(docker_archive([GOOD_LAYER]))), "docker-archive"),
        "oci.tar": (files_tar(oci), "oci"),
        "docker25.tar": (files_tar({**oci, "manifest.json": b"[]"}), "oci"),
    }
    for name, (data, expected) in cases.items():
        assert _detect(write(tmp_path, name, data), store) == expected, name
    assert _detect(write_dir(tmp_path, "oci-dir", oci), store) == "oci"
    assert _detect(write_dir(tmp_path, "save-dir", docker_archive([GOOD_LAYER])), store) == "docker-archive"


def test_not_an_archive_is_refused(tmp_path: Path, seeded: ImageStore) -> None:
    refused(seeded, write(tmp_path, "x.txt", b"just some text\n" * 100), "not a tar archive", name="x")
    refused(seeded, write(tmp_path, "x.gz", gzip.compress(b"text, not tar\n" * 100)), "not a tar archive", name="x")
    with pytest.raises(NotFound, match="no such file"):
        import_image(seeded, str(tmp_path / "missing.tar"), name="x")
    (tmp_path / "emptydir").mkdir()
    refused(seeded, str(tmp_path / "emptydir"), "neither an OCI image layout")


# --- rootfs tarballs ------------------------------------------------------------------


def test_import_rootfs_with_changes(tmp_path: Path, store: ImageStore) -> None:
    path = write(tmp_path, "rootfs.tar.gz", gzip.compress(GOOD_LAYER))
    [image] = import_image(store, path, name="myroot", changes=['CMD ["/bin/hello"]', "ENV A=1", "WORKDIR /etc",
                                                                  "USER 1000", "LABEL k=v"])
    assert image.name == "myroot:latest"
    assert image.config == ImageConfig(cmd=("/bin/hello",), env=("A=1",), workdir="/etc", user="1000")
    assert image.labels == (("k", "v"),)
    assert image.diff_ids == (sha256(GOOD_LAYER),)
    assert image.layer_digests == (sha256(gzip.compress(GOOD_LAYER)),)  # stored as given
    assert image.architecture == HOST["architecture"] and image.os == "linux"
    manifest = json.loads(store.manifest(image))
    assert manifest["layers"][0]["mediaType"] == MEDIA_LAYER_GZIP


def test_import_rootfs_needs_a_name_and_changes_only_apply_to_it(tmp_path: Path, seeded: ImageStore) -> None:
    refused(seeded, write(tmp_path, "r.tar", GOOD_LAYER), "needs --name")
    save = write(tmp_path, "save.tar", files_tar(docker_archive([GOOD_LAYER])))
    refused(seeded, save, "--change applies to root filesystem tarballs only", changes=["CMD x"])


def hostile_layers() -> dict[str, tuple[bytes, str]]:
    return {
        "absolute": (make_tar(("/etc/passwd", R, b"x")), "is an absolute path"),
        "dot-dot": (make_tar(("a/../../x", R, b"x")), "has a '..' component"),
        "through symlink": (make_tar(("lnk", S, "/etc"), ("lnk/passwd", R, b"x")), "goes through the symlink 'lnk'"),
        "symlink leaving": (make_tar(("a", D), ("a/up", S, "../../etc/shadow")), "leads outside the image root"),
        "hard link leaving": (make_tar(("hl", L, "../etc/passwd")), "hard link target '../etc/passwd'"),
        "hard link absolute": (make_tar(("hl", L, "/etc/passwd")), "is an absolute path"),
    }


@pytest.mark.parametrize("case", list(hostile_layers()))
def test_hostile_rootfs_is_refused(case: str, tmp_path: Path, seeded: ImageStore) -> None:
    layer, match = hostile_layers()[case]
    refused(seeded, write(tmp_path, "evil.tar", layer), f"unsafe layer .*{match}", name="evil")


def test_truncated_gzip_rootfs(tmp_path: Path, seeded: ImageStore) -> None:
    data = gzip.compress(GOOD_LAYER + os.urandom(20000))
    refused(seeded, write(tmp_path, "cut.tar.gz", data[: len(data) // 2]), "corrupt or truncated", name="cut")


def test_corrupt_gzip_rootfs(tmp_path: Path, seeded: ImageStore) -> None:
    data = bytearray(gzip.compress(GOOD_LAYER * 20))
    data[len(data) // 2] ^= 0xFF
    refused(seeded, write(tmp_path, "bad.tar.gz", bytes(data)), "corrupt or truncated", name="bad")


def test_zstd(tmp_path: Path, store: ImageStore) -> None:
    try:
        import zstandard
    except ImportError:
        zstandard = None
    data = b"\x28\xb5\x2f\xfd" + b"\x00" * 40 if zstandard is None else zstandard.ZstdCompressor().compress(GOOD_LAYER)
    path = write(tmp_path, "r.tar.zst", data)
    if zstandard is None:
        refused(store, path, "zstd-compressed, which needs the zstandard package", name="z")
        return
    [image] = import_image(store, path, name="z")
    assert image.diff_ids == (sha256(GOOD_LAYER),)
    assert json.loads(store.manifest(image))["layers"][0]["mediaType"] == images.MEDIA_LAYER_ZSTD
    assert [p.name for p in store.layer_paths(image)] == [sha256(GOOD_LAYER)[7:]]


# --- docker save archives -------------------------------------------------------------


def test_import_docker_archive(tmp_path: Path, store: ImageStore) -> None:
    top = make_tar(("etc", D), ("etc/.wh.motd", R), ("new", R, b"n"))
    files = docker_archive([GOOD_LAYER, top], tags=["example.com/app:1", "app:2"])
    [a, b] = import_image(store, write(tmp_path, "save.tar", files_tar(files)))
    assert (a.name, b.name) == ("example.com/app:1", "app:2") and a.digest == b.digest
    assert a.config_digest == sha256(config_for(GOOD_LAYER, top))
    assert a.diff_ids == a.layer_digests == (sha256(GOOD_LAYER), sha256(top))


def _two_image_save() -> bytes:
    """`docker save a:1 a:latest b:1`: two images, one with two tags, in one archive."""
    other = make_tar(("b", R, b"b"))
    one, two = docker_archive([GOOD_LAYER], tags=["a:1", "a:latest"]), docker_archive([other], tags=["b:1"])
    manifest = json.loads(one.pop("manifest.json")) + json.loads(two.pop("manifest.json"))
    return files_tar({**one, **two, "manifest.json": json.dumps(manifest).encode()})


def test_docker_archive_of_several_images_imports_all_or_the_one_named(tmp_path: Path, store: ImageStore) -> None:
    path = write(tmp_path, "multi.tar", _two_image_save())
    assert sorted(i.name for i in import_image(store, path)) == ["a:1", "a:latest", "b:1"]
    other = ImageStore(Paths.default(tmp_path / "other"))
    [picked] = import_image(other, path, name="b:1")
    assert picked.diff_ids == (sha256(make_tar(("b", R, b"b"))),)
    assert [i.name for i in other.list()] == ["b:1"]
    with pytest.raises(InvalidSpec, match="holds 2 images, none named c:1: --name picks one of a:1, a:latest, b:1"):
        import_image(other, path, name="c:1")


def test_oci_layout_of_several_images_imports_all_or_the_one_named(tmp_path: Path, store: ImageStore) -> None:
    m1, _, b1 = oci_image(GOOD_LAYER)
    m2, _, b2 = oci_image(make_tar(("two", R, b"2")))
    path = write(tmp_path, "oci.tar", files_tar(oci_layout([entry(m1, name="example.com/one:1"),
                                                            entry(m2, name="example.com/two:1")], {**b1, **b2})))
    assert sorted(i.name for i in import_image(store, path)) == ["example.com/one:1", "example.com/two:1"]
    other = ImageStore(Paths.default(tmp_path / "other"))
    [picked] = import_image(other, path, name="example.com/two:1")
    assert picked.digest == sha256(m2) and [i.name for i in other.list()] == ["example.com/two:1"]
    with pytest.raises(InvalidSpec, match="none named example.com/three:1: --name picks one of example.com/one:1, "
                                          "example.com/two:1"):
        import_image(other, path, name="example.com/three:1")


def test_import_docker_archive_with_linked_duplicate_layer(tmp_path: Path, store: ImageStore) -> None:
    # Old `docker save` links a repeated layer to its first copy.
    files = docker_archive([GOOD_LAYER, GOOD_LAYER], layer_names=["a/layer.tar", "b/layer.tar"])
    files.pop("b/layer.tar")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("b/layer.tar")
        ti.type, ti.linkname = S, "../a/layer.tar"
        tar.addfile(ti)
    [image] = import_image(store, write(tmp_path, "dup.tar", buf.getvalue()), name="dup:1")
    assert image.layer_digests == (sha256(GOOD_LAYER),) * 2


def test_import_docker25_save_layout(tmp_path: Path, store: ImageStore) -> None:
    """Docker 25+: an OCI layout with manifest.json beside it; the OCI manifest digest is kept."""
    manifest, config, blobs = oci_image(GOOD_LAYER)
    docker_manifest = json.dumps([{"Config": f"blobs/sha256/{sha256(config)[7:]}", "RepoTags": ["app:25"],
                                   "Layers": [f"blobs/sha256/{sha256(GOOD_LAYER)[7:]}"]}]).encode()
    files = oci_layout([entry(manifest, name="docker.io/library/app:25",
                              annotations={"org.opencontainers.image.ref.name": "25"})], blobs,
                       extra={"manifest.json": docker_manifest})
    [image] = import_image(store, write(tmp_path, "d25.tar", files_tar(files)))
    assert (image.name, image.digest, image.config_digest) == ("app:25", sha256(manifest), sha256(config))


def test_docker_archive_without_name_needs_one(tmp_path: Path, seeded: ImageStore) -> None:
    path = write(tmp_path, "anon.tar", files_tar(docker_archive([GOOD_LAYER], tags=[])))
    refused(seeded, path, "has no name .* give --name")
    assert import_image(seeded, path, name="named:1")[0].name == "named:1"


@pytest.mark.parametrize("case", list(hostile_layers()))
def test_hostile_docker_archive_layer_is_refused(case: str, tmp_path: Path, seeded: ImageStore) -> None:
    layer, match = hostile_layers()[case]
    path = write(tmp_path, "evil.tar", files_tar(docker_archive([GOOD_LAYER, layer])))
    refused(seeded, path, f"unsafe layer .*{match}")


@pytest.mark.parametrize("member, match", [
    ("/abs/layer.tar", "entry '/abs/layer.tar' is an absolute path"),
    ("../up/layer.tar", "entry '../up/layer.tar' has a '..' component"),
])
def test_hostile_outer_archive_entries(member: str, match: str, tmp_path: Path, seeded: ImageStore) -> None:
    files = docker_archive([GOOD_LAYER])
    files[member] = b"x"
    refused(seeded, write(tmp_path, "evil.tar", files_tar(files)), f"unsafe archive .*{match}")


def test_outer_archive_link_leaving_is_refused(tmp_path: Path, seeded: ImageStore) -> None:
    files = docker_archive([GOOD_LAYER], layer_names=["a/layer.tar"])
    files.pop("a/layer.tar")
    data = files_tar(files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=buf, mode="w") as tar:
        for m in src:
            tar.addfile(m, src.extractfile(m))
        ti = tarfile.TarInfo("a/layer.tar")
        ti.type, ti.linkname = S, "../../etc/passwd"
        tar.addfile(ti)
    refused(seeded, write(tmp_path, "evil.tar", buf.getvalue()), "leads outside")


def test_outer_archive_device_is_refused(tmp_path: Path, seeded: ImageStore) -> None:
    files = docker_archive([GOOD_LAYER])
    data = make_tar(*((name, R, content) for name, content in files.items()), ("null", C))
    refused(seeded, write(tmp_path, "evil.tar", data), "entry 'null' is a device node")


def test_docker_archive_diff_id_mismatch(tmp_path: Path, seeded: ImageStore) -> None:
    other = make_tar(("other", R, b"o"))
    files = docker_archive([GOOD_LAYER], config=config_for(other))
    refused(seeded, write(tmp_path, "bad.tar", files_tar(files)), "does not match its diff_id")


def test_docker_archive_missing_layer(tmp_path: Path, seeded: ImageStore) -> None:
    files = docker_archive([GOOD_LAYER, make_tar(("x", R, b"x"))])
    files.pop(next(n for n in files if n.endswith("layer.tar") and n.startswith(sha256(make_tar(("x", R, b"x")))[7:])))
    refused(seeded, write(tmp_path, "missing.tar", files_tar(files)), "which is not in the archive")


def test_docker_archive_manifest_pointing_outside(tmp_path: Path, seeded: ImageStore) -> None:
    files = docker_archive([GOOD_LAYER], layer_names=["../../etc/passwd"])
    files.pop("../../etc/passwd")
    refused(seeded, write_dir(tmp_path, "save-dir", files), "has a '..' component")


def test_truncated_docker_archive(tmp_path: Path, seeded: ImageStore) -> None:
    big = make_tar(("big", R, os.urandom(200_000)))
    data = files_tar(docker_archive([big]))
    # manifest.json and config first, so the cut falls into the layer
    files = docker_archive([big])
    order = ["manifest.json", next(n for n in files if n.endswith(".json") and n != "manifest.json")]
    ordered = {n: files[n] for n in order} | {n: d for n, d in files.items() if n not in order}
    data = files_tar(ordered)
    refused(seeded, write(tmp_path, "cut.tar", data[: len(data) - 100_000]), "truncated|corrupt|not a readable tar")


def test_truncated_gzip_docker_archive(tmp_path: Path, seeded: ImageStore) -> None:
    data = gzip.compress(files_tar(docker_archive([make_tar(("big", R, os.urandom(100_000)))])))
    refused(seeded, write(tmp_path, "cut.tar.gz", data[:-5000]), "corrupt or truncated \\(gzip\\)")


# --- OCI layouts ----------------------------------------------------------------------


def test_import_oci_dir_and_tar(tmp_path: Path, store: ImageStore) -> None:
    manifest, config, blobs = oci_image(GOOD_LAYER, gzip.compress(make_tar(("two", R, b"2"))))
    files = oci_layout([entry(manifest)], blobs)
    [a] = import_image(store, write_dir(tmp_path, "layout", files))
    [b] = import_image(store, write(tmp_path, "layout.tar", files_tar(files)), name="other:2")
    assert a.name == "example.com/app:1" and b.name == "other:2"
    assert a.digest == b.digest == sha256(manifest) and a.config_digest == sha256(config)


def test_oci_names(tmp_path: Path, store: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    tag_only = oci_layout([entry(manifest, name=None, annotations={"org.opencontainers.image.ref.name": "v1"})], blobs)
    with pytest.raises(InvalidSpec, match="carries no name"):
        import_image(store, write(tmp_path, "t.tar", files_tar(tag_only)))
    full = oci_layout([entry(manifest, name=None, annotations={"org.opencontainers.image.ref.name": "x.io/a:v1"})], blobs)
    assert import_image(store, write(tmp_path, "f.tar", files_tar(full)))[0].name == "x.io/a:v1"


def other_platform() -> dict:
    return {"os": "linux", "architecture": "s390x" if HOST["architecture"] != "s390x" else "ppc64le"}


def test_oci_nested_multi_platform_index(tmp_path: Path, store: ImageStore) -> None:
    mine, mine_config, mine_blobs = oci_image(GOOD_LAYER, cmd=["mine"])
    theirs, _, their_blobs = oci_image(make_tar(("foreign", R, b"f")), platform=other_platform(), cmd=["theirs"])
    attest = canonical({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(b"{}"), "size": 2}, "layers": []})
    inner = canonical({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [
        entry(theirs, name=None, platform=other_platform()),
        entry(attest, name=None, platform={"os": "unknown", "architecture": "unknown"}),
        entry(mine, name=None, platform=HOST),
    ]})
    outer = canonical({"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                       "manifests": [entry(inner, name=None, media=MEDIA_INDEX)]})
    # the other platform's blobs are absent, as in a layout that skopeo copied for one platform
    blobs = {**mine_blobs, sha256(inner): inner, sha256(outer): outer, sha256(theirs): theirs}
    files = oci_layout([entry(outer, media=MEDIA_INDEX)], blobs)
    [image] = import_image(store, write(tmp_path, "multi.tar", files_tar(files)))
    assert image.digest == sha256(mine) and image.config_digest == sha256(mine_config)
    assert image.config.cmd == ("mine",)


def test_oci_top_level_platforms_and_no_match(tmp_path: Path, seeded: ImageStore) -> None:
    mine, _, mine_blobs = oci_image(GOOD_LAYER, cmd=["mine"])
    theirs, _, their_blobs = oci_image(make_tar(("f", R, b"f")), platform=other_platform())
    files = oci_layout([entry(theirs, name=None, platform=other_platform()), entry(mine, name=None, platform=HOST)],
                       {**mine_blobs, **their_blobs})
    [image] = import_image(seeded, write(tmp_path, "top.tar", files_tar(files)), name="multi:1")
    assert image.config.cmd == ("mine",)
    only_theirs = oci_layout([entry(theirs, name=None, platform=other_platform()),
                              entry(theirs, name=None, platform={"os": "linux", "architecture": "mips64le"})],
                             their_blobs)
    before = snapshot(seeded)
    with pytest.raises(NotFound, match=f"no image for this machine's platform linux/{HOST['architecture']}"):
        import_image(seeded, write(tmp_path, "theirs.tar", files_tar(only_theirs)), name="x")
    assert snapshot(seeded) == before


@pytest.mark.parametrize("case", list(hostile_layers()))
def test_hostile_oci_layer_is_refused(case: str, tmp_path: Path, seeded: ImageStore) -> None:
    layer, match = hostile_layers()[case]
    manifest, _, blobs = oci_image(GOOD_LAYER, layer)
    refused(seeded, write(tmp_path, "evil.tar", files_tar(oci_layout([entry(manifest)], blobs))),
            f"unsafe layer .*{match}")


def test_oci_digest_mismatch(tmp_path: Path, seeded: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    files = oci_layout([entry(manifest)], blobs)
    files[f"blobs/sha256/{sha256(GOOD_LAYER)[7:]}"] = make_tar(("swapped", R, b"!"))
    refused(seeded, write(tmp_path, "swap.tar", files_tar(files)), f"does not match its digest {sha256(GOOD_LAYER)}")


def test_oci_manifest_digest_mismatch(tmp_path: Path, seeded: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    files = oci_layout([entry(manifest)], blobs)
    files[f"blobs/sha256/{sha256(manifest)[7:]}"] = manifest.replace(b'"schemaVersion"', b'"schemaVersioN"')
    refused(seeded, write_dir(tmp_path, "swap", files), "does not match its digest")


def test_oci_missing_blob(tmp_path: Path, seeded: ImageStore) -> None:
    manifest, config, blobs = oci_image(GOOD_LAYER)
    for missing in (sha256(GOOD_LAYER), sha256(config), sha256(manifest)):
        files = oci_layout([entry(manifest)], blobs, drop=(missing,))
        refused(seeded, write(tmp_path, "missing.tar", files_tar(files)),
                f"refers to 'blobs/sha256/{missing[7:]}', which is not in the archive")


def test_oci_truncated_gzip_layer(tmp_path: Path, seeded: ImageStore) -> None:
    # The descriptor matches the truncated bytes: only unpacking can tell.
    cut = gzip.compress(make_tar(("f", R, os.urandom(50_000))))[:-2000]
    config = canonical({"architecture": HOST["architecture"], "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": [sha256(b"whatever")]}})
    manifest = canonical({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                          "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(config), "size": len(config)},
                          "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": sha256(cut), "size": len(cut)}]})
    files = oci_layout([entry(manifest)], {sha256(x): x for x in (cut, config, manifest)})
    refused(seeded, write(tmp_path, "cut.tar", files_tar(files)), "corrupt or truncated")


def test_oci_size_mismatch(tmp_path: Path, seeded: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    doc = json.loads(manifest)
    doc["layers"][0]["size"] += 10
    manifest = canonical(doc)
    blobs = {d: b for d, b in blobs.items() if b != oci_image(GOOD_LAYER)[0]} | {sha256(manifest): manifest}
    refused(seeded, write(tmp_path, "size.tar", files_tar(oci_layout([entry(manifest)], blobs))), "is truncated")


def test_oci_layout_dir_symlink_leaving_is_refused(tmp_path: Path, seeded: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    root = Path(write_dir(tmp_path, "layout", oci_layout([entry(manifest)], blobs, drop=(sha256(GOOD_LAYER),))))
    outside = tmp_path / "outside"
    outside.write_bytes(GOOD_LAYER)
    (root / "blobs/sha256" / sha256(GOOD_LAYER)[7:]).symlink_to(outside)
    refused(seeded, str(root), "leads outside the directory")


def test_not_a_container_image(tmp_path: Path, seeded: ImageStore) -> None:
    manifest, config, blobs = oci_image(GOOD_LAYER)
    doc = json.loads(manifest)
    doc["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    manifest = canonical(doc)
    blobs[sha256(manifest)] = manifest
    refused(seeded, write(tmp_path, "helm.tar", files_tar(oci_layout([entry(manifest)], blobs))),
            "is not a container image")


# --- round trips and ctr's own exports ---------------------------------------------------


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
        assert (third.digest, third.layer_digests, third.config_digest) == (again.digest, again.layer_digests,
                                                                          again.config_digest)


def test_export_leaves_no_partial_file(tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create("e:1", [GOOD_LAYER])
    dest = tmp_path / "out" / "e.tar"
    dest.parent.mkdir()

    def boom(*a, **kw):
        raise CtrError("disk full")

    monkeypatch.setattr(image_import, "export_oci", boom)
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
    layer = make_tar(("dev", D), ("dev/null", C), ("dev/sda", tarfile.BLKTYPE), ("run", D),
                     ("run/initctl", tarfile.FIFOTYPE), ("bin", D), ("bin/a", R, b"a"), ("bin/b", L, "bin/a"))
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


def test_import_replaces_a_name_and_collects_old_blobs(tmp_path: Path, store: ImageStore) -> None:
    old = store.create("app:1", [make_tar(("old", R, b"o"))])
    manifest, _, blobs = oci_image(GOOD_LAYER)
    [new] = import_image(store, write(tmp_path, "n.tar", files_tar(oci_layout([entry(manifest, name="app:1")], blobs))))
    assert store.get("app:1").digest == new.digest != old.digest
    assert not store.blob_path(old.layer_digests[0]).exists()


def test_stale_ingest_is_swept_but_live_one_kept(store: ImageStore) -> None:
    live = store.ingest()
    try:
        dead = store.root / ".ingest-dead"
        dead.mkdir()
        (dead / ".lock").touch()
        (dead / "junk").write_bytes(b"x")
        store.create("x:1", [GOOD_LAYER])  # takes the store lock, which sweeps
        assert not dead.exists() and live.dir.exists()
    finally:
        live.close()
    assert not live.dir.exists()


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
        "from ctr.images.archive import import_image, export_image\n"
        "store = ImageStore(Paths.default(sys.argv[1]))\n"
        "import_image(store, sys.argv[2], name='big:1')\n"
        "export_image(store, 'big:1', sys.argv[3], 'docker-archive')\n"
        "import_image(ImageStore(Paths.default(sys.argv[1] + '2')), sys.argv[3])\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of a large pytest
        # process (vfork shares its memory) would report the parent's peak
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "root"), str(tmp_path / "big.tar.gz"),
                        str(tmp_path / "out.tar")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 80 << 10, f"peak RSS {int(r.stdout) >> 10} MiB"  # KiB: well under the layer's 96 MiB
