"""ctr image import: format detection, hostile and broken archives for each import path
(nothing left behind), docker save archives, OCI layouts, platforms."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ctr.errors import InvalidSpec, NotFound
from ctr.images import archive as image_import
from ctr.images import model
from ctr.images.archive import detect_format, import_image
from ctr.images.ingest import Ingest
from ctr.images.model import MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, ImageConfig
from ctr.images.store import ImageStore
from ctr.state.paths import Paths
from tests.unit.images.helpers import (
    GOOD_LAYER,
    HOST,
    C,
    D,
    L,
    R,
    S,
    canonical,
    config_for,
    docker_archive,
    entry,
    files_tar,
    make_tar,
    oci_image,
    oci_layout,
    refused,
    sha256,
    snapshot,
    write,
    write_dir,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (device nodes)")


def _detect(path: str, store: ImageStore) -> str:
    with Ingest(store) as ingest, image_import._open_source(path, ingest) as (_, archive, _kind):
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


def test_import_rootfs_with_changes(tmp_path: Path, store: ImageStore) -> None:
    path = write(tmp_path, "rootfs.tar.gz", gzip.compress(GOOD_LAYER))
    [image] = import_image(
        store, path, name="myroot", changes=['CMD ["/bin/hello"]', "ENV A=1", "WORKDIR /etc", "USER 1000", "LABEL k=v"]
    )
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
    assert json.loads(store.manifest(image))["layers"][0]["mediaType"] == model.MEDIA_LAYER_ZSTD
    assert [p.name for p in store.layer_paths(image)] == [sha256(GOOD_LAYER)[7:]]


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
    path = write(
        tmp_path,
        "oci.tar",
        files_tar(oci_layout([entry(m1, name="example.com/one:1"), entry(m2, name="example.com/two:1")], {**b1, **b2})),
    )
    assert sorted(i.name for i in import_image(store, path)) == ["example.com/one:1", "example.com/two:1"]
    other = ImageStore(Paths.default(tmp_path / "other"))
    [picked] = import_image(other, path, name="example.com/two:1")
    assert picked.digest == sha256(m2) and [i.name for i in other.list()] == ["example.com/two:1"]
    with pytest.raises(
        InvalidSpec, match="none named example.com/three:1: --name picks one of example.com/one:1, example.com/two:1"
    ):
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
    docker_manifest = json.dumps(
        [
            {
                "Config": f"blobs/sha256/{sha256(config)[7:]}",
                "RepoTags": ["app:25"],
                "Layers": [f"blobs/sha256/{sha256(GOOD_LAYER)[7:]}"],
            }
        ]
    ).encode()
    files = oci_layout(
        [entry(manifest, name="docker.io/library/app:25", annotations={"org.opencontainers.image.ref.name": "25"})],
        blobs,
        extra={"manifest.json": docker_manifest},
    )
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


@pytest.mark.parametrize(
    "member, match",
    [
        ("/abs/layer.tar", "entry '/abs/layer.tar' is an absolute path"),
        ("../up/layer.tar", "entry '../up/layer.tar' has a '..' component"),
    ],
)
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
    full = oci_layout(
        [entry(manifest, name=None, annotations={"org.opencontainers.image.ref.name": "x.io/a:v1"})], blobs
    )
    assert import_image(store, write(tmp_path, "f.tar", files_tar(full)))[0].name == "x.io/a:v1"


def other_platform() -> dict:
    return {"os": "linux", "architecture": "s390x" if HOST["architecture"] != "s390x" else "ppc64le"}


def test_oci_nested_multi_platform_index(tmp_path: Path, store: ImageStore) -> None:
    mine, mine_config, mine_blobs = oci_image(GOOD_LAYER, cmd=["mine"])
    theirs, _, their_blobs = oci_image(make_tar(("foreign", R, b"f")), platform=other_platform(), cmd=["theirs"])
    attest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(b"{}"), "size": 2},
            "layers": [],
        }
    )
    inner = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                entry(theirs, name=None, platform=other_platform()),
                entry(attest, name=None, platform={"os": "unknown", "architecture": "unknown"}),
                entry(mine, name=None, platform=HOST),
            ],
        }
    )
    outer = canonical(
        {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry(inner, name=None, media=MEDIA_INDEX)]}
    )
    # the other platform's blobs are absent, as in a layout that skopeo copied for one platform
    blobs = {**mine_blobs, sha256(inner): inner, sha256(outer): outer, sha256(theirs): theirs}
    files = oci_layout([entry(outer, media=MEDIA_INDEX)], blobs)
    [image] = import_image(store, write(tmp_path, "multi.tar", files_tar(files)))
    assert image.digest == sha256(mine) and image.config_digest == sha256(mine_config)
    assert image.config.cmd == ("mine",)


def test_oci_top_level_platforms_and_no_match(tmp_path: Path, seeded: ImageStore) -> None:
    mine, _, mine_blobs = oci_image(GOOD_LAYER, cmd=["mine"])
    theirs, _, their_blobs = oci_image(make_tar(("f", R, b"f")), platform=other_platform())
    files = oci_layout(
        [entry(theirs, name=None, platform=other_platform()), entry(mine, name=None, platform=HOST)],
        {**mine_blobs, **their_blobs},
    )
    [image] = import_image(seeded, write(tmp_path, "top.tar", files_tar(files)), name="multi:1")
    assert image.config.cmd == ("mine",)
    only_theirs = oci_layout(
        [
            entry(theirs, name=None, platform=other_platform()),
            entry(theirs, name=None, platform={"os": "linux", "architecture": "mips64le"}),
        ],
        their_blobs,
    )
    before = snapshot(seeded)
    with pytest.raises(NotFound, match=f"no image for this machine's platform linux/{HOST['architecture']}"):
        import_image(seeded, write(tmp_path, "theirs.tar", files_tar(only_theirs)), name="x")
    assert snapshot(seeded) == before


@pytest.mark.parametrize("case", list(hostile_layers()))
def test_hostile_oci_layer_is_refused(case: str, tmp_path: Path, seeded: ImageStore) -> None:
    layer, match = hostile_layers()[case]
    manifest, _, blobs = oci_image(GOOD_LAYER, layer)
    refused(
        seeded, write(tmp_path, "evil.tar", files_tar(oci_layout([entry(manifest)], blobs))), f"unsafe layer .*{match}"
    )


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
        refused(
            seeded,
            write(tmp_path, "missing.tar", files_tar(files)),
            f"refers to 'blobs/sha256/{missing[7:]}', which is not in the archive",
        )


def test_oci_truncated_gzip_layer(tmp_path: Path, seeded: ImageStore) -> None:
    # The descriptor matches the truncated bytes: only unpacking can tell.
    cut = gzip.compress(make_tar(("f", R, os.urandom(50_000))))[:-2000]
    config = canonical(
        {
            "architecture": HOST["architecture"],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(b"whatever")]},
        }
    )
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": sha256(cut), "size": len(cut)}],
        }
    )
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
    refused(
        seeded, write(tmp_path, "helm.tar", files_tar(oci_layout([entry(manifest)], blobs))), "is not a container image"
    )
