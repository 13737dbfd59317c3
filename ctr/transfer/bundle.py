"""The bundle that carries one container (docs/bundle-format.md): an OCI image
layout tar holding the base image, the container's writable layer (ctr.transfer.layer)
as one more blob, and `ctr-bundle.json` describing the container; write_bundle() and
Bundle make and read it.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from ctr.errors import CtrError, InvalidSpec, NotFound
from ctr.images.reference import hex_digest

BUNDLE_FILE = "ctr-bundle.json"
BUNDLE_VERSION = 1
BUNDLE_LIMIT = 4 << 20


@dataclass
class BundleInfo:
    """What ctr-bundle.json says (docs/bundle-format.md)."""

    name: str
    backend: str
    spec: dict
    hostname: str
    image: dict  # name, digest, config_digest, included
    layer: dict  # mediaType, digest, size, tree_digest
    container: dict = field(default_factory=dict)  # id, created, status, exit_code of the source
    created: str = ""
    version: int = BUNDLE_VERSION

    def to_json(self) -> dict:
        return {
            "ctrBundleVersion": self.version,
            "created": self.created,
            "name": self.name,
            "backend": self.backend,
            "hostname": self.hostname,
            "spec": self.spec,
            "image": self.image,
            "layer": self.layer,
            "container": self.container,
        }

    @classmethod
    def from_json(cls, doc: dict, what: str) -> BundleInfo:
        version = doc.get("ctrBundleVersion")
        if version != BUNDLE_VERSION:
            raise CtrError(f"bundle {what}: unsupported ctrBundleVersion {version!r} (this ctr reads {BUNDLE_VERSION})")
        try:
            info = cls(
                name=str(doc["name"]),
                backend=str(doc.get("backend", "")),
                spec=dict(doc["spec"]),
                hostname=str(doc.get("hostname") or ""),
                image=dict(doc["image"]),
                layer=dict(doc["layer"]),
                container=dict(doc.get("container") or {}),
                created=str(doc.get("created") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CtrError(f"bundle {what}: {BUNDLE_FILE} is malformed: {exc}") from None
        for key in ("digest", "tree_digest"):
            if not isinstance(info.layer.get(key), str) or not info.layer[key].startswith("sha256:"):
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} has no valid layer.{key}")
        return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
    tar.addfile(ti, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(ti)


def write_bundle(
    out: BinaryIO, info: BundleInfo, layer_file: str | os.PathLike, image_tar: str | os.PathLike | None
) -> None:
    """Write a bundle to `out` (may be a pipe): ctr-bundle.json first, so a reader learns
    what it holds before the big parts; then the OCI layout (when the image is included)
    and the writable layer as blobs/sha256/<digest>."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, BUNDLE_FILE, json.dumps(info.to_json(), indent=1, sort_keys=True).encode() + b"\n")
        names: set[str] = set()
        if image_tar is not None:
            with tarfile.open(image_tar, mode="r:") as src:
                for member in src:
                    names.add(member.name)
                    tar.addfile(member, src.extractfile(member) if member.isfile() else None)
        else:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(
                tar,
                "index.json",
                json.dumps(
                    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
                ).encode(),
            )
            _add_dir(tar, "blobs")
            _add_dir(tar, "blobs/sha256")
        blob = f"blobs/sha256/{hex_digest(info.layer['digest'])}"
        if blob not in names:  # an empty layer may equal a layer of the image
            ti = tarfile.TarInfo(blob)
            ti.size, ti.mode, ti.mtime = os.path.getsize(layer_file), 0o644, 0
            with open(layer_file, "rb") as f:
                tar.addfile(ti, f)


class Bundle:
    """An open bundle file: its description, and its writable layer to read."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        what = str(path)
        try:
            self.tar = tarfile.open(self.path, mode="r:")
        except FileNotFoundError:
            raise NotFound(f"no such bundle: {path}") from None
        except (tarfile.TarError, OSError) as exc:
            raise CtrError(f"{path} is not a ctr bundle (not a plain tar archive): {exc}") from None
        try:
            members = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}
            meta = members.get(BUNDLE_FILE)
            if meta is None or not meta.isreg():
                raise InvalidSpec(
                    f"{path} is not a ctr bundle: it has no {BUNDLE_FILE} (an image archive? use ctr image import)"
                )
            if meta.size > BUNDLE_LIMIT:
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} is larger than {BUNDLE_LIMIT} bytes")
            try:
                doc = json.loads(self.tar.extractfile(meta).read())  # type: ignore[union-attr]
            except ValueError as exc:
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} is not valid JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise CtrError(f"bundle {what}: {BUNDLE_FILE} is not a JSON object")
            self.info = BundleInfo.from_json(doc, what)
            self.layer_member = members.get(f"blobs/sha256/{hex_digest(self.info.layer['digest'])}")
            if self.layer_member is None or not self.layer_member.isreg():
                raise CtrError(f"bundle {what}: the writable layer blob {self.info.layer['digest']} is missing")
        except BaseException:
            self.tar.close()
            raise

    def open_layer(self) -> IO[bytes]:
        return self.tar.extractfile(self.layer_member)  # type: ignore[return-value]

    def close(self) -> None:
        self.tar.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
