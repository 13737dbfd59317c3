"""The bundle: a round trip with and without the image layout, and what is not a bundle."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from ctr.errors import CtrError, InvalidSpec
from ctr.transfer.bundle import BUNDLE_FILE, Bundle, BundleInfo, write_bundle
from ctr.transfer.layer import unpack_layer, write_layer
from ctr.transfer.tree import tree_digest
from tests.unit.transfer.helpers import make_upper

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, trusted xattrs)")


def _info(layer_digest: str, tree: str, included: bool) -> BundleInfo:
    return BundleInfo(
        name="web",
        backend="native",
        spec={"image": "busybox:latest", "name": "web", "hostname": "h1"},
        hostname="h1",
        image={
            "name": "busybox:latest",
            "digest": "sha256:" + "a" * 64,
            "config_digest": "sha256:" + "b" * 64,
            "included": included,
        },
        layer={
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": 1,
            "tree_digest": tree,
            "mac": "",
        },
        container={"id": "c" * 64, "status": "exited", "exit_code": 0},
        created="2026-01-01T00:00:00Z",
    )


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
        for name, data in (
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", b'{"manifests":[]}'),
            ("blobs/sha256/" + "d" * 64, b"blob"),
        ):
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
