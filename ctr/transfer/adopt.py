"""Containers ctr did not make: listing them (`ctr foreign`) and adopting them (`ctr adopt`).

Foreign are the LXC containers under LXC's own lxcpath (/var/lib/lxc, or what
`lxc.lxcpath` says) and the Docker Engine's containers without ctr's `ctr.name`
label. Adopting one reads its configuration into a ctr spec (backends/convert:
the LXC config file, `docker inspect`), copies its root filesystem into ctr,
and creates a ctr container (created, not started) that can then be run,
exported or migrated like any other. The source is only read, never changed.

How the root filesystem comes across, decided per kind for fidelity:

- lxc: the rootfs directory becomes the ctr container's *writable layer*, on a
  shared, empty base image `adopted/lxc:init` (Cmd /sbin/init, LXC's default).
  An LXC container has no image to go back to, and the writable layer travels
  through ctr's own layer codec, which keeps xattrs and nanosecond times; the
  copy is checked against the source with tree.tree_digest.
- docker: the engine's image is saved and imported into ctr's store (same
  config digest, so the engine recognises it again), and the container's
  overlay2 UpperDir becomes the writable layer, checked the same way.

The ctr container is made on the same kind of backend by default (lxc -> ctr's
lxc backend, docker -> ctr's docker backend), since that is the runtime the
configuration was written for; `to` chooses another. It keeps the source's name,
except a Docker container adopted onto the docker backend: the engine's names are
unique and the source keeps its own, so it becomes `<name>-ctr` (unless `name`).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctr.backends import get_backend
from ctr.convert.conversion import Conversion, spec_from
from ctr.convert.docker import docker_to_spec
from ctr.convert.lxc import read_lxc
from ctr.errors import BackendUnavailable, Conflict, CtrError, InvalidSpec, NotFound, Unsupported
from ctr.images.busybox import BUILTIN_PATH_ENV
from ctr.images.model import Image, ImageConfig
from ctr.images.reference import hex_digest
from ctr.images.store import ImageStore
from ctr.spec import ContainerSpec, validate_name
from ctr.state.files import scratch_dir
from ctr.state.paths import Paths
from ctr.state.records import Record
from ctr.transfer.layer import LayerInfo, write_layer
from ctr.transfer.migrate import materialize

LXC_BASE = "adopted/lxc:init"
LXC_INIT = ("/sbin/init",)  # liblxc's default lxc.init.cmd
KINDS = ("lxc", "docker")


@dataclass(frozen=True)
class Foreign:
    """A container of LXC's or Docker's own, as `ctr foreign` lists it."""

    kind: str  # 'lxc' or 'docker'
    name: str
    id: str
    status: str
    image: str = ""
    where: str = ""  # lxcpath, or the engine's address

    @property
    def ref(self) -> str:
        """What `ctr adopt` takes: lxc:NAME or docker:ID."""
        return f"{self.kind}:{self.name if self.kind == 'lxc' else self.id[:12]}"


@dataclass
class Adoption:
    record: Record
    source: str
    image: str
    tree_digest: str
    warnings: list[str] = field(default_factory=list)  # configuration not carried over
    notes: list[str] = field(default_factory=list)  # what the target backend added


def default_lxcpath() -> str:
    """LXC's own container directory (lxc.lxcpath in lxc.conf, by default /var/lib/lxc)."""
    try:
        import lxc

        return lxc.get_global_config_item("lxc.lxcpath") or lxc.default_config_path
    except ImportError:
        return "/var/lib/lxc"


def list_foreign(paths: Paths | None = None, lxcpath: str | None = None) -> tuple[list[Foreign], list[str]]:
    """Every foreign container found, and why a kind could not be looked at (one line each)."""
    found: list[Foreign] = []
    problems: list[str] = []
    try:
        found += _foreign_lxc(lxcpath or default_lxcpath())
    except CtrError as exc:
        problems.append(f"lxc: {exc}")
    try:
        found += _foreign_docker(paths)
    except CtrError as exc:
        problems.append(f"docker: {exc}")
    return found, problems


def _foreign_lxc(lxcpath: str) -> list[Foreign]:
    try:
        import lxc
    except ImportError:
        raise BackendUnavailable("the python lxc bindings are missing: pip install 'ctr[lxc]'") from None
    if not os.path.isdir(lxcpath):
        return []
    out = []
    for name in lxc.list_containers(config_path=lxcpath):
        c = lxc.Container(name, lxcpath)
        rootfs = c.get_config_item("lxc.rootfs.path") or ""
        out.append(Foreign("lxc", name, name, c.state.lower(), rootfs, lxcpath))
    return out


def _docker_client(paths: Paths | None):
    from ctr.backends.docker.backend import DockerBackend

    info = DockerBackend.probe()
    if not info.usable:
        raise BackendUnavailable(info.reason)
    return DockerBackend(paths).client


def _foreign_docker(paths: Paths | None) -> list[Foreign]:
    from ctr.backends.docker.engine import engine_address, engine_error, engine_exceptions

    client = _docker_client(paths)
    try:
        rows = client.api.containers(all=True)
    except engine_exceptions() as exc:
        raise engine_error(exc, "cannot list the engine's containers") from exc
    out = []
    for row in rows:
        if "ctr.name" in (row.get("Labels") or {}):
            continue
        name = (row.get("Names") or ["/"])[0].lstrip("/")
        out.append(Foreign("docker", name, row["Id"], row.get("State", ""), row.get("Image", ""), engine_address()))
    return sorted(out, key=lambda f: f.name)


def adopt(
    paths: Paths, source: str, *, name: str | None = None, to: str | None = None, network: str | None = None
) -> Adoption:
    """Make a ctr container from `source` ('lxc:NAME' or 'docker:ID|NAME'); the source is
    left as it is. `to` is the backend (default: the source's kind); `network` replaces
    the network mode read from the source (ctr's native and lxc backends have no bridge)."""
    kind, sep, ident = source.partition(":")
    if not sep or kind not in KINDS or not ident:
        raise InvalidSpec(f"cannot adopt {source!r}: give lxc:NAME or docker:ID")
    if kind == "lxc":
        return _adopt_lxc(paths, ident, name=name, to=to or "lxc", network=network)
    return _adopt_docker(paths, ident, name=name, to=to or "docker", network=network)


def _target_spec(conv: Conversion, name: str | None, fallback: str, image: str, network: str | None) -> ContainerSpec:
    """The spec of the new ctr container: the conversion, named, on `image`; mounts whose
    source is missing here are left out (each named), since every backend refuses them."""
    final = name or conv.spec.get("name") or fallback
    try:
        validate_name(final)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{exc}: give the adopted container another name with --name") from None
    mounts = []
    for m in conv.spec["mounts"]:
        if os.path.exists(m["source"]):
            mounts.append(m)
        else:
            conv.warn(f"volume {m['source']}:{m['target']}", f"{m['source']} does not exist on this host: left out")
    return spec_from(conv, name=final, image=image, mounts=mounts, network=network or conv.spec["network"])


# --- lxc ------------------------------------------------------------------------------------


def _lxc_rootfs(value: str) -> str:
    """The directory of `lxc.rootfs.path` (dir:PATH or PATH); other storage is not read."""
    if value.startswith("dir:"):
        value = value[4:]
    if ":" in value or not value.startswith("/"):
        raise Unsupported(
            "lxc",
            f"adopting a container whose root is {value!r}",
            "only directory roots (lxc.rootfs.path = dir:PATH) can be read",
        )
    return value


def _lxc_base(store: ImageStore) -> Image:
    """The empty base image of adopted LXC containers: one empty layer, LXC's default init.
    Fixed content, so every adoption shares it and re-creating it moves nothing."""
    try:
        return store.get(LXC_BASE)
    except NotFound:
        pass
    return store.create(LXC_BASE, [b"\0" * 1024], ImageConfig(cmd=LXC_INIT, env=(BUILTIN_PATH_ENV,)))


def _adopt_lxc(paths: Paths, ident: str, *, name: str | None, to: str, network: str | None) -> Adoption:
    try:
        import lxc
    except ImportError:
        raise BackendUnavailable("the python lxc bindings are missing: pip install 'ctr[lxc]'") from None
    lxcpath = default_lxcpath()
    c = lxc.Container(ident, lxcpath)
    if not c.defined:
        raise NotFound(f"no LXC container {ident} in {lxcpath}")
    if c.state != "STOPPED":
        raise Conflict(
            f"cannot adopt LXC container {ident}: it is {c.state.lower()}; stop it first "
            f"(lxc-stop -n {ident}), so that its files are copied consistently"
        )
    config_file = c.config_file_name
    with open(config_file) as f:
        conv = read_lxc(f.read(), origin=config_file)
    rootfs = _lxc_rootfs(c.get_config_item("lxc.rootfs.path") or "")
    target = get_backend(to, paths)
    base = _lxc_base(ImageStore(paths))
    spec = _target_spec(conv, name, ident, base.name, network)
    # a plain directory, not an overlay upper: a 0:0 device is a device
    record, layer, notes = _materialize_tree(paths, target, spec, rootfs, f"the root of LXC container {ident}", False)
    return Adoption(record, f"lxc:{ident}", base.name, layer.tree_digest, list(conv.warnings), notes)


def _materialize_tree(
    paths: Paths, target, spec, tree, what: str, overlay: bool
) -> tuple[Record, LayerInfo, list[str]]:
    """The directory `tree` as one layer (an overlay upper when `overlay`), made a container
    of `spec` on `target` with the layer checked by tree digest; its record, layer and notes."""
    with scratch_dir(paths) as tmp:
        layer_file = tmp / "layer.tar"
        with open(layer_file, "wb") as out:
            layer = write_layer(tree, out, overlay=overlay)
        notes: list[str] = []
        record = materialize(
            target,
            spec,
            lambda: open(layer_file, "rb"),
            diff_id=layer.diff_id,
            tree=layer.tree_digest,
            what=what,
            notes=notes,
        )
    return record, layer, notes


# --- docker ---------------------------------------------------------------------------------


def _image_ref(config_image: str, image_id: str) -> str:
    """ctr's name for an adopted engine image: adopted/docker/<repository>:<id prefix>,
    unique per image content, so no adoption ever moves a name another container uses."""
    repo = config_image.split("@", 1)[0]
    colon = repo.rfind(":")
    if colon > repo.rfind("/"):
        repo = repo[:colon]
    repo = re.sub(r"[^a-z0-9._/-]+", "-", repo.lower())
    repo = "/".join(p for p in (re.sub(r"^[._-]+|[._-]+$", "", part) for part in repo.split("/")) if p) or "image"
    return f"adopted/docker/{repo}:{hex_digest(image_id)[:12]}"


def _import_engine_image(store: ImageStore, client: Any, image_id: str, ref: str) -> Image:
    from ctr.backends.docker.engine import engine_error, engine_exceptions
    from ctr.images.archive import import_image

    for image in store.list():
        if image.config_digest == image_id:
            return image  # adopted before, or ctr's own image
    with tempfile.TemporaryDirectory(dir=store.paths.data, prefix=".adopt-") as tmp:
        archive = Path(tmp) / "image.tar"
        try:
            with open(archive, "wb") as f:
                for chunk in client.api.get_image(image_id):
                    f.write(chunk)
        except engine_exceptions() as exc:
            raise engine_error(exc, f"cannot save image {image_id[:19]} from the engine") from exc
        (image,) = import_image(store, str(archive), name=ref)
    return image


def _adopt_docker(paths: Paths, ident: str, *, name: str | None, to: str, network: str | None) -> Adoption:
    from ctr.backends.docker.engine import engine_error, engine_exceptions

    client = _docker_client(paths)
    try:
        info = client.api.inspect_container(ident)
    except engine_exceptions() as exc:
        raise engine_error(exc, f"cannot adopt docker container {ident}") from exc
    labels = info["Config"].get("Labels") or {}
    if "ctr.name" in labels:
        raise Conflict(f"docker container {ident} is ctr's own container {labels['ctr.name']}: nothing to adopt")
    if info["State"].get("Running") or info["State"].get("Paused"):
        raise Conflict(
            f"cannot adopt docker container {ident}: it is running; stop it first (docker stop {ident}), "
            "so that its files are copied consistently"
        )
    graph = info.get("GraphDriver") or {}
    upper = (graph.get("Data") or {}).get("UpperDir")
    if graph.get("Name") != "overlay2" or not upper or not os.path.isdir(upper):
        raise Unsupported(
            "docker",
            f"adopting a container stored by the {graph.get('Name') or 'unknown'} driver",
            "ctr reads the writable layer of overlay2 containers on this host",
        )
    conv = docker_to_spec(info)
    target = get_backend(to, paths)
    store = ImageStore(paths)
    image = _import_engine_image(
        store, client, info["Image"], _image_ref(info["Config"].get("Image") or "", info["Image"])
    )
    own = info["Name"].lstrip("/")
    if name is None and target.name == "docker":
        name = f"{own}-ctr"  # the engine's names are unique too, and the source keeps its own
    spec = _target_spec(conv, name, own, image.name, network)
    what = f"the writable layer of docker container {ident}"
    record, layer, notes = _materialize_tree(paths, target, spec, upper, what, True)
    return Adoption(record, f"docker:{info['Id'][:12]}", image.name, layer.tree_digest, list(conv.warnings), notes)


__all__ = ["Adoption", "Foreign", "adopt", "default_lxcpath", "list_foreign"]
