"""Layer tars, image archives and OCI layouts built in memory, for the image tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from ctr.errors import CtrError
from ctr.images.archive import import_image
from ctr.images.model import MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, host_platform
from ctr.images.store import ImageStore

R, D, S, L, C = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
HOST = host_platform()
DIGEST = "sha256:" + "ab" * 32


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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


def layer_threads() -> list[str]:
    """The unpack's helper threads still alive (the hash of a plain blob, the read-ahead of a stream)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("ctr-layer-")]


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def files_tar(files: dict[str, bytes]) -> bytes:
    return make_tar(*((name, R, data) for name, data in files.items()))


GOOD_LAYER = make_tar(
    ("bin", D),
    ("bin/hello", R, b"#!/bin/sh\necho hi\n"),
    ("bin/sh", S, "/bin/busybox"),
    ("etc", D),
    ("etc/motd", R, b"hello\n"),
    ("etc/link", L, "etc/motd"),
)


def config_for(*layers: bytes, platform: dict | None = None, cmd: list[str] | None = None) -> bytes:
    p = platform or HOST
    doc = {
        "architecture": p["architecture"],
        "os": p["os"],
        "config": {"Cmd": cmd or ["sh"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": [sha256(gzip.decompress(x) if x[:2] == b"\x1f\x8b" else x) for x in layers],
        },
    }
    return canonical(doc)


def oci_image(*layers: bytes, platform: dict | None = None, cmd: list[str] | None = None) -> tuple[bytes, bytes, dict]:
    """(manifest, config, blobs by digest) of an OCI image made of `layers`."""
    config = config_for(*layers, platform=platform, cmd=cmd)
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": MEDIA_LAYER_GZIP if x[:2] == b"\x1f\x8b" else MEDIA_LAYER,
                    "digest": sha256(x),
                    "size": len(x),
                }
                for x in layers
            ],
        }
    )
    blobs = {sha256(x): x for x in (*layers, config, manifest)}
    return manifest, config, blobs


def oci_layout(
    index_entries: list[dict],
    blobs: dict[str, bytes],
    *,
    drop: tuple[str, ...] = (),
    extra: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index_entries}).encode(),
    }
    for digest, data in blobs.items():
        if digest not in drop:
            files[f"blobs/sha256/{digest[7:]}"] = data
    files.update(extra or {})
    return files


def entry(
    manifest: bytes,
    name: str | None = "example.com/app:1",
    media: str = MEDIA_MANIFEST,
    platform: dict | None = None,
    annotations: dict | None = None,
) -> dict:
    out: dict = {"mediaType": media, "digest": sha256(manifest), "size": len(manifest)}
    ann = dict(annotations or {})
    if name:
        ann["io.containerd.image.name"] = name
    if ann:
        out["annotations"] = ann
    if platform:
        out["platform"] = platform
    return out


def docker_archive(
    layers: list[bytes],
    tags: list[str] | None = None,
    config: bytes | None = None,
    layer_names: list[str] | None = None,
) -> dict[str, bytes]:
    config = config or config_for(*layers)
    names = layer_names or [f"{sha256(x)[7:]}/layer.tar" for x in layers]
    files = {f"{sha256(config)[7:]}.json": config}
    files.update(dict(zip(names, layers)))
    files["manifest.json"] = json.dumps(
        [
            {
                "Config": f"{sha256(config)[7:]}.json",
                "RepoTags": ["example.com/app:1"] if tags is None else tags,
                "Layers": names,
            }
        ]
    ).encode()
    return files


def snapshot(store: ImageStore) -> dict[str, bytes]:
    """Everything under the image root and the layers dir except the lock files."""
    out = {}
    for base in (store.root, store.paths.layers):
        if base.exists():
            for p in sorted(base.rglob("*")):
                if p.name != ".lock":
                    out[str(p)] = p.read_bytes() if p.is_file() else b"<dir>"
    return out


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


def layer_dirs(store: ImageStore) -> list[str]:
    return sorted(p.name for p in store.paths.layers.iterdir())
