"""Moving a container's state: commit to an image, export/import as a bundle, migrate
between backends.

All three rest on one fact: every backend keeps a container's writable layer as
an overlayfs upper directory on this host (Backend.writable_layer), so one
codec (layer.write_layer / unpack_layer) carries it anywhere, and one digest
(tree.tree_digest) proves it arrived unchanged.

Putting a layer in place on the target ("materialize"): the target creates the
container the ordinary way (record, and for docker the engine container), then,
while it is not running, the layer is unpacked into its writable layer. For
docker that is overlay2's UpperDir of the engine container. This is the lossless
route: the files stay the container's own changes (`docker diff` shows them,
whiteouts keep hiding the image's files) on the very image it ran from, whereas
committing them into an image layer would change the container's image and
leave an empty writable layer, a different container.

Names (migrate): ctr's names are unique across backends (RecordStore.reserve
claims containers/<name> with mkdir), so a same-name target cannot be reserved
while the source exists. Removing the source first would make a failed target
unrecoverable except by re-creating the source from a copy, with another id.
Creating the target under a temporary name and renaming it afterwards would
leave backend state made for the temporary name (docker's immutable ctr.name
label) on the container that survives. So the source is *parked* instead: it is
renamed (Backend.rename) to `<name>.migrating-<hex>`, which frees the name for an
ordinary create on the target; on success the parked source is removed, on
failure the target is removed and the source renamed back. A parked container is
stopped, and renaming a stopped one is small and atomic: its record directory is
renamed into a freshly reserved one (native keeps its upper dir there; docker
finds its engine container by the id in the record), and lxc moves its liblxc
directory and the paths in its config along (see rename()).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from ctr.backends import backend_for, get_backend
from ctr.backends.base import Backend
from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound, Unsupported
from ctr.images.model import MEDIA_LAYER, Image
from ctr.images.reference import hex_digest, normalize_ref, split_ref
from ctr.images.store import ImageStore
from ctr.process import merge_env
from ctr.spec import ContainerSpec, validate_name
from ctr.state.files import flock, scratch_dir, write_output
from ctr.state.paths import Paths
from ctr.state.records import Record, RecordStore
from ctr.transfer.bundle import Bundle, BundleInfo, write_bundle
from ctr.transfer.layer import LayerInfo, layer_names, unpack_layer, write_layer
from ctr.transfer.tree import tree_digest, walk

ACTIVE = ("running", "paused")
PARK_MARK = ".migrating-"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def _op_lock(paths: Paths, name: str) -> Iterator[None]:
    """One commit/export/migrate of a container at a time. Not the container's own lock:
    stop and start take that one (the native monitor too), and we call them."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(flock(paths.run / "locks" / "migrate" / validate_name(name), 0o600, blocking=False))
        except BlockingIOError:
            raise Conflict(f"container {name} is being committed, exported or migrated by another ctr") from None
        yield


def start(backend: Backend, name: str) -> None:
    """backend.start(name), with the garbage of this process collected first.

    The native and lxc backends fork a monitor that closes every inherited fd and then
    opens its own pipes, which get the freed numbers. If cyclic garbage inherited from
    this process (file objects, epoll objects, liblxc handles) were collected inside the
    monitor afterwards, its finalizers would close those new pipes: `ctr migrate` after
    driving liblxc failed 5 times in 5 so. Collecting here, where the fds are still the
    objects' own, leaves the monitor nothing to collect."""
    import gc

    gc.collect()
    backend.start(name)


# --- what a container is, apart from its backend ------------------------------------------


def effective_hostname(record: Record) -> str:
    """The host name the container has: its spec's, or the one its backend chose
    (native and lxc record it; docker's is the short id, as ctr's id is the engine's)."""
    return record.spec.get("hostname") or record.extra.get("hostname") or record.short_id


def portable_spec(record: Record, name: str | None = None) -> ContainerSpec:
    """The container's spec with what its backend decided pinned (the host name), so it
    comes out the same elsewhere; `name` replaces its name. --cidfile was written when the
    container was first made; the copy is no new `create` of the user's, so it writes none."""
    spec = ContainerSpec.from_dict(record.spec)
    return spec.with_changes(name=name or record.name, hostname=effective_hostname(record), cidfile=None)


def base_image(store: ImageStore, record: Record) -> Image:
    """The image the container was made from, by digest: a tag moved since still finds it."""
    name = record.image or record.spec.get("image", "")
    try:
        image = store.get(name)
        if not record.image_digest or image.digest == record.image_digest:
            return image
    except NotFound:
        pass
    for image in store.list():
        if image.digest == record.image_digest:
            return image
    raise NotFound(
        f"the image of container {record.name} ({name}, {record.image_digest or 'no digest'}) "
        f"is no longer in {store.root}: pull or import it again"
    )


def _pin_image(store: ImageStore, spec: ContainerSpec, record: Record) -> ContainerSpec:
    image = base_image(store, record)
    return spec if image.name == normalize_ref(spec.image) else spec.with_changes(image=image.name)


def snapshot(backend: Backend, name: str, out: IO[bytes]) -> LayerInfo:
    """The container's writable layer as an OCI layer tar; it must not be running."""
    return write_layer(backend.writable_layer(name), out)


def materialize(
    backend: Backend,
    spec: ContainerSpec,
    open_layer: Callable[[], IO[bytes]],
    *,
    diff_id: str | None,
    tree: str,
    what: str,
    notes: list[str] | None = None,
) -> Record:
    """Create `spec` on `backend` (not started) and unpack the layer into its writable layer.

    Checks the layer's diff_id (when known) and the tree digest of the result. What the
    backend itself put in the writable layer when it created the container, and the
    layer does not carry (lxc makes mount targets there), is left out of the comparison
    and named in `notes`. On any failure the new container is removed again, so there
    is no half container."""
    record = backend.create(spec)
    try:
        upper = backend.writable_layer(record.name)
        if not upper.is_dir():
            raise Unsupported(
                backend.name,
                "a writable layer reachable from this host",
                f"{upper} is not a directory here (a remote engine, or not the overlay2 driver?)",
            )
        made = {e.rel for e in walk(upper)}
        with open_layer() as src:
            carried = layer_names(src)
        with open_layer() as src:
            got = unpack_layer(src, upper, layer=what)
        if diff_id and got != diff_id:
            raise CtrError(f"{what} does not match its digest {diff_id}: the content has {got}")
        extra = frozenset(made - carried)
        after = tree_digest(upper, exclude=extra)
        if after != tree:
            raise CtrError(
                f"the writable layer of {record.name} on {backend.name} does not match the source "
                f"after unpacking ({after} != {tree})"
            )
        if extra and notes is not None:
            notes.append(
                f"the {backend.name} backend made these in the writable layer of {record.name} itself: "
                + ", ".join("/" + p for p in sorted(extra))
            )
        return backend.get(record.name)
    except BaseException:
        with contextlib.suppress(CtrError):
            backend.remove(record.name, force=True)
        raise


def _preflight(backend: Backend, spec: ContainerSpec, paths: Paths, free_name: bool) -> None:
    """What the target would refuse, found out before anything changes."""
    check = getattr(backend, "check_spec", None)
    if check is not None:
        check(spec)
    ImageStore(paths).get(spec.image)
    if free_name and RecordStore(paths).dir(spec.name).exists():  # type: ignore[arg-type]
        raise Conflict(f'container name "{spec.name}" is already in use')


# --- commit ------------------------------------------------------------------------------


def image_config_for(record: Record, image: Image, base_doc: dict) -> dict:
    """The image config a commit writes: the base's, with the process as the container
    ran it (Entrypoint, Cmd, Env, WorkingDir, User) and its labels added."""
    spec = ContainerSpec.from_dict(record.spec)
    config = dict(base_doc.get("config") or {})
    base = image.config
    entrypoint = list(spec.entrypoint) if spec.entrypoint is not None else list(base.entrypoint)
    if spec.command:
        cmd = list(spec.command)
    elif spec.entrypoint is not None:
        cmd = []
    else:
        cmd = list(base.cmd)
    env = list(merge_env(base.env, spec.env))
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    for key, value in (("Entrypoint", entrypoint), ("Cmd", cmd), ("Env", env)):
        if value:
            config[key] = value
        else:
            config.pop(key, None)
    for key, value in (
        ("WorkingDir", spec.workdir or base.workdir),
        ("User", spec.user if spec.user is not None else base.user),
    ):
        if value:
            config[key] = value
        else:
            config.pop(key, None)
    labels = {**(config.get("Labels") or {}), **dict(spec.labels)}
    if labels:
        config["Labels"] = labels
    return config


def commit(paths: Paths, name: str, ref: str, *, pause: bool = True, message: str = "") -> Image:
    """A new image `ref`: the container's image plus its writable layer as one more layer.

    A running container is paused while its layer is read (as `docker commit` does),
    or refused with `pause=False`."""
    target = normalize_ref(ref)
    if split_ref(target)[2]:
        raise InvalidSpec(f"cannot commit to {target!r}: a name with a digest cannot be assigned")
    backend = backend_for(name, paths)
    store = ImageStore(paths)
    with _op_lock(paths, name), scratch_dir(paths) as tmp:
        record = backend.get(name)
        image = base_image(store, record)
        paused_here = False
        if record.status == "running":
            if not pause:
                raise Conflict(f"cannot commit container {name}: it is running: stop it, or let ctr pause it")
            try:
                backend.pause(name)
            except Unsupported:
                raise Conflict(
                    f"cannot commit container {name}: it is running and the {backend.name} backend "
                    "cannot pause it: stop it first"
                ) from None
            paused_here = True
        try:
            layer_file = tmp / "layer.tar"
            with open(layer_file, "wb") as f:
                info = snapshot(backend, name, f)
        finally:
            if paused_here:
                backend.unpause(name)
        base_doc = json.loads(store.read_blob(image.config_digest))
        manifest = json.loads(store.manifest(image))
        created = _now()
        doc = dict(base_doc)
        doc["created"] = created
        doc["config"] = image_config_for(record, image, base_doc)
        doc["rootfs"] = {"type": "layers", "diff_ids": [*image.diff_ids, info.diff_id]}
        doc["history"] = [
            *(base_doc.get("history") or []),
            {"created": created, "created_by": f"ctr commit {name}", **({"comment": message} if message else {})},
        ]
        doc.pop("container_config", None)
        with open(layer_file, "rb") as f:
            store.add_image_with_layer(target, doc, list(manifest.get("layers") or []), f)
        return store.get(target)


# --- export and import ---------------------------------------------------------------------


def export_container(paths: Paths, name: str, dest: str, *, include_image: bool = True) -> BundleInfo:
    """Write the bundle of container `name` to `dest` ('-': stdout): spec, base image
    (unless include_image is False: then only its digest), writable layer. A running
    container must be stopped (or paused) first, so the layer is consistent."""
    from ctr.images.export import export_oci

    backend = backend_for(name, paths)
    store = ImageStore(paths)
    with _op_lock(paths, name), scratch_dir(paths) as tmp:
        record = backend.get(name)
        if record.status == "running":
            raise Conflict(f"cannot export container {name}: it is running: stop (or pause) it first")
        image = base_image(store, record)
        layer_file = tmp / "layer.tar"
        with open(layer_file, "wb") as f:
            layer = snapshot(backend, name, f)
        image_tar = None
        if include_image:
            image_tar = tmp / "image.tar"
            with open(image_tar, "wb") as f:
                export_oci(store, image, f)
        spec = portable_spec(record).with_changes(image=image.name)
        info = BundleInfo(
            name=record.name,
            backend=record.backend,
            spec=spec.to_dict(),
            hostname=effective_hostname(record),
            image={
                "name": image.name,
                "digest": image.digest,
                "config_digest": image.config_digest,
                "included": include_image,
            },
            layer={
                "mediaType": MEDIA_LAYER,
                "digest": layer.diff_id,
                "size": layer.size,
                "tree_digest": layer.tree_digest,
            },
            container={
                "id": record.id,
                "created": record.created,
                "status": record.status,
                "exit_code": record.exit_code,
            },
            created=_now(),
        )
        write_output(dest, lambda out: write_bundle(out, info, layer_file, image_tar), "a bundle")
        return info


def _bundle_image(store: ImageStore, bundle: Bundle, use_image: bool) -> str:
    """The name, in this store, of the bundle's base image: found by digest, else imported
    from the bundle, under its own name, or beside it when that name means another image here."""
    from ctr.images.archive import import_image

    info = bundle.info
    name, digest = normalize_ref(info.image["name"]), info.image["digest"]
    local = store.lookup(name)
    if local is not None and local.digest == digest:
        return local.name
    for image in store.list():
        if image.digest == digest:
            return image.name
    if not info.image.get("included") or not use_image:
        why = "it was exported with --no-image" if not info.image.get("included") else "--no-image was given"
        raise NotFound(
            f"bundle {bundle.path}: its image {name} ({digest}) is not in {store.root} and {why}: "
            "import or pull that image first"
        )
    if local is not None:  # don't move a name the user has for another image
        repo, tag, _ = split_ref(name)
        name = f"{repo}:{(tag or 'latest')[:100]}-{hex_digest(digest)[:12]}"
    (image,) = import_image(store, str(bundle.path), name=name)
    if image.digest != digest:
        raise CtrError(f"bundle {bundle.path}: its image has digest {image.digest}, but {digest} is described")
    return image.name


def import_bundle(
    paths: Paths, path: str, *, backend: str | None = None, name: str | None = None, use_image: bool = True
) -> Record:
    """Recreate the container of a bundle, created (not started), on `backend` (default:
    the one it was exported from), named `name` (default: its own name)."""
    from ctr.images.layers import scan_layer

    with scratch_dir(paths) as tmp:
        if path == "-":
            spooled = tmp / "bundle.tar"
            with open(spooled, "wb") as out, os.fdopen(os.dup(0), "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            path = str(spooled)
        with Bundle(path) as bundle:
            info = bundle.info
            target = get_backend(backend or info.backend or "native", paths)
            store = ImageStore(paths)
            spec = ContainerSpec.from_dict(info.spec).with_changes(name=name or info.name, cidfile=None)
            if info.hostname and not spec.hostname:
                spec = spec.with_changes(hostname=info.hostname)
            _preflight_image_free(target, spec, paths)
            digest = info.layer["digest"]
            with bundle.open_layer() as f:  # refused before anything is made, with the member named
                got = scan_layer(f, layer=f"{digest} in {path}")
            if got != digest:
                raise CtrError(
                    f"bundle {path}: its writable layer does not match its digest {digest}: the content has {got}"
                )
            spec = spec.with_changes(image=_bundle_image(store, bundle, use_image))
            _preflight(target, spec, paths, free_name=True)
            return materialize(
                target,
                spec,
                bundle.open_layer,
                diff_id=digest,
                tree=info.layer["tree_digest"],
                what=f"the writable layer in {path}",
            )


def _preflight_image_free(backend: Backend, spec: ContainerSpec, paths: Paths) -> None:
    """The checks that need no image: the backend accepts the spec, the name is free."""
    check = getattr(backend, "check_spec", None)
    if check is not None:
        check(spec)
    if RecordStore(paths).dir(spec.name).exists():  # type: ignore[arg-type]
        raise Conflict(f'container name "{spec.name}" is already in use')


# --- migrate -----------------------------------------------------------------------------


@dataclass
class Migration:
    """What `ctr migrate` did."""

    name: str
    source_backend: str
    target_backend: str
    source_id: str
    record: Record  # the container on the target
    tree_digest: str
    layer_size: int
    started: bool = False
    kept_source: str | None = None  # the source's name when kept
    warnings: list[str] = field(default_factory=list)


def rename(backend: Backend, old: str, new: str) -> None:
    """backend.rename(old, new): each backend renames whatever it names after a container."""
    backend.rename(old, new)


def park(backend: Backend, name: str) -> str:
    """Rename a stopped container to a fresh `<name>.migrating-<hex>`, freeing `name`."""
    for _ in range(16):
        parked = f"{name[:100]}{PARK_MARK}{secrets.token_hex(4)}"
        try:
            rename(backend, name, parked)
        except Conflict:
            if RecordStore(backend.paths).dir(parked).exists():
                continue  # that one is taken: another suffix
            raise
        return parked
    raise Conflict(f"cannot find a free name to park container {name} under")


def unpark(backend: Backend, parked: str, name: str) -> None:
    """Give a parked container its name back (the name must be free again)."""
    try:
        rename(backend, parked, name)
    except Conflict:
        raise Conflict(
            f"cannot give container {parked} its name {name} back: the name was taken meanwhile; it is kept as {parked}"
        ) from None


def migrate(
    paths: Paths, name: str, to: str, *, keep: bool = False, new_name: str | None = None, stop: bool = False
) -> Migration:
    """Move container `name` to backend `to`: filesystem and spec, checked by tree digest.

    A running container needs `stop` (it is stopped, and started on the target). With
    `keep` the source stays (stopped), and the target needs another name. Any failure
    leaves the source as it was (restarted if ctr stopped it) and nothing on the target."""
    final, source, target = _endpoints(paths, name, to, keep, new_name)
    images = ImageStore(paths)
    with _op_lock(paths, name):
        record = source.get(name)
        running = _check_stoppable(record, name, stop)
        spec = _pin_image(images, portable_spec(record, final), record)
        _preflight(target, spec, paths, free_name=final != name)
        stopped_here = False
        notes: list[str] = []
        if running:
            source.stop(name)
            stopped_here = True
            record = source.get(name)
        try:
            with scratch_dir(paths) as tmp:
                layer_file = tmp / "layer.tar"
                with open(layer_file, "wb") as f:
                    layer = snapshot(source, name, f)
                parked = park(source, name) if final == name else None
                try:
                    # Started by someone between the stop and now? Then the snapshot may be stale.
                    # Once parked, nobody can start it by its name any more.
                    if source.get(parked or name).status in ACTIVE:
                        raise Conflict(f"container {name} was started again while it was being migrated: try again")
                    materialize(
                        target,
                        spec,
                        lambda: open(layer_file, "rb"),
                        diff_id=layer.diff_id,
                        tree=layer.tree_digest,
                        what=f"the writable layer of {name}",
                        notes=notes,
                    )
                    if running:
                        try:
                            start(target, final)
                        except BaseException:
                            with contextlib.suppress(CtrError):
                                target.remove(final, force=True)
                            raise
                except BaseException:
                    if parked is not None:
                        unpark(source, parked, name)
                    raise
        except BaseException:
            if stopped_here:
                with contextlib.suppress(CtrError):
                    start(source, name)
            raise
        result = Migration(
            name=final,
            source_backend=source.name,
            target_backend=target.name,
            source_id=record.id,
            record=target.get(final),
            tree_digest=layer.tree_digest,
            layer_size=layer.size,
            started=running,
            warnings=notes,
        )
        if keep:
            result.kept_source = name
        else:
            try:
                source.remove(parked or name, force=True)
            except CtrError as exc:
                result.warnings.append(f"the source container is left as {parked or name}: {exc}")
        return result


def _endpoints(paths: Paths, name: str, to: str, keep: bool, new_name: str | None) -> tuple[str, Backend, Backend]:
    """The name on the target, the source backend and the target one, or why not."""
    if new_name is not None:
        validate_name(new_name)
    final = new_name or name
    if keep and final == name:
        raise InvalidSpec(f"--keep needs --name: names are unique across backends and {name} stays with the source")
    source = backend_for(name, paths)
    target = get_backend(to, paths)
    if source.name == target.name and final == name:
        raise InvalidSpec(f"container {name} is on the {to} backend already")
    return final, source, target


def _check_stoppable(record: Record, name: str, stop: bool) -> bool:
    """Whether the container runs (and may be stopped for the move)."""
    running = record.status in ACTIVE
    if running and not stop:
        raise Conflict(f"cannot migrate container {name}: it is {record.status}: stop it first or use --stop")
    if running and record.spec.get("auto_remove"):
        raise Conflict(f"cannot migrate container {name}: it was started with --rm, so stopping it removes it")
    return running


__all__ = [
    "Migration",
    "commit",
    "effective_hostname",
    "export_container",
    "import_bundle",
    "materialize",
    "migrate",
    "park",
    "portable_spec",
    "rename",
    "snapshot",
    "unpark",
]
