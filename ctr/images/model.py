"""What an OCI image is made of, as ctr reads it: media types, the image and its
config, the checks an untrusted manifest, index or config must pass, and the
platform an index entry is picked by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ctr.errors import CtrError, NotFound
from ctr.images.reference import SHA256_RE

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = MEDIA_LAYER + "+gzip"
MEDIA_LAYER_ZSTD = MEDIA_LAYER + "+zstd"
# Docker's schema2 equivalents, accepted when reading a layout another tool wrote or pulling.
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_LAYER_GZIP = MEDIA_DOCKER_LAYER + ".gzip"
MANIFEST_TYPES = (MEDIA_MANIFEST, MEDIA_DOCKER_MANIFEST)
INDEX_TYPES = (MEDIA_INDEX, MEDIA_DOCKER_LIST)
LAYER_TYPES = (
    MEDIA_LAYER,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_ZSTD,
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
)
REF_ANNOTATION = "org.opencontainers.image.ref.name"

MANIFEST_LIMIT = 4 << 20  # what distribution accepts for a manifest
CONFIG_LIMIT = 16 << 20
MACHINE_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "i686": "386",
    "i386": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --- platforms --------------------------------------------------------------------------


def host_platform() -> dict[str, str]:
    """This machine as an OCI platform: {'os': 'linux', 'architecture': 'amd64'} (+ 'variant' on ARM)."""
    import platform

    machine = platform.machine()
    out = {"os": "linux", "architecture": MACHINE_ARCH.get(machine, machine)}
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(machine)
    if variant:
        out["variant"] = variant
    return out


def platform_text(p: dict | None) -> str:
    if not p:
        return "unknown"
    return "/".join(x for x in (p.get("os", "?"), p.get("architecture", "?"), p.get("variant", "")) if x)


def choose_platform(descriptors: Sequence[dict], what: str, host: dict | None = None) -> dict:
    """The descriptor of an index (or manifest list) that fits this machine.

    os and architecture must match; an exact variant beats a missing one
    (arm64 images often omit 'v8'). Attestation manifests (platform
    unknown/unknown) never match. A lone descriptor without a platform is taken.
    """
    host = host or host_platform()
    if len(descriptors) == 1 and not descriptors[0].get("platform"):
        return descriptors[0]
    best, best_score = None, 0
    for desc in descriptors:
        p = desc.get("platform") or {}
        if p.get("os") != host["os"] or p.get("architecture") != host["architecture"]:
            continue
        variant = p.get("variant", "")
        score = 2 if variant == host.get("variant", "") else 1 if not variant else 0
        if score > best_score:
            best, best_score = desc, score
    if best is None:
        offered = ", ".join(sorted({platform_text(d.get("platform")) for d in descriptors})) or "nothing"
        raise NotFound(f"{what} has no image for this machine's platform {platform_text(host)} (it has {offered})")
    return best


# --- checking untrusted manifests and configs -------------------------------------------


def _check_descriptor(desc: object, what: str) -> dict:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise CtrError(f"{what}: malformed descriptor {str(desc)[:80]!r}")
    if not SHA256_RE.fullmatch(desc["digest"]):
        raise CtrError(f"{what}: unsupported digest {desc['digest'][:80]!r}: only sha256 is supported")
    size = desc.get("size", 0)
    if not isinstance(size, int) or size < 0:
        raise CtrError(f"{what}: descriptor {desc['digest']} has a bad size {size!r}")
    return desc


def parse_json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CtrError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CtrError(f"{what} is not a JSON object")
    return doc


def check_index(doc: dict, what: str) -> list[dict]:
    """The descriptors of an OCI index or Docker manifest list, each checked."""
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise CtrError(f"{what} has no 'manifests' list")
    return [_check_descriptor(d, what) for d in manifests]


def check_manifest(doc: dict, what: str) -> tuple[dict, list[dict]]:
    """(config descriptor, layer descriptors) of an image manifest, refusing what ctr cannot run."""
    if doc.get("schemaVersion") == 1:
        raise CtrError(f"{what} is a Docker schema 1 manifest, which ctr does not support")
    if doc.get("schemaVersion") != 2:
        raise CtrError(f"{what} is not a schema 2 image manifest")
    config = _check_descriptor(doc.get("config"), what)
    if config.get("mediaType", MEDIA_CONFIG) not in (MEDIA_CONFIG, MEDIA_DOCKER_CONFIG):
        raise CtrError(f"{what} is not a container image: its config is a {config.get('mediaType')}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise CtrError(f"{what} has no 'layers' list")
    for layer in layers:
        _check_descriptor(layer, what)
        media = layer.get("mediaType", MEDIA_LAYER)
        if media not in LAYER_TYPES:
            raise CtrError(f"{what}: layer {layer['digest']} has the unsupported media type {media}")
    return config, layers


def check_config(doc: dict, layers: int, what: str) -> list[str]:
    """The diff_ids of an image config, one per layer, each a sha256 digest."""
    rootfs = doc.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and SHA256_RE.fullmatch(d) for d in diff_ids):
        raise CtrError(f"{what} has no valid rootfs.diff_ids")
    if len(diff_ids) != layers:
        raise CtrError(f"{what} lists {len(diff_ids)} diff_ids for {layers} layers")
    if doc.get("config") is not None and not isinstance(doc.get("config"), dict):
        raise CtrError(f"{what} has a malformed 'config' member")
    return diff_ids


# --- the image --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that decide what a container runs."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""

    @classmethod
    def from_oci(cls, config: dict) -> ImageConfig:
        """From an OCI/Docker image config JSON document (its "config" member)."""
        c = config.get("config") or {}
        return cls(
            entrypoint=tuple(c.get("Entrypoint") or ()),
            cmd=tuple(c.get("Cmd") or ()),
            env=tuple(c.get("Env") or ()),
            workdir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
        )

    def to_oci(self) -> dict:
        """The "config" member of an OCI image config."""
        out: dict = {}
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.env:
            out["Env"] = list(self.env)
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.user:
            out["User"] = self.user
        return out


@dataclass(frozen=True)
class Image:
    name: str  # normalized reference, e.g. "busybox:latest"
    digest: str  # manifest digest, "sha256:..."
    config_digest: str
    config: ImageConfig
    diff_ids: tuple[str, ...]  # uncompressed layer digests, bottom layer first
    layer_digests: tuple[str, ...]  # blob digests of the layers, bottom first
    architecture: str = ""
    os: str = ""
    size: int = 0  # bytes of the layer blobs
    labels: tuple[tuple[str, str], ...] = ()  # the config's Labels, sorted
    created: str = ""  # the config's "created" (RFC 3339), "" when absent
    media_type: str = MEDIA_MANIFEST  # of the manifest: OCI, or Docker's schema 2 as pulled

    @property
    def id(self) -> str:
        """Docker's image ID: the config digest."""
        return self.config_digest
