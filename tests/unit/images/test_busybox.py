"""The built-in busybox: found on the host, built once (also concurrently), reproducible."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import tarfile
import threading
from pathlib import Path

import pytest

from ctr.errors import NotFound
from ctr.images import busybox as builtin
from ctr.images.busybox import BUILTIN_PATH_ENV
from ctr.images.model import MEDIA_CONFIG, MEDIA_LAYER, MEDIA_MANIFEST, REF_ANNOTATION, ImageConfig
from ctr.images.store import ImageStore
from ctr.state.paths import Paths
from tests.unit.images.helpers import sha256


def test_host_busybox_is_static() -> None:
    path, arch = builtin.find_busybox()
    assert builtin._elf_info(path) == (True, arch)
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
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
        )
        assert tar.extractfile("etc/group").read() == b"root:x:0:\nnobody:x:65534:\n"  # type: ignore[union-attr]
    for m in members.values():
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0), m.name
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var", "home", "proc", "sys", "dev", "run"):
        assert members[d].isdir(), d
    assert members["tmp"].mode == 0o1777
    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    busybox, _ = builtin.find_busybox()
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
    threads = [
        threading.Thread(target=lambda: results.append(_get_busybox_digest(str(store.paths.data)))) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    _assert_single_clean_image(store)


def test_missing_busybox_says_how_to_install(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr(builtin, "BUSYBOX_CANDIDATES", ("/nonexistent/busybox",))
    with pytest.raises(NotFound, match="apt-get install busybox-static"):
        store.get("busybox")
    assert not (store.paths.images / "index.json").exists()
    assert list(store.blobs.iterdir()) == []


def test_dynamic_busybox_is_refused(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert builtin._elf_info("/bin/ls")[0] is False  # type: ignore[index]
    monkeypatch.setattr("shutil.which", lambda name: "/bin/ls")
    monkeypatch.setattr(builtin, "BUSYBOX_CANDIDATES", ())
    with pytest.raises(NotFound, match="dynamically linked.*apt-get install busybox-static"):
        store.get("busybox")
