"""Images out of the store as archive files: an OCI image layout tar (export_oci)
or a docker-archive (export_docker_archive), which `docker load` reads, and
`ctr image export`, which writes either to a file that appears whole.
"""

from __future__ import annotations

import json
import os
from typing import IO, TYPE_CHECKING, BinaryIO

from ctr.errors import CtrError, InvalidSpec, NotFound
from ctr.images.busybox import BUILTIN_MTIME
from ctr.images.layers import open_layer
from ctr.images.model import MEDIA_INDEX, REF_ANNOTATION, Image, canonical_json
from ctr.images.reference import full_ref, hex_digest, split_ref
from ctr.images.streams import CHUNK, HashingReader
from ctr.state.files import write_output

if TYPE_CHECKING:
    import tarfile

    from ctr.images.store import ImageStore

EXPORT_FORMATS = ("oci", "docker-archive")


def export_image(store: ImageStore, ref: str, dest: str, fmt: str = "oci") -> Image:
    """Write the image `ref` to `dest` ('-': stdout) as an OCI layout tar or a docker-archive.

    The file appears complete or not at all: written beside `dest`, then renamed.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidSpec(f"unknown export format {fmt!r}: use {' or '.join(EXPORT_FORMATS)}")
    image = store.get(ref)

    def write(out: BinaryIO) -> None:
        if fmt == "oci":
            export_oci(store, image, out)
        else:
            export_docker_archive(store, image, out)

    write_output(dest, write, "an image archive")
    return image


def export_oci(
    store: ImageStore,
    image: Image,
    out: BinaryIO,
    *,
    annotations: dict[str, str] | None = None,
    extra: dict | None = None,
) -> None:
    """Write `image` as an OCI image layout tar that `docker load` also reads.

    oci-layout, index.json (one entry: org.opencontainers.image.ref.name is the
    tag, as skopeo and umoci want it; io.containerd.image.name the full name),
    blobs/sha256/* byte for byte (so every digest survives a round trip), and a
    manifest.json pointing into blobs/, as Docker 25's `docker save` writes it,
    for engines that load only docker archives. `out` may be a pipe.
    """
    import tarfile

    manifest = store.manifest(image)
    _, tag, digest = split_ref(image.name)
    names = {"io.containerd.image.name": full_ref(image.name)}
    if tag:
        names[REF_ANNOTATION] = tag
    entry = {
        "mediaType": image.media_type,
        "digest": image.digest,
        "size": len(manifest),
        "annotations": {**names, **(annotations or {})},
    }
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}
    blob_names = [f"blobs/sha256/{hex_digest(d)}" for d in image.layer_digests]
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{hex_digest(image.config_digest)}",
            "RepoTags": [image.name] if tag and not digest else [],
            "Layers": blob_names,
            **(extra or {}),
        }
    ]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "blobs", 0, None, directory=True)
        _add(tar, "blobs/sha256", 0, None, directory=True)
        done: set[str] = set()
        for blob in (*image.layer_digests, image.config_digest, image.digest):
            if blob in done:
                continue
            done.add(blob)
            path = store.blob_path(blob)
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                raise NotFound(f"blob {blob} of image {image.name} is missing from {store.blobs}") from None
            with f:
                reader = HashingReader(f)
                _add(tar, f"blobs/sha256/{hex_digest(blob)}", os.fstat(f.fileno()).st_size, reader)  # type: ignore[arg-type]
            if reader.digest != blob:
                raise CtrError(f"blob {path} of image {image.name} is corrupt: its content has digest {reader.digest}")
        _add(tar, "oci-layout", *_sized(canonical_json({"imageLayoutVersion": "1.0.0"})))
        _add(tar, "index.json", *_sized(json.dumps(index).encode()))
        _add(tar, "manifest.json", *_sized(json.dumps(docker_manifest).encode()))


def export_docker_archive(store: ImageStore, image: Image, out: BinaryIO, *, extra: dict | None = None) -> None:
    """Write `image` as a docker-archive tar (what `docker save` writes, `docker load` reads).

    manifest.json, the config as <hex>.json, each layer uncompressed as
    <diff_id hex>/layer.tar, and `repositories`. `out` may be a pipe.
    `extra` adds members to the manifest.json entry (docker load ignores them).
    """
    import io
    import tarfile
    import tempfile

    config = store.read_blob(image.config_digest)
    _, tag, digest = split_ref(image.name)
    repo_tags = [image.name] if tag and not digest else []
    layer_names = [f"{hex_digest(d)}/layer.tar" for d in image.diff_ids]
    manifest = [
        {
            "Config": f"{hex_digest(image.config_digest)}.json",
            "RepoTags": repo_tags,
            "Layers": layer_names,
            **(extra or {}),
        }
    ]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, f"{hex_digest(image.config_digest)}.json", len(config), io.BytesIO(config))
        done: set[str] = set()
        for diff_id, blob, name in zip(image.diff_ids, image.layer_digests, layer_names, strict=True):
            if name in done:
                continue
            done.add(name)
            _add(tar, name.split("/")[0], 0, None, directory=True)
            with open_layer(store.blob_path(blob), f"image {image.name}") as (raw, tar_stream):
                if tar_stream is raw:
                    size = store.blob_path(blob).stat().st_size
                    _add(tar, name, size, tar_stream)  # type: ignore[arg-type]
                else:  # a gzip layer: the archive wants it uncompressed, whose size we learn by unpacking
                    with tempfile.TemporaryFile() as plain:
                        while chunk := tar_stream.read(CHUNK):
                            plain.write(chunk)
                        size = plain.tell()
                        plain.seek(0)
                        _add(tar, name, size, plain)
            if tar_stream.digest != diff_id:
                raise CtrError(f"layer {blob} of image {image.name} does not match its diff_id {diff_id}")
        _add(tar, "manifest.json", *_sized(json.dumps(manifest).encode()))
        if repo_tags:
            repo, tag, _ = split_ref(image.name)
            repositories = {repo: {tag: hex_digest(image.diff_ids[-1]) if image.diff_ids else ""}}
            _add(tar, "repositories", *_sized(json.dumps(repositories).encode()))


def _add(tar: tarfile.TarFile, name: str, size: int, src: IO[bytes] | None, directory: bool = False) -> None:
    """A member of an exported archive: a file (0644) or a directory (0755), at the fixed mtime."""
    import tarfile

    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.mtime = tarfile.DIRTYPE if directory else tarfile.REGTYPE, size, BUILTIN_MTIME
    ti.mode = 0o755 if directory else 0o644
    tar.addfile(ti, src)


def _sized(data: bytes) -> tuple[int, IO[bytes]]:
    import io

    return len(data), io.BytesIO(data)
