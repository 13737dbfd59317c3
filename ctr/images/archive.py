"""Images into the store from files: `ctr image import`.

import takes, detected from the content (never the file name):

  rootfs          a plain root-filesystem tarball, as `docker import` takes it:
                  one layer, a config made here (--change CMD/ENTRYPOINT/ENV/...)
  docker-archive  what `docker save` writes: manifest.json, <config>.json and
                  layer tars (Docker 25+ puts them under blobs/sha256/)
  oci             an OCI image layout, as a directory or a tar: index.json,
                  possibly nested indexes, from which this machine's platform
                  is picked; Docker 25's `docker save` is one too (and is read
                  as one, which keeps its manifest digest)

each plain, gzip or (with the zstandard package) zstd compressed, or '-' for
standard input. Everything is untrusted: every blob is checked against its
digest and every layer scanned (layers.scan_layer) while it is staged in an
Ingest beside the store; only a fully checked import is published, so a failed
one leaves no blob, index entry or directory behind.

Device nodes, fifos and hard links in layers are accepted, as Docker accepts
them (a debootstrap root, a `docker save` of Debian, carry /dev/null and the like);
what keeps a container from opening a host device through one is the device
policy every backend puts it under (ctr.native.devices), and /dev inside is
always the backend's own tmpfs. Entries of the outer archive (a docker save or
OCI layout tar) are still only files, directories and links.

The way out, `ctr image export`, is ctr.images.export; the --change grammar of
a rootfs import is ctr.images.changes.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ctr.errors import CtrError, InvalidSpec, NotFound
from ctr.images.changes import parse_changes
from ctr.images.ingest import Ingest
from ctr.images.layers import decompressed, sniff_compression
from ctr.images.model import (
    CONFIG_LIMIT,
    INDEX_TYPES,
    MANIFEST_LIMIT,
    MANIFEST_TYPES,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_ZSTD,
    MEDIA_MANIFEST,
    REF_ANNOTATION,
    Image,
    ImageConfig,
    canonical_json,
    check_config,
    check_index,
    check_manifest,
    choose_platform,
    host_platform,
    parse_json,
)
from ctr.images.reference import hex_digest, normalize_ref, split_ref
from ctr.images.store import ImageStore
from ctr.images.streams import CHUNK

FORMATS = ("rootfs", "docker-archive", "oci")
CONTAINERD_NAME = "io.containerd.image.name"
MAX_INDEX_DEPTH = 4
MAX_LINK_HOPS = 16
_COMPRESSED_MEDIA = {"": MEDIA_LAYER, "gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD}


# --- reading archives: a directory or a tar, with random access -----------------------------


def _clean_name(name: str, what: str) -> str:
    """An archive entry name as a relative path, refusing absolute names and '..'."""
    if name.startswith("/"):
        raise CtrError(f"unsafe archive {what}: entry {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CtrError(f"unsafe archive {what}: entry {name!r} has a '..' component")
    return "/".join(parts)


class _Archive:
    """The files of an image archive by name: a directory or an uncompressed tar."""

    def __init__(self, what: str) -> None:
        self.what = what

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def read(self, name: str, limit: int) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise CtrError(f"archive {self.what}: {name} is larger than {limit} bytes: refused")
        return data

    def missing(self, name: str, by: str) -> CtrError:
        return NotFound(f"archive {self.what}: {by} refers to {name!r}, which is not in the archive")


class _DirArchive(_Archive):
    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.root = root.resolve()

    def _path(self, name: str) -> Path | None:
        clean = _clean_name(name, self.what)
        path = (self.root / clean).resolve()
        if path != self.root and self.root not in path.parents:
            raise CtrError(f"unsafe archive {self.what}: {name!r} leads outside the directory")
        return path if path.is_file() else None

    def exists(self, name: str) -> bool:
        return self._path(name) is not None

    def open(self, name: str) -> IO[bytes]:
        path = self._path(name)
        if path is None:
            raise self.missing(name, "the image")
        return open(path, "rb")


class _TarArchive(_Archive):
    """Random access to an uncompressed tar: headers are read once, data streamed on open."""

    def __init__(self, path: Path, what: str) -> None:
        import tarfile

        super().__init__(what)
        try:
            self.tar = tarfile.open(path, mode="r:")
            members = self.tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise CtrError(f"archive {what} is not a readable tar archive: {exc}") from None
        # Names are only looked up here; whether they are acceptable depends on what the tar
        # turns out to be (an image archive: validate(); a rootfs: layers.scan_layer).
        self.all = members
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            parts = [p for p in m.name.split("/") if p not in ("", ".")]
            if not m.name.startswith("/") and ".." not in parts:
                self.members["/".join(parts)] = m

    def validate(self) -> None:
        """Refuse an image archive with an entry that has no business in one."""
        for m in self.all:
            _clean_name(m.name, self.what)
            if m.ischr() or m.isblk() or m.isfifo():
                raise CtrError(f"unsafe archive {self.what}: entry {m.name!r} is a device node or fifo")
            if m.islnk():
                _clean_name(m.linkname, self.what)
            elif m.issym() and m.linkname.startswith("/"):
                raise CtrError(f"unsafe archive {self.what}: symlink {m.name!r} -> {m.linkname!r} is absolute")

    def close(self) -> None:
        self.tar.close()

    def _resolve(self, name: str):
        name = _clean_name(name, self.what)
        for _ in range(MAX_LINK_HOPS):
            m = self.members.get(name)
            if m is None or not (m.issym() or m.islnk()):
                return m
            target = m.linkname if m.islnk() else posixpath.join(posixpath.dirname(name), m.linkname)
            parts: list[str] = []
            for comp in target.split("/"):
                if comp == "..":
                    if not parts:
                        raise CtrError(f"unsafe archive {self.what}: link {m.name!r} -> {m.linkname!r} leads outside")
                    parts.pop()
                elif comp not in ("", "."):
                    parts.append(comp)
            name = "/".join(parts)
        raise CtrError(f"archive {self.what}: too many links resolving {name!r}")

    def exists(self, name: str) -> bool:
        m = self._resolve(name)
        return m is not None and m.isreg()

    def open(self, name: str) -> IO[bytes]:
        m = self._resolve(name)
        if m is None or not m.isreg():
            raise self.missing(name, "the image")
        return _TruncationCheck(self.tar.extractfile(m), m.size, f"archive {self.what}: entry {name!r}")  # type: ignore[arg-type]


class _TruncationCheck:
    """A member reader that turns tarfile's 'unexpected end of data' into one clear error."""

    def __init__(self, raw: IO[bytes], size: int, what: str) -> None:
        self.raw, self.size, self.what, self.got = raw, size, what, 0

    def read(self, n: int = -1) -> bytes:
        import tarfile

        try:
            data = self.raw.read(n)
        except (tarfile.ReadError, OSError) as exc:
            raise CtrError(f"{self.what} is truncated or corrupt: {exc}") from None
        self.got += len(data)
        if not data and n != 0 and self.got < self.size:
            raise CtrError(f"{self.what} is truncated: {self.got} of {self.size} bytes")
        return data

    def __enter__(self) -> _TruncationCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


@contextmanager
def _open_source(path: str, ingest: Ingest) -> Iterator[tuple[Path, _Archive | None, str]]:
    """(the input as a file, the archive to read it as or None for a non-tar file, its compression).

    '-' is spooled from standard input into the ingest; compressed tars are
    decompressed there too, so the archive is always seekable.
    """
    import tarfile

    if path == "-":
        spooled = ingest.temp_file(".stdin")
        with open(spooled, "wb") as out:
            src = os.fdopen(os.dup(0), "rb")
            with src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
        source, what = spooled, "<stdin>"
    else:
        source, what = Path(path), path
        if source.is_dir():
            yield source, _DirArchive(source), ""
            return
        if not source.exists():
            raise NotFound(f"no such file or directory: {path}")
        if not source.is_file():
            raise CtrError(f"cannot import {path}: not a regular file or directory")
    with open(source, "rb") as f:
        kind = sniff_compression(f.read(4))
    plain = source
    if kind:
        plain = ingest.temp_file(".tar")
        try:
            with open(source, "rb") as f, decompressed(f, kind, f"archive {what}") as src, open(plain, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
        except CtrError:
            raise
        except Exception as exc:  # EOFError (truncated), zlib.error, BadGzipFile, ZstdError
            raise CtrError(f"archive {what} is corrupt or truncated ({kind}): {exc}") from None
    try:
        is_tar = tarfile.is_tarfile(plain)
    except OSError:
        is_tar = False
    if not is_tar:
        raise CtrError(f"cannot import {what}: not a tar archive (plain, gzip or zstd), an OCI layout or a docker save")
    archive = _TarArchive(plain, what)
    try:
        yield source, archive, kind
    finally:
        archive.close()


def detect_format(archive: _Archive) -> str:
    """'oci' (index.json + oci-layout; Docker 25's save too), 'docker-archive' (manifest.json), else 'rootfs'."""
    if archive.exists("index.json") and archive.exists("oci-layout"):
        return "oci"
    if archive.exists("manifest.json"):
        try:
            manifest = json.loads(archive.read("manifest.json", MANIFEST_LIMIT))
        except (ValueError, CtrError):
            manifest = None
        if isinstance(manifest, list) and all(isinstance(m, dict) and "Config" in m for m in manifest):
            return "docker-archive"
    if isinstance(archive, _DirArchive):
        if archive.exists("index.json"):
            return "oci"
        raise CtrError(
            f"directory {archive.what} is neither an OCI image layout (index.json) nor an unpacked "
            "docker save (manifest.json)"
        )
    return "rootfs"


# --- import ---------------------------------------------------------------------------------


def import_image(store: ImageStore, path: str, *, name: str | None = None, changes: Sequence[str] = ()) -> list[Image]:
    """Import the archive or layout at `path` ('-': stdin); returns the images, named.

    `name` names the image (required for a rootfs tarball, and for archives
    whose image carries no name); `changes` apply to rootfs tarballs only.
    """
    target = normalize_ref(name) if name else None
    if target and split_ref(target)[2]:
        raise InvalidSpec(f"cannot import as {target!r}: a name with a digest cannot be assigned")
    config, labels = parse_changes(changes)
    with Ingest(store) as ingest, _open_source(path, ingest) as (source, archive, kind):
        fmt = detect_format(archive) if archive is not None else "rootfs"
        if fmt != "rootfs" and isinstance(archive, _TarArchive):
            archive.validate()
        if changes and fmt != "rootfs":
            raise InvalidSpec(f"--change applies to root filesystem tarballs only; {path} is {_article(fmt)}")
        what = archive.what if archive else path
        if fmt == "rootfs":
            if not target:
                raise InvalidSpec(f"importing the root filesystem tarball {what} needs --name")
            images = [_import_rootfs(ingest, source, kind, what, target, config, labels)]
        elif fmt == "docker-archive":
            images = _import_docker_archive(store, ingest, archive, target)  # type: ignore[arg-type]
        else:
            images = _import_oci(store, ingest, archive, target)  # type: ignore[arg-type]
        return ingest.commit(images)


def _article(fmt: str) -> str:
    return {"docker-archive": "a docker save archive", "oci": "an OCI image layout"}.get(fmt, fmt)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _import_rootfs(
    ingest: Ingest, source: Path, kind: str, what: str, name: str, config: ImageConfig, labels: dict[str, str]
) -> tuple[str, str, str]:
    digest, size = ingest.add_file(source, what=f"layer {what}")
    diff_id = ingest.diff_id(digest, what=what)
    created = _now()
    platform = host_platform()
    doc = {
        "created": created,
        "architecture": platform["architecture"],
        **({"variant": platform["variant"]} if "variant" in platform else {}),
        "os": "linux",
        "config": {**config.to_oci(), **({"Labels": labels} if labels else {})},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {"created": created, "created_by": "ctr image import", "comment": f"imported from {os.path.basename(what)}"}
        ],
    }
    config_bytes = canonical_json(doc)
    config_digest = ingest.add_bytes(config_bytes, what=f"config of {name}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": _COMPRESSED_MEDIA[kind], "digest": digest, "size": size}],
    }
    return name, ingest.add_bytes(canonical_json(manifest), what=f"manifest of {name}"), MEDIA_MANIFEST


def _repo_tags(entry: object, what: str, n: int) -> list[str]:
    tags = entry.get("RepoTags") if isinstance(entry, dict) else None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return []  # reported as malformed when the entry itself is read
    return [normalize_ref(t) for t in tags]


def _pick(what: str, candidates: list[tuple[object, list[str]]], target: str) -> object:
    """--name with an archive of several images picks the one carrying that name."""
    hits = [item for item, names in candidates if target in names]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise InvalidSpec(f"archive {what}: {len(hits)} images are named {target}: cannot pick one")
    names = sorted({n for _, ns in candidates for n in ns})
    if not names:
        raise InvalidSpec(f"archive {what} holds {len(candidates)} images without names: --name cannot pick one")
    raise InvalidSpec(
        f"archive {what} holds {len(candidates)} images, none named {target}: --name picks one of {', '.join(names)}"
    )


def _import_docker_archive(
    store: ImageStore, ingest: Ingest, archive: _Archive, target: str | None
) -> list[tuple[str, str, str]]:
    what = archive.what
    entries = json.loads(archive.read("manifest.json", MANIFEST_LIMIT))
    if not entries:
        raise CtrError(f"archive {what}: manifest.json lists no image")
    if target and len(entries) > 1:
        entries = [_pick(what, [(e, _repo_tags(e, what, n)) for n, e in enumerate(entries)], target)]
    out = []
    for n, entry in enumerate(entries):
        layers, config_name = entry.get("Layers"), entry.get("Config")
        if (
            not isinstance(config_name, str)
            or not isinstance(layers, list)
            or not all(isinstance(x, str) for x in layers)
        ):
            raise CtrError(f"archive {what}: manifest.json entry {n} is malformed")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise CtrError(f"archive {what}: manifest.json entry {n} has malformed RepoTags")
        names = [target] if target else [normalize_ref(t) for t in tags]
        if not names:
            raise InvalidSpec(f"archive {what}: image {n} ({config_name}) has no name (RepoTags is empty): give --name")
        label = names[0]
        config_bytes = archive.read(config_name, CONFIG_LIMIT)
        config_digest = ingest.add_bytes(
            config_bytes, what=f"config {config_name} of {label}", expected=_digest_of_blob_name(config_name)
        )
        config = parse_json(config_bytes, f"archive {what}: config {config_name}")
        diff_ids = check_config(config, len(layers), f"archive {what}: config {config_name}")
        descriptors = []
        for layer_name, diff_id in zip(layers, diff_ids):
            layer_what = f"{layer_name} in {what}"
            with archive.open(layer_name) as f:
                head = f.read(4)
            with archive.open(layer_name) as f:
                digest, size = ingest.add_blob(
                    f, what=f"archive {what}: layer {layer_name}", expected=_digest_of_blob_name(layer_name)
                )
            got = ingest.diff_id(digest, what=layer_what)
            if got != diff_id:
                raise CtrError(
                    f"archive {what}: layer {layer_name} does not match its diff_id {diff_id} in "
                    f"{config_name}: the content has {got}"
                )
            descriptors.append(
                {"mediaType": _COMPRESSED_MEDIA[sniff_compression(head)], "digest": digest, "size": size}
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": descriptors,
        }
        digest = ingest.add_bytes(canonical_json(manifest), what=f"manifest of {label}")
        out += [(name, digest, MEDIA_MANIFEST) for name in names]
    return out


def _digest_of_blob_name(name: str) -> str | None:
    """The digest a Docker 25 / OCI blob path promises (blobs/sha256/<hex>), else None."""
    parts = _clean_name(name, name).split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] == "sha256":
        return "sha256:" + parts[2]
    return None


def _import_oci(store: ImageStore, ingest: Ingest, archive: _Archive, target: str | None) -> list[tuple[str, str, str]]:
    what = archive.what
    if archive.exists("oci-layout"):
        layout = parse_json(archive.read("oci-layout", 4096), f"archive {what}: oci-layout")
        if layout.get("imageLayoutVersion") != "1.0.0":
            raise CtrError(f"archive {what}: unsupported image layout version {layout.get('imageLayoutVersion')!r}")
    index = parse_json(archive.read("index.json", MANIFEST_LIMIT), f"archive {what}: index.json")
    descriptors = check_index(index, f"archive {what}: index.json")
    if not descriptors:
        raise CtrError(f"archive {what}: index.json lists no image")
    # Group the top-level entries by the name they carry; unnamed entries form one group,
    # a multi-platform image spread over the top-level index (as some tools write it).
    groups: dict[str | None, list[dict]] = {}
    for desc in descriptors:
        groups.setdefault(_oci_name(desc, what), []).append(desc)
    if target and len(groups) > 1:
        picked = _pick(what, [(name, [name] if name else []) for name in groups], target)
        groups = {picked: groups[picked]}
    out = []
    for group_name, group in groups.items():
        name = target or group_name
        if not name:
            raise InvalidSpec(
                f"archive {what}: an image in index.json carries no name "
                f"(no {CONTAINERD_NAME} or full {REF_ANNOTATION} annotation): give --name"
            )
        top = choose_platform(group, f"archive {what}") if len(group) > 1 else group[0]
        manifest_desc, media = _resolve_oci(ingest, archive, top, name, 0)
        manifest_what = f"archive {what}: manifest {manifest_desc['digest']}"
        manifest = parse_json(
            ingest.read(manifest_desc["digest"], what=manifest_what, limit=MANIFEST_LIMIT), manifest_what
        )
        config_desc, layers = check_manifest(manifest, manifest_what)
        _stage_oci_blob(ingest, archive, config_desc, manifest_what, CONFIG_LIMIT)
        config_what = f"archive {what}: config {config_desc['digest']}"
        config = parse_json(ingest.read(config_desc["digest"], what=config_what), config_what)
        diff_ids = check_config(config, len(layers), config_what)
        for layer, diff_id in zip(layers, diff_ids):
            _stage_oci_blob(ingest, archive, layer, manifest_what, None)
            got = ingest.diff_id(layer["digest"], what=f"{layer['digest']} in {what}")
            if got != diff_id:
                raise CtrError(
                    f"archive {what}: layer {layer['digest']} does not match its diff_id {diff_id}: "
                    f"the content has {got}"
                )
        out.append((name, manifest_desc["digest"], media))
    return out


def _oci_name(desc: dict, what: str) -> str | None:
    annotations = desc.get("annotations") or {}
    for key in (CONTAINERD_NAME, REF_ANNOTATION):
        value = annotations.get(key)
        if isinstance(value, str) and value and (key == CONTAINERD_NAME or "/" in value or ":" in value):
            try:
                return normalize_ref(value)
            except InvalidSpec as exc:
                raise CtrError(f"archive {what}: index.json names an image {value!r}: {exc}") from None
    return None


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{hex_digest(digest)}"


def _stage_oci_blob(ingest: Ingest, archive: _Archive, desc: dict, by: str, limit: int | None) -> None:
    digest = desc["digest"]
    if ingest.has(digest):
        return  # already staged or in the store: the digest says it is the same content
    if not archive.exists(_blob_name(digest)):
        raise archive.missing(_blob_name(digest), by)
    with archive.open(_blob_name(digest)) as f:
        ingest.add_blob(
            f,
            what=f"archive {archive.what}: blob {digest}",
            expected=digest,
            size=desc.get("size") if desc.get("size") else None,
            limit=limit,
        )


def _resolve_oci(ingest: Ingest, archive: _Archive, desc: dict, name: str, depth: int) -> tuple[dict, str]:
    """Follow (nested) indexes down to this platform's image manifest; returns (descriptor, media type)."""
    if depth > MAX_INDEX_DEPTH:
        raise CtrError(f"archive {archive.what}: indexes nested deeper than {MAX_INDEX_DEPTH} for {name}")
    by = "index.json" if depth == 0 else f"index {desc['digest']}"
    _stage_oci_blob(ingest, archive, desc, by, MANIFEST_LIMIT)
    blob_what = f"archive {archive.what}: blob {desc['digest']}"
    doc = parse_json(ingest.read(desc["digest"], what=blob_what, limit=MANIFEST_LIMIT), blob_what)
    media = desc.get("mediaType") or doc.get("mediaType") or (MEDIA_INDEX if "manifests" in doc else MEDIA_MANIFEST)
    if media in INDEX_TYPES:
        inner = check_index(doc, blob_what)
        chosen = choose_platform(inner, f"image {name} in {archive.what}")
        return _resolve_oci(ingest, archive, chosen, name, depth + 1)
    if media not in MANIFEST_TYPES:
        raise CtrError(f"{blob_what} for {name} is a {media}, not an image manifest or index")
    return desc, media


__all__ = ["FORMATS", "detect_format", "import_image"]
