"""The image store: one OCI image layout that every backend runs from.

Layout under `paths.images` (OCI image-layout 1.0.0):

    oci-layout             {"imageLayoutVersion": "1.0.0"}
    index.json             one manifest descriptor per reference, named by the
                           annotation org.opencontainers.image.ref.name
    blobs/sha256/<hex>     manifests, configs and layer tars, content-addressed
    .lock                  flock taken by every change (build, tag, remove)

Unpacked layers live under `paths.layers/<diff_id hex>`, one directory per
layer, in the form overlayfs wants for a lowerdir (whiteouts as 0:0 character
devices, opaque directories marked with an xattr).

`busybox` (= `busybox:latest`) is built on first use from the host's static
busybox (ctr.images.busybox); other images come in through create(), or through
an Ingest (ctr.images.ingest: `Ingest(store)`; archive: import of archives and
layouts; registry: pull), which stages verified blobs beside the store and
publishes them all at once (publish()). What an image is lives in
ctr.images.model, its name in ctr.images.reference, its layers in
ctr.images.layers, the way out as archives in ctr.images.export.

Writers take the flock and publish with os.replace, so readers never lock and
never see a partial blob or index. Heavy stdlib modules (tarfile, subprocess)
are imported inside the functions that need them, to keep `ctr --help` fast.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.images.busybox import (
    BUILTIN_CREATED,
    BUILTIN_PATH_ENV,
    BUILTIN_REF,
    build_busybox_layer,
    busybox_facts,
    find_busybox,
)
from ctr.images.layers import describe_error, extract_layer, open_layer, sniff_compression, unreadable_layer_errors
from ctr.images.model import (
    MACHINE_ARCH,
    MANIFEST_TYPES,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    REF_ANNOTATION,
    Image,
    ImageConfig,
    canonical_json,
)
from ctr.images.reference import hex_digest, normalize_ref, split_ref
from ctr.images.streams import write_hashed
from ctr.state.files import flock, fsync_dir, unlink_quiet, write_atomic
from ctr.state.paths import Paths

# The staging directories of ingest.Ingest in the store root; lock() sweeps abandoned ones.
INGEST_PREFIX = ".ingest-"
NO_CONFIG = ImageConfig()  # an image that says nothing of what it runs (frozen: one shared default is safe)


class ImageStore:
    """The OCI layout under paths.images plus the unpacked layers under paths.layers."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.root = paths.images
        self.blobs = paths.images / "blobs" / "sha256"

    # reading (no lock: writers publish with os.replace)

    def get(self, ref: str) -> Image:
        """The image `ref` names; `busybox[:latest]` is built from the host on first use."""
        name = normalize_ref(ref)
        image = self.lookup(name)
        if image is None and name == BUILTIN_REF:
            with self.lock():
                image = self.lookup(name)  # another ctr may have built it while we waited
                if image is None:
                    self._build_busybox()
                    image = self.lookup(name)
        if image is None:
            raise NotFound(
                f"image {name!r} not found in {self.root}: pull it (ctr image pull), import it "
                f"(ctr image import) or tag an image as {name!r}"
            )
        return image

    def list(self) -> list[Image]:
        """Every named image in the index, sorted by name (unnamed entries are skipped)."""
        images = []
        for entry in self._read_index()["manifests"]:
            name = (entry.get("annotations") or {}).get(REF_ANNOTATION)
            if name:
                images.append(self._load(name, entry))
        return sorted(images, key=lambda i: i.name)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hex_digest(digest)

    def read_blob(self, digest: str, verify: bool = True) -> bytes:
        """A (small) blob's bytes, checked against its digest."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from {self.blobs}") from None
        if verify and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise CtrError(f"blob {digest} in {self.blobs} is corrupt: its content has another digest")
        return data

    def manifest(self, image: Image) -> bytes:
        """The manifest blob of `image`, byte for byte (its digest is image.digest)."""
        return self.read_blob(image.digest)

    def inspect(self, image: Image) -> dict:
        """What `ctr image inspect` prints: digests, the config's "config", layers, size, history."""
        manifest = json.loads(self.manifest(image))
        config = json.loads(self.read_blob(image.config_digest))
        return {
            "name": image.name,
            "id": image.id,
            "digest": image.digest,
            "media_type": image.media_type,
            "created": image.created,
            "architecture": image.architecture,
            "os": image.os,
            "size": image.size,
            "config": config.get("config") or {},
            "layers": [
                {
                    "digest": layer["digest"],
                    "diff_id": diff_id,
                    "size": layer.get("size", 0),
                    "media_type": layer.get("mediaType", ""),
                }
                for layer, diff_id in zip(manifest.get("layers") or [], image.diff_ids)
            ],
            "history": config.get("history") or [],
        }

    def users(self, image: Image) -> list[str]:
        """Names of the containers (any state) whose record says they run `image`."""
        from ctr.state.records import RecordStore

        return [
            r.name
            for r in RecordStore(self.paths).list()
            if r.image == image.name or (r.image_digest and r.image_digest == image.digest)
        ]

    def remove_checked(self, ref: str, force: bool = False) -> Image:
        """remove(), refused while a container uses the image and no other name keeps it (docker rmi).

        With `force` the name goes anyway: containers keep running from their
        unpacked layers, which remove() never deletes.
        """
        image = self.lookup(normalize_ref(ref))  # not get(): removing busybox must not build it first
        if image is None:
            raise NotFound(f"image {normalize_ref(ref)!r} not found in {self.root}: nothing to remove")
        if not force:
            others = [i.name for i in self.list() if i.digest == image.digest and i.name != image.name]
            users = self.users(image)
            if users and not others:
                raise Conflict(
                    f"image {image.name!r} is used by container{'s' if len(users) > 1 else ''} "
                    f"{', '.join(users)}: remove {'them' if len(users) > 1 else 'it'} first, or use -f"
                )
        self.remove(image.name)
        return image

    # layers

    def layer_paths(self, image: Image) -> list[Path]:
        """The unpacked layer directories of `image`, bottom first, unpacking any missing one.

        The fast path is one stat per layer: a directory exists only once it is
        complete, because it is unpacked beside its final name and renamed.
        """
        out = []
        for diff_id, blob in zip(image.diff_ids, image.layer_digests, strict=True):
            path = self.paths.layers / hex_digest(diff_id)
            if not path.is_dir():
                self._unpack(image, diff_id, blob, path)
            out.append(path)
        return out

    def _unpack(self, image: Image, diff_id: str, blob: str, path: Path) -> None:
        import shutil
        import tempfile

        with flock(self.paths.layers / ".lock"):
            if path.is_dir():
                return  # unpacked by another ctr while we waited
            # Under the lock, any temp dir left here belongs to a ctr that died mid-unpack.
            for stale in self.paths.layers.glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = tempfile.mkdtemp(dir=self.paths.layers, prefix=f".tmp-{path.name[:12]}-")
            try:
                os.chmod(tmp, 0o755)
                what = f"{blob} of image {image.name}"
                # extract_layer hashes what it reads, so it gets the streams unwrapped: a plain
                # blob as the file itself (read seekably), a compressed one as its decompressor.
                with open_layer(self.blob_path(blob), f"image {image.name}") as (raw, tar_stream):
                    plain = raw is tar_stream
                    try:
                        got_diff = extract_layer(tar_stream.raw, tmp, layer=what)  # type: ignore[arg-type]
                        if not plain:
                            raw.drain()
                    except unreadable_layer_errors() as exc:
                        raise CtrError(
                            f"layer blob {self.blob_path(blob)} is corrupt or truncated: {describe_error(exc)}"
                        ) from None
                got_blob = got_diff if plain else raw.digest
                if got_blob != blob:
                    raise CtrError(f"layer blob {self.blob_path(blob)} is corrupt: its content has digest {got_blob}")
                if got_diff != diff_id:
                    raise CtrError(f"layer {what} does not match its diff_id {diff_id}: unpacked {got_diff}")
                os.rename(tmp, path)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    # changing the store (under the flock)

    def create(
        self,
        ref: str,
        layers: Sequence[bytes | str | os.PathLike],
        config: ImageConfig = NO_CONFIG,
        *,
        labels: dict[str, str] | None = None,
        architecture: str = "",
        created: str = BUILTIN_CREATED,
    ) -> Image:
        """Add an image made of `layers` (tar files or bytes, plain or gzip), bottom first.

        The layers are stored as given; their diff_ids are computed here. This is
        how images other than busybox get into the store (import, commit, tests).
        """
        import io

        name = normalize_ref(ref)
        if split_ref(name)[2]:
            raise InvalidSpec(f"cannot create image {name!r}: a name with a digest cannot be assigned")
        with self.lock():
            descriptors, diff_ids = [], []
            for layer in layers:
                src = io.BytesIO(layer) if isinstance(layer, bytes) else open(layer, "rb")
                with src:
                    gzipped = sniff_compression(src.read(4)) == "gzip"
                    src.seek(0)
                    digest, size = self._put_blob_stream(src)
                with open_layer(self.blob_path(digest), f"image {name}") as (_, tar_stream):
                    tar_stream.drain()
                    diff_ids.append(tar_stream.digest)
                media = MEDIA_LAYER_GZIP if gzipped else MEDIA_LAYER
                descriptors.append({"mediaType": media, "digest": digest, "size": size})
            doc = {
                "created": created,
                "architecture": architecture or MACHINE_ARCH.get(os.uname().machine, os.uname().machine),
                "os": "linux",
                "config": {**config.to_oci(), **({"Labels": labels} if labels else {})},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": created, "created_by": "ctr create"} for _ in diff_ids],
            }
            self._commit(name, doc, descriptors)
            return self.lookup(name)  # type: ignore[return-value]

    def add_image_with_layer(self, name: str, config_doc: dict, base_layers: list[dict], layer: IO[bytes]) -> None:
        """Store the uncompressed layer tar `layer` as a blob, then point `name` at the config
        `config_doc` and a manifest of `base_layers` (stored already) plus that layer: the
        store's own writer path, under its lock (ctr commit)."""
        with self.lock():
            digest, size = self._put_blob_stream(layer)
            layers = [*base_layers, {"mediaType": MEDIA_LAYER, "digest": digest, "size": size}]
            self._commit(name, config_doc, layers)

    def publish(self, entries: list[dict], staged: dict[str, Path]) -> list[Image]:
        """Publish an ingest (the caller holds lock()): move the `staged` blobs (digest -> file)
        the store lacks into blobs/, then name every index entry of `entries` (index_entry())
        with one write of index.json; on failure the moved blobs go again. Names that pointed
        elsewhere move, and blobs nothing uses any more are collected."""
        moved: list[Path] = []
        try:
            for digest, path in staged.items():
                final = self.blob_path(digest)
                if path.is_file() and not final.exists():
                    os.rename(path, final)
                    moved.append(final)
            if moved:
                fsync_dir(self.blobs)
            index = self._name_entries(entries)
        except BaseException:
            for path in moved:
                unlink_quiet(path)
            raise
        self._collect_garbage(index["manifests"])
        return [self.lookup(e["annotations"][REF_ANNOTATION]) for e in entries]  # type: ignore[misc]

    def tag(self, src: str, dst: str) -> Image:
        """Give the image `src` the additional name `dst` (moving `dst` if it named another)."""
        image = self.get(src)
        name = normalize_ref(dst)
        if split_ref(name)[2]:
            raise InvalidSpec(f"cannot tag {image.name!r} as {name!r}: a tag cannot contain a digest")
        with self.lock():
            manifest = self.read_blob(image.digest)
            entry = self.index_entry(name, image.digest, len(manifest), image.architecture, image.os, image.media_type)
            self._name_entries([entry])
        return self.lookup(name)  # type: ignore[return-value]

    def remove(self, ref: str) -> None:
        """Untag `ref` and delete the blobs no remaining name uses.

        Unpacked layers are kept: running containers may have them as lowerdirs.
        """
        name = normalize_ref(ref)
        with self.lock():
            index = self._read_index()
            repo, _, digest = split_ref(name)
            kept = []
            for entry in index["manifests"]:
                entry_name = (entry.get("annotations") or {}).get(REF_ANNOTATION, "")
                if entry_name == name or (digest and entry["digest"] == digest and split_ref(entry_name)[0] == repo):
                    continue
                kept.append(entry)
            if len(kept) == len(index["manifests"]):
                raise NotFound(f"image {name!r} not found in {self.root}: nothing to remove")
            index["manifests"] = kept
            self._write_index(index)
            self._collect_garbage(kept)

    # the lock and the index (lookup and index_entry are public for the ingest and migrate)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The store's flock, which every change holds; also makes sure the layout exists and
        drops stale temp blobs and abandoned ingests."""
        with flock(self.root / ".lock"):
            self.blobs.mkdir(parents=True, exist_ok=True)
            layout = self.root / "oci-layout"
            if not layout.exists():
                write_atomic(layout, canonical_json({"imageLayoutVersion": "1.0.0"}))
            # Blobs are only written under this lock, so a temp file now is a crashed writer's.
            for stale in self.blobs.glob(".tmp-*"):
                unlink_quiet(stale)
            for staging in self.root.glob(INGEST_PREFIX + "*"):
                _remove_if_abandoned(staging)
            yield

    def _read_index(self) -> dict:
        path = self.root / "index.json"
        try:
            index = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}
        except ValueError as exc:
            raise CtrError(f"image index {path} is not valid JSON: {exc}") from None
        index.setdefault("manifests", [])
        return index

    def _write_index(self, index: dict) -> None:
        write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode() + b"\n")

    def lookup(self, name: str) -> Image | None:
        repo, _, digest = split_ref(name)
        for entry in self._read_index()["manifests"]:
            entry_name = (entry.get("annotations") or {}).get(REF_ANNOTATION, "")
            if entry_name == name:
                return self._load(name, entry)
            if digest and entry.get("digest") == digest and split_ref(entry_name)[0] == repo:
                return self._load(name, entry)
        return None

    def _load(self, name: str, entry: dict) -> Image:
        media = entry.get("mediaType", MEDIA_MANIFEST)
        if media not in MANIFEST_TYPES:
            raise CtrError(
                f"image {name!r} in {self.root} has a {media} entry; ctr reads single-platform manifests only"
            )
        manifest = json.loads(self.read_blob(entry["digest"]))
        config_digest = manifest["config"]["digest"]
        doc = json.loads(self.read_blob(config_digest))
        layers = manifest.get("layers") or []
        diff_ids = tuple((doc.get("rootfs") or {}).get("diff_ids") or ())
        if len(diff_ids) != len(layers):
            raise CtrError(f"image {name!r} is inconsistent: {len(layers)} layers but {len(diff_ids)} diff_ids")
        return Image(
            name=name,
            digest=entry["digest"],
            config_digest=config_digest,
            config=ImageConfig.from_oci(doc),
            diff_ids=diff_ids,
            layer_digests=tuple(layer["digest"] for layer in layers),
            architecture=doc.get("architecture", ""),
            os=doc.get("os", ""),
            size=sum(int(layer.get("size", 0)) for layer in layers),
            labels=tuple(sorted(((doc.get("config") or {}).get("Labels") or {}).items())),
            created=str(doc.get("created") or ""),
            media_type=media,
        )

    def _put_blob_stream(self, src: IO[bytes], expected: str | None = None) -> tuple[str, int]:
        """Store a blob (caller holds the lock): temp file in the blobs dir, check, os.replace.

        Returns (digest, size). With `expected`, a mismatch raises and stores nothing.
        """
        tmp, digest, size = write_hashed(src, self.blobs, what="blob")
        try:
            if expected is not None and digest != expected:
                raise CtrError(f"blob written to {self.blobs} has digest {digest}, expected {expected}")
            final = self.blob_path(digest)
            if final.exists():
                os.unlink(tmp)  # content-addressed: an existing blob is the same bytes
            else:
                os.replace(tmp, final)
                fsync_dir(self.blobs)
            return digest, size
        except BaseException:
            unlink_quiet(tmp)
            raise

    def _put_blob(self, data: bytes) -> dict:
        import io

        digest, size = self._put_blob_stream(io.BytesIO(data))
        return {"digest": digest, "size": size}

    @staticmethod
    def index_entry(name: str, digest: str, size: int, arch: str, os_: str, media: str = MEDIA_MANIFEST) -> dict:
        """The index.json entry that names the manifest `digest` `name` (for publish())."""
        return {
            "mediaType": media,
            "digest": digest,
            "size": size,
            "annotations": {REF_ANNOTATION: name},
            "platform": {"architecture": arch, "os": os_},
        }

    def _name_entries(self, entries: list[dict]) -> dict:
        """Put `entries` in the index in place of the entries with their names; returns the index written."""
        index = self._read_index()
        names = {e["annotations"][REF_ANNOTATION] for e in entries}
        index["manifests"] = [
            e for e in index["manifests"] if (e.get("annotations") or {}).get(REF_ANNOTATION) not in names
        ] + entries
        index.setdefault("schemaVersion", 2)
        index.setdefault("mediaType", MEDIA_INDEX)
        self._write_index(index)
        return index

    def _commit(self, name: str, config_doc: dict, layers: list[dict], annotations: dict | None = None) -> str:
        """Write config and manifest blobs, then point `name` at them (caller holds the lock)."""
        config = {"mediaType": MEDIA_CONFIG, **self._put_blob(canonical_json(config_doc))}
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": layers}
        if annotations:
            manifest["annotations"] = annotations
        desc = self._put_blob(canonical_json(manifest))
        entry = self.index_entry(name, desc["digest"], desc["size"], config_doc["architecture"], config_doc["os"])
        self._name_entries([entry])
        return desc["digest"]

    def _build_busybox(self) -> str:
        """Build busybox:latest from the host's static busybox (caller holds the lock)."""
        import tempfile

        busybox, arch = find_busybox()
        version, banner, applets = busybox_facts(busybox)
        # The layer is built in a temp file inside the blobs dir, then stored like any blob.
        with tempfile.TemporaryFile(dir=self.blobs, prefix=".tmp-") as f:
            build_busybox_layer(busybox, applets, f)  # type: ignore[arg-type]
            f.seek(0)
            digest, size = self._put_blob_stream(f)
        labels = {
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.description": f"ctr built-in image from {banner}",
        }
        doc = {
            "created": BUILTIN_CREATED,
            "architecture": arch,
            "os": "linux",
            "config": {**ImageConfig(cmd=("sh",), env=(BUILTIN_PATH_ENV,)).to_oci(), "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [digest]},  # uncompressed: blob digest is the diff_id
            "history": [{"created": BUILTIN_CREATED, "created_by": f"ctr built-in busybox ({banner})"}],
        }
        return self._commit(
            BUILTIN_REF, doc, [{"mediaType": MEDIA_LAYER, "digest": digest, "size": size}], annotations=labels
        )

    def _collect_garbage(self, entries: list[dict]) -> None:
        """Delete blobs no index entry reaches (caller holds the lock)."""
        live: set[str] = set()
        for entry in entries:
            live.add(entry["digest"])
            try:
                manifest = json.loads(self.read_blob(entry["digest"], verify=False))
            except (CtrError, ValueError):
                continue
            live.add(manifest.get("config", {}).get("digest", ""))
            live.update(layer.get("digest", "") for layer in manifest.get("layers") or ())
        for blob in self.blobs.iterdir():
            if not blob.name.startswith(".") and "sha256:" + blob.name not in live:
                unlink_quiet(blob)


def _remove_if_abandoned(staging: Path) -> None:
    """Remove an ingest directory (ingest.Ingest) whose owner is gone (its flock is free); keep live ones."""
    import shutil

    try:
        fd = os.open(staging / ".lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        shutil.rmtree(staging, ignore_errors=True)
        return
    except NotADirectoryError:
        unlink_quiet(staging)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # an import or pull in progress
    finally:
        os.close(fd)
    shutil.rmtree(staging, ignore_errors=True)
