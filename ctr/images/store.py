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
busybox; other images come in through create(), or through an Ingest
(image_import: import of archives and layouts; registry: pull), which stages
verified blobs beside the store and publishes them all at once on commit.

Writers take the flock and publish with os.replace, so readers never lock and
never see a partial blob or index. Heavy stdlib modules (tarfile, subprocess)
are imported inside the functions that need them, to keep `ctr --help` fast.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Iterator, Sequence

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound

from ctr.state.paths import Paths

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
LAYER_TYPES = (MEDIA_LAYER, MEDIA_LAYER_GZIP, MEDIA_LAYER_ZSTD, MEDIA_DOCKER_LAYER, MEDIA_DOCKER_LAYER_GZIP,
               "application/vnd.oci.image.layer.nondistributable.v1.tar",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
REF_ANNOTATION = "org.opencontainers.image.ref.name"

BUILTIN_REF = "busybox:latest"
BUILTIN_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fixed timestamp for everything in the built-in image, so its digest depends only on
# the busybox binary (the epoch, as ko and rules_docker use for reproducible images).
BUILTIN_MTIME = 0
BUILTIN_CREATED = "1970-01-01T00:00:00Z"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_CHUNK = 1 << 20


# --- references -------------------------------------------------------------------------

# The grammar of distribution/reference (what `docker` accepts), in its familiar form.
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_REMOTE_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_NAME_MAX = 255


def normalize_ref(ref: str) -> str:
    """'busybox' -> 'busybox:latest', by docker's rules, in docker's familiar form.

    The tag defaults to `latest` unless a digest is given (`name@sha256:...`);
    `docker.io/` and `library/` are dropped (`docker.io/library/busybox` is
    `busybox`); a registry host (`127.0.0.1:5000/demo:1`) is kept as written.
    """
    if not ref or ref != ref.strip():
        raise InvalidSpec(f"invalid reference format {ref!r}: empty or surrounded by whitespace")
    name, at, digest = ref.partition("@")
    if at:
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidSpec(f"invalid reference format {ref!r}: bad digest {digest!r}")
        if digest.startswith("sha256:") and not _SHA256_RE.fullmatch(digest):
            raise InvalidSpec(f"invalid reference format {ref!r}: a sha256 digest is 64 lower-case hex digits")
    tag = ""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidSpec(f"invalid reference format {ref!r}: bad tag {tag!r}")
    # Docker's splitDockerDomain: the first component is a registry only if it looks like one.
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, remote = first, rest
    else:
        domain, remote = "", name
    if domain and not _DOMAIN_RE.fullmatch(domain):
        raise InvalidSpec(f"invalid reference format {ref!r}: bad registry {domain!r}")
    if not _REMOTE_RE.fullmatch(remote):
        if _REMOTE_RE.fullmatch(remote.lower()):
            raise InvalidSpec(f"invalid reference format {ref!r}: repository name must be lowercase")
        raise InvalidSpec(f"invalid reference format {ref!r}")
    if re.fullmatch(r"[a-f0-9]{64}", remote):
        raise InvalidSpec(f"invalid reference format {ref!r}: cannot use a 64-character hex string as a name")
    if domain in ("docker.io", "index.docker.io"):
        domain = ""
    if not domain and remote.startswith("library/") and remote.count("/") == 1:
        remote = remote[len("library/") :]
    name = f"{domain}/{remote}" if domain else remote
    if len(name) > _NAME_MAX:
        raise InvalidSpec(f"invalid reference format {ref!r}: name longer than {_NAME_MAX} characters")
    if not tag and not digest:
        tag = "latest"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def split_ref(normalized: str) -> tuple[str, str, str]:
    """'host:5000/a:1@sha256:x' -> ('host:5000/a', '1', 'sha256:x'); tag and digest may be ''."""
    name, _, digest = normalized.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def full_ref(normalized: str) -> str:
    """The fully qualified form containerd writes: 'busybox:latest' -> 'docker.io/library/busybox:latest'."""
    name, tag, digest = split_ref(normalized)
    first, slash, _ = name.partition("/")
    if not (slash and ("." in first or ":" in first or first == "localhost")):
        name = "docker.io/" + (name if slash else "library/" + name)
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# --- platforms --------------------------------------------------------------------------


def host_platform() -> dict[str, str]:
    """This machine as an OCI platform: {'os': 'linux', 'architecture': 'amd64'} (+ 'variant' on ARM)."""
    import platform

    machine = platform.machine()
    out = {"os": "linux", "architecture": _MACHINE_ARCH.get(machine, machine)}
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

MANIFEST_LIMIT = 4 << 20  # what distribution accepts for a manifest
CONFIG_LIMIT = 16 << 20


def _check_descriptor(desc: object, what: str) -> dict:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise CtrError(f"{what}: malformed descriptor {str(desc)[:80]!r}")
    if not _SHA256_RE.fullmatch(desc["digest"]):
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
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _SHA256_RE.fullmatch(d) for d in diff_ids):
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
    def from_oci(cls, config: dict) -> "ImageConfig":
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


# --- small helpers ----------------------------------------------------------------------


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[a-f0-9]{64}", hexpart):
        raise CtrError(f"unsupported digest {digest!r}: only sha256 is supported")
    return hexpart


def _canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`; it serializes threads too (one open file each)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temp file beside `path`, fsync, then os.replace: all or nothing."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    _fsync_dir(path.parent)


def _unlink_quiet(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_if_abandoned(staging: Path) -> None:
    """Remove an ingest directory whose owner is gone (its flock is free); keep live ones."""
    import shutil

    try:
        fd = os.open(staging / ".lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        shutil.rmtree(staging, ignore_errors=True)
        return
    except NotADirectoryError:
        _unlink_quiet(staging)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # an import or pull in progress
    finally:
        os.close(fd)
    shutil.rmtree(staging, ignore_errors=True)


class _HashingReader:
    """A read-only file wrapper that hashes (sha256) and counts what passes through."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _sniff_compression(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return ""


ZSTD_HINT = "pip install zstandard (or ctr[zstd])"


def decompressed(f: IO[bytes], kind: str, what: str) -> IO[bytes]:
    """A reader of the uncompressed bytes of `f`, compressed as `kind` ('', 'gzip', 'zstd').

    zstd needs the optional `zstandard` package, imported only here.
    """
    import gzip

    if kind == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise CtrError(f"{what} is zstd-compressed, which needs the zstandard package: {ZSTD_HINT}") from None
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
    return f


@contextmanager
def _open_layer(path: Path, what: str) -> Iterator[tuple[_HashingReader, _HashingReader]]:
    """Open a layer blob; yields (blob reader, uncompressed tar reader), both hashing.

    Compression is sniffed from the content, so a `+gzip` layer works whatever
    media type it was filed under.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"layer blob {path} of {what} is missing: remove the image and re-create it") from None
    with f:
        kind = _sniff_compression(f.read(4))
        f.seek(0)
        blob = _HashingReader(f)
        if kind:
            with decompressed(blob, kind, f"layer {path.name} of {what}") as plain:  # type: ignore[arg-type]
                yield blob, _HashingReader(plain)
        else:
            yield blob, blob


# --- safe layer extraction --------------------------------------------------------------


def _member_parts(name: str, layer: str, kind: str = "member") -> list[str]:
    """A tar member name as path components, refusing anything that leaves the layer."""
    if name.startswith("/"):
        raise CtrError(f"unsafe layer {layer}: {kind} {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CtrError(f"unsafe layer {layer}: {kind} {name!r} has a '..' component")
    return parts


def _safe_parent(root: str, parts: list[str], layer: str, create: bool) -> str:
    """The directory that will hold parts[-1], checking that no component is a symlink.

    Without this, a symlink `etc -> /etc` followed by `etc/passwd` would write the
    host's file. Missing directories are created (0755, as tar does) if `create`.
    """
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise CtrError(f"unsafe layer {layer}: {'/'.join(parts)!r} refers to a missing path") from None
            os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise CtrError(f"unsafe layer {layer}: {'/'.join(parts)!r} goes through the symlink {part!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise CtrError(f"unsafe layer {layer}: {'/'.join(parts)!r} goes through the non-directory {part!r}")
    return path


def _is_plain_dir(root: str, parts: list[str]) -> bool:
    """Whether root/parts is a directory reached through directories only (no symlinks)."""
    path = root
    for part in parts:
        path = os.path.join(path, part)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def _ns(mtime: float) -> tuple[int, int]:
    return (int(mtime * 10**9),) * 2


def _clear(path: str, keep_dir: bool) -> None:
    """Remove what is at `path` (a later tar member replaces an earlier one), never following links."""
    import shutil

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(path)
    else:
        os.unlink(path)


def extract_layer(fileobj: IO[bytes], dest: str | os.PathLike, *, layer: str = "") -> str:
    """Unpack one uncompressed layer tar into the empty directory `dest`, for overlayfs.

    Returns the sha256 digest of the tar stream (the layer's diff_id). Refuses
    absolute names, '..' components, and paths or hard links that go through a
    symlink; symlinks themselves are created as they are (their targets are only
    resolved inside the container). Whiteouts become what overlayfs expects:
    `.wh.NAME` a 0:0 character device NAME, `.wh..wh..opq` the xattr
    trusted.overlay.opaque=y on its directory. Owners and device nodes need root;
    without it owners are left alone and device nodes skipped, with one warning
    line that gives their count.

    A tar read straight from a file (an uncompressed blob in the store) is read
    seekably rather than streamed, which makes the unpack about as fast as tar -x:
    member data goes from file to file in the kernel while a second thread hashes
    the file (_FileHasher). Any other stream is read, decompressed if it is a
    decompressor, and hashed in a second thread (_ReadAhead).
    """
    root = os.fspath(dest)
    layer = layer or root
    src = _plain_file(fileobj)
    if src is None:
        reader = _ReadAhead(fileobj)
        try:
            skipped = _extract_members(reader, "r|", root, layer, None)  # type: ignore[arg-type]
            digest = reader.digest()
        finally:
            reader.stop()
    else:
        hasher = _FileHasher(src, fileobj.tell(), layer)
        try:
            skipped = _extract_members(fileobj, "r:", root, layer, src)
            digest = hasher.digest()
        finally:
            hasher.stop()
    if skipped:
        _warn(f"layer {layer}: skipped {skipped} device node{'s' if skipped != 1 else ''}: "
              "creating them needs CAP_MKNOD (rootless Docker and Podman skip them too)")
    return digest


def _warn(line: str) -> None:
    """One line on stderr: what a library call did that the user should know of."""
    import sys

    print(f"ctr: warning: {line}", file=sys.stderr, flush=True)


def _plain_file(fileobj: IO[bytes]) -> int | None:
    """The descriptor of the regular file `fileobj` reads as it is, or None (a stream, a decompressor).

    Checked by type: a GzipFile, say, has a fileno() too, but it is the compressed file's.
    """
    import io

    raw = fileobj.raw if isinstance(fileobj, io.BufferedReader) else fileobj
    if isinstance(raw, io.FileIO) and stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
        return raw.fileno()
    return None


def _write_hashed(src: IO[bytes], directory: Path, *, what: str, size: int | None = None,
                  limit: int | None = None) -> tuple[str, str, int]:
    """Copy `src` into a new temp file in `directory` (mode 0644, fsync'd), hashing it as it
    goes; returns (temp path, digest, length), the caller placing or removing the file.
    `limit` caps what is read; `size` is the exact length expected, a longer stream refused
    as soon as it shows. On any error the temp file is gone."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as f:
            while chunk := src.read(_CHUNK):
                n += len(chunk)
                if limit is not None and n > limit:
                    raise CtrError(f"{what} is larger than {limit} bytes: refused")
                if size is not None and n > size:
                    raise CtrError(f"{what} is longer than the {size} bytes its descriptor says")
                h.update(chunk)
                f.write(chunk)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        if size is not None and n != size:
            raise CtrError(f"{what} is truncated: {n} of {size} bytes")
        return tmp, "sha256:" + h.hexdigest(), n
    except BaseException:
        _unlink_quiet(tmp)
        raise


class _Worker:
    """A daemon thread running self._work() beside the caller: its error kept for the
    caller to raise, its end (self.done) and progress announced under self._cond.
    Subclasses set their own fields before calling __init__, which starts the thread."""

    def __init__(self, name: str) -> None:
        import threading

        self.done = self.stopped = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        from ctr.native.threads import start_quiet_thread

        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        start_quiet_thread(self._thread)

    def _work(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.error = exc
        finally:
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def stop(self) -> None:
        """Ask the work to stop at its next step, and wait until it has."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()
        self._thread.join()


class _FileHasher(_Worker):
    """The sha256 of file descriptor `fd` from `start` to its end, computed in a thread.

    hashlib releases the GIL on large updates, so on a second core the hash costs
    the unpack that reads the same file nothing. digest() also checks the file's
    size and change times: what was hashed is what was unpacked, as when one
    stream was both hashed and unpacked.
    """

    CHUNK = 4 << 20

    def __init__(self, fd: int, start: int, layer: str) -> None:
        self.fd, self.layer, self.offset = fd, layer, start
        self.stamp = self._stamp()
        self.hash = hashlib.sha256()
        super().__init__("ctr-layer-hash")

    def _stamp(self) -> tuple[int, int, int]:
        st = os.fstat(self.fd)
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def _work(self) -> None:
        buf = bytearray(self.CHUNK)
        view = memoryview(buf)
        while not self.stopped and (n := os.preadv(self.fd, [buf], self.offset)):
            self.hash.update(view[:n])
            self.offset += n

    def digest(self) -> str:
        """The file's digest, once hashed; raises if the file could not be read or changed meanwhile."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        if self._stamp() != self.stamp:
            raise CtrError(f"layer {self.layer} changed while it was unpacked")
        return "sha256:" + self.hash.hexdigest()


class _ReadAhead(_Worker):
    """A reader of `src` that reads and hashes it in a thread, a few chunks ahead of the caller.

    Decompression (zlib, zstandard) and hashlib release the GIL, so a compressed
    layer is decompressed and hashed on one core while it is unpacked on the other.
    read() returns short, as a raw stream may.
    """

    DEPTH = 8  # chunks of _CHUNK bytes held ready

    def __init__(self, src: IO[bytes]) -> None:
        import collections

        self.src = src
        self.hash = hashlib.sha256()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.chunk, self.pos = b"", 0
        super().__init__("ctr-layer-read")

    def _work(self) -> None:
        while data := self.src.read(_CHUNK):
            self.hash.update(data)
            with self._cond:
                self._cond.wait_for(lambda: len(self.chunks) < self.DEPTH or self.stopped)
                if self.stopped:
                    return
                self.chunks.append(data)
                self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        if self.pos == len(self.chunk):
            with self._cond:
                self._cond.wait_for(lambda: self.chunks or self.done)
                if not self.chunks:
                    if self.error is not None:
                        raise self.error
                    return b""
                self.chunk, self.pos = self.chunks.popleft(), 0
                self._cond.notify_all()
        end = len(self.chunk) if n < 0 else self.pos + n
        data = self.chunk[self.pos : end]
        self.pos += len(data)
        return data

    def digest(self) -> str:
        """The digest of all of `src`, read to its end (the diff_id covers the end-of-archive blocks too)."""
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


def _copy_range(src: int, dst: int, offset: int, size: int) -> int:
    """Copy `size` bytes at `offset` of file `src` to the file `dst`; returns how many (fewer at its end).

    sendfile copies in the kernel, page cache to page cache, without Python
    buffers; a file system that cannot splice gets the user-space copy, as in
    _BackgroundCopy.
    """
    copied = 0
    try:
        while copied < size and (n := os.sendfile(dst, src, offset + copied, size - copied)):
            copied += n
    except OSError:
        while copied < size and (data := os.pread(src, min(size - copied, _CHUNK), offset + copied)):
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view):]
            copied += len(data)
    return copied


def _extract_members(fileobj: IO[bytes], mode: str, root: str, layer: str, src: int | None) -> int:
    """extract_layer's checks and writes, member by member, for the tar in `fileobj`;
    returns how many device nodes it could not create (no CAP_MKNOD) and skipped.

    Streamed (mode 'r|'), or seekable ('r:') with `src` its descriptor: then member
    data is copied from there by the kernel instead of read through tarfile.
    """
    import shutil
    import tarfile

    is_root = os.geteuid() == 0
    skipped = 0
    dirs: list[tuple[list[str], tarfile.TarInfo]] = []  # modes and mtimes applied last
    try:
        tar = tarfile.open(fileobj=fileobj, mode=mode)  # type: ignore[call-overload]
    except tarfile.ReadError as exc:
        raise CtrError(f"layer {layer} is not a tar archive: {exc}") from None
    with tar:
        for member in tar:
            parts = _member_parts(member.name, layer)
            if not parts:  # "./": the layer's root directory itself
                if not member.isdir():
                    raise CtrError(f"unsafe layer {layer}: the root entry {member.name!r} is not a directory")
                if is_root:
                    os.chown(root, member.uid, member.gid)
                dirs.append((parts, member))
                continue
            base = parts[-1]
            if base == WHITEOUT_OPAQUE:
                parent = _safe_parent(root, parts, layer, create=True)
                try:
                    os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
                except OSError as exc:  # EPERM without root, ENOTSUP on a filesystem without xattrs
                    raise CtrError(f"cannot unpack layer {layer}: opaque whiteout {member.name!r} needs the xattr "
                                   f"{OVERLAY_OPAQUE_XATTR} on {parent}: {exc.strerror}") from None
                continue
            if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                continue  # aufs bookkeeping (.wh..wh.plnk and the like): nothing to represent
            if base.startswith(WHITEOUT_PREFIX):
                name = base[len(WHITEOUT_PREFIX) :]
                if name in ("", ".", ".."):
                    raise CtrError(f"unsafe layer {layer}: bad whiteout {member.name!r}")
                path = os.path.join(_safe_parent(root, parts, layer, create=True), name)
                _clear(path, keep_dir=False)
                try:
                    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
                except PermissionError:
                    raise CtrError(f"cannot unpack layer {layer}: whiteout {member.name!r} needs root (mknod)") from None
                continue

            path = os.path.join(_safe_parent(root, parts, layer, create=True), base)
            _clear(path, keep_dir=member.isdir())
            if member.isdir():
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)  # real mode set at the end, once children are written
                dirs.append((parts, member))
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                target_parts = _member_parts(member.linkname, layer, "hard link target")
                if not target_parts:
                    raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} points at the root")
                target = os.path.join(_safe_parent(root, target_parts, layer, create=False), target_parts[-1])
                if not os.path.lexists(target) or os.path.isdir(target) and not os.path.islink(target):
                    raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} -> {member.linkname!r}: no such file in the layer")
                os.link(target, path, follow_symlinks=False)  # links a symlink itself, never its target
                continue  # the shared inode keeps the metadata of its first name
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                try:
                    os.mknod(path, 0o600 | kind, os.makedev(member.devmajor, member.devminor))
                except PermissionError:  # not root, or root of a user namespace
                    skipped += 1
                    continue
            elif member.isfifo():
                os.mkfifo(path, 0o600)
            else:  # regular file (tarfile reads unknown types as regular files too)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    if src is None or member.sparse is not None:  # streamed, or scattered data tarfile reassembles
                        with open(fd, "wb", closefd=False) as out:
                            shutil.copyfileobj(tar.extractfile(member), out, _CHUNK)  # type: ignore[misc]
                    elif _copy_range(src, fd, member.offset_data, member.size) < member.size:
                        raise CtrError(f"layer {layer} is corrupt or truncated: the data of {member.name!r} ends early")
                finally:
                    os.close(fd)
            if member.isdir():
                if is_root:
                    os.chown(path, member.uid, member.gid)
                continue
            if is_root:
                os.chown(path, member.uid, member.gid, follow_symlinks=False)
            if not member.issym():
                os.chmod(path, member.mode & 0o7777)  # after chown, which clears set-id bits
            os.utime(path, ns=_ns(member.mtime), follow_symlinks=False)
    # Deepest first, so setting a directory's mtime is not undone by its children. A later
    # member may have replaced the directory or a parent with a symlink: re-check the path.
    for parts, member in sorted(dirs, key=lambda d: len(d[0]), reverse=True):
        if _is_plain_dir(root, parts):
            path = os.path.join(root, *parts)
            os.chmod(path, member.mode & 0o7777)
            os.utime(path, ns=_ns(member.mtime))
    return skipped


def scan_layer(fileobj: IO[bytes], *, layer: str) -> str:
    """Check an untrusted uncompressed layer tar without unpacking it; returns its diff_id.

    Done when an image comes in (import, pull), so a hostile archive is refused
    before anything is stored, with the member named. Refused: absolute names
    and '..' components; members that go through a symlink of the same layer;
    hard links whose target leaves the layer; symlinks whose relative target
    climbs above the layer root (absolute targets are kept: the container
    resolves them inside its own root, as /bin/sh -> /bin/busybox wants);
    tar types other than files, directories, links, fifos and device nodes.
    Device nodes are accepted, as Docker accepts them: what keeps a container
    from using a host device through one is the device cgroup every backend
    sets up (ctr.native.devices), and /dev is each backend's own tmpfs.
    extract_layer repeats the path checks at unpack time, since blobs can also
    come from create().
    """
    reader = _HashingReader(fileobj)
    with _corrupt_layer(layer):
        _check_members(reader, "r|", layer)  # type: ignore[arg-type]
        reader.drain()  # the diff_id covers the end-of-archive blocks too
    return reader.digest


@contextmanager
def _corrupt_layer(layer: str) -> Iterator[None]:
    """Any error but ours reading a layer (tarfile, gzip, zlib, zstandard, EOFError) as one clear CtrError."""
    try:
        yield
    except CtrError:
        raise
    except Exception as exc:
        raise CtrError(f"layer {layer} is corrupt or truncated: {_describe(exc)}") from None


def _check_members(fileobj: IO[bytes], mode: str, layer: str) -> None:
    """scan_layer's rules, applied to every member of the tar in `fileobj` (mode 'r|' streamed, 'r:' seekable)."""
    import tarfile

    symlinks: set[str] = set()
    with tarfile.open(fileobj=fileobj, mode=mode) as tar:  # type: ignore[call-overload]
        for member in tar:
            parts = _member_parts(member.name, layer)
            path = "/".join(parts)
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in symlinks:
                    raise CtrError(f"unsafe layer {layer}: {member.name!r} goes through the symlink {parts[i - 1]!r}")
            if member.issym():
                target = member.linkname
                if not target:
                    raise CtrError(f"unsafe layer {layer}: symlink {member.name!r} has an empty target")
                if not target.startswith("/"):
                    depth = len(parts) - 1
                    for comp in target.split("/"):
                        depth += -1 if comp == ".." else 0 if comp in ("", ".") else 1
                        if depth < 0:
                            raise CtrError(f"unsafe layer {layer}: symlink {member.name!r} -> {target!r} "
                                           "leads outside the image root")
                symlinks.add(path)
                continue
            symlinks.discard(path)
            if member.islnk():
                target_parts = _member_parts(member.linkname, layer, "hard link target")
                if not target_parts:
                    raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} points at the root")
                for i in range(1, len(target_parts)):
                    if "/".join(target_parts[:i]) in symlinks:
                        raise CtrError(f"unsafe layer {layer}: hard link {member.name!r} -> {member.linkname!r} "
                                       f"goes through the symlink {target_parts[i - 1]!r}")
            elif not (member.isreg() or member.isdir() or member.isfifo() or member.ischr() or member.isblk()):
                raise CtrError(f"unsafe layer {layer}: {member.name!r} has the unknown tar type {member.type!r}")


def _unreadable_layer_errors() -> tuple[type[BaseException], ...]:
    """What reading a broken layer raises: the tar reader's and the decompressors' errors.
    Not OSError at large: a full disk while unpacking is not a corrupt layer."""
    import gzip
    import tarfile
    import zlib

    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


# --- the built-in busybox ---------------------------------------------------------------

_ELF_ARCH = {3: "386", 8: "mips", 21: "ppc64", 22: "s390x", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64"}
_MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386", "armv7l": "arm", "armv6l": "arm",
                 "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def _elf_info(path: str) -> tuple[bool, str] | None:
    """(statically linked, GOARCH) of an ELF file, or None if it is not ELF.

    Static means no PT_INTERP program header: nothing to load from the image's
    (non-existent) /lib.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF":
                return None
            is64, endian = head[4] == 2, "<" if head[5] == 1 else ">"
            machine = struct.unpack_from(endian + "H", head, 18)[0]
            if is64:
                phoff, = struct.unpack_from(endian + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
            else:
                phoff, = struct.unpack_from(endian + "I", head, 28)
                phentsize, phnum = struct.unpack_from(endian + "HH", head, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    static = all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != 3 for i in range(phnum))  # PT_INTERP
    arch = _ELF_ARCH.get(machine, "")
    if arch == "ppc64" and endian == "<":
        arch = "ppc64le"
    if not arch:
        import platform

        arch = _MACHINE_ARCH.get(platform.machine(), platform.machine())
    return static, arch


def find_busybox() -> tuple[str, str]:
    """(path, GOARCH) of the host's statically linked busybox, or NotFound saying how to get one."""
    import shutil

    candidates = [c for c in (shutil.which("busybox"), *BUSYBOX_CANDIDATES) if c]
    dynamic = []
    for path in dict.fromkeys(candidates):
        info = _elf_info(path) if os.access(path, os.X_OK) else None
        if info is None:
            continue
        if info[0]:
            return path, info[1]
        dynamic.append(path)
    if dynamic:
        raise NotFound(f"busybox at {dynamic[0]} is dynamically linked and cannot run in an empty image: "
                       "apt-get install busybox-static")
    raise NotFound("no busybox found on this host (looked in PATH, /bin, /usr/bin) for the built-in "
                   "busybox image: apt-get install busybox-static")


def _busybox_facts(busybox: str) -> tuple[str, str, list[str]]:
    """(short version, banner, applet paths relative to /) from the binary itself."""
    import subprocess

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([busybox, *args], capture_output=True, text=True, timeout=30)

    banner_out = run("--help")
    match = re.search(r"BusyBox v(\S+)[^\n]*", banner_out.stdout + banner_out.stderr)
    version, banner = (match.group(1), match.group(0).strip()) if match else ("unknown", "BusyBox")
    listed = run("--list-full")
    if listed.returncode == 0 and listed.stdout.strip():
        applets = listed.stdout.split()
    else:  # an old busybox without --list-full: everything in /bin
        applets = ["bin/" + a for a in run("--list").stdout.split()]
    clean = set()
    for applet in applets:
        parts = [p for p in applet.strip("/").split("/") if p not in ("", ".")]
        if parts and ".." not in parts:
            clean.add("/".join(parts))
    clean.discard("bin/busybox")
    return version, banner.removesuffix(" multi-call binary."), sorted(clean)


_BUILTIN_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
                 "run": 0o755, "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755,
                 "usr/bin": 0o755, "usr/sbin": 0o755, "var": 0o755}
_BUILTIN_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
}


def build_busybox_layer(busybox: str, applets: Sequence[str], out: BinaryIO) -> None:
    """Write the built-in image's layer tar to `out`, byte-for-byte reproducible.

    Order: directories, regular files, then the applets as hard links to
    /bin/busybox (as the official busybox images have them), each group sorted;
    mtime BUILTIN_MTIME, owner 0:0 without names.
    """
    import io
    import tarfile

    def info(name: str, type_: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.linkname = type_, mode, size, linkname
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = BUILTIN_MTIME, 0, 0, "", ""
        return ti

    dirs = dict(_BUILTIN_DIRS)
    for applet in applets:  # parents of applets busybox may put elsewhere
        parts = applet.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]), 0o755)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            tar.addfile(info(name, tarfile.DIRTYPE, dirs[name]))
        with open(busybox, "rb") as f:
            tar.addfile(info("bin/busybox", tarfile.REGTYPE, 0o755, os.fstat(f.fileno()).st_size), f)
        for name, content in sorted(_BUILTIN_FILES.items()):
            tar.addfile(info(name, tarfile.REGTYPE, 0o644, len(content)), io.BytesIO(content))
        for applet in applets:
            if applet not in dirs and applet not in _BUILTIN_FILES:
                tar.addfile(info(applet, tarfile.LNKTYPE, 0o755, linkname="bin/busybox"))


# --- the store --------------------------------------------------------------------------


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
        image = self._lookup(name)
        if image is None and name == BUILTIN_REF:
            with self._lock():
                image = self._lookup(name)  # another ctr may have built it while we waited
                if image is None:
                    self._build_busybox()
                    image = self._lookup(name)
        if image is None:
            raise NotFound(f"image {name!r} not found in {self.root}: pull it (ctr image pull), import it "
                           f"(ctr image import) or tag an image as {name!r}")
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
        return self.blobs / _hex(digest)

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
            "layers": [{"digest": layer["digest"], "diff_id": diff_id, "size": layer.get("size", 0),
                        "media_type": layer.get("mediaType", "")}
                       for layer, diff_id in zip(manifest.get("layers") or [], image.diff_ids)],
            "history": config.get("history") or [],
        }

    def ingest(self) -> "Ingest":
        """A staging area for blobs coming in; use as a context manager, then commit()."""
        return Ingest(self)

    def users(self, image: Image) -> list[str]:
        """Names of the containers (any state) whose record says they run `image`."""
        from ctr.state.records import RecordStore

        return [r.name for r in RecordStore(self.paths).list()
                if r.image == image.name or (r.image_digest and r.image_digest == image.digest)]

    def remove_checked(self, ref: str, force: bool = False) -> Image:
        """remove(), refused while a container uses the image and no other name keeps it (docker rmi).

        With `force` the name goes anyway: containers keep running from their
        unpacked layers, which remove() never deletes.
        """
        image = self._lookup(normalize_ref(ref))  # not get(): removing busybox must not build it first
        if image is None:
            raise NotFound(f"image {normalize_ref(ref)!r} not found in {self.root}: nothing to remove")
        if not force:
            others = [i.name for i in self.list() if i.digest == image.digest and i.name != image.name]
            users = self.users(image)
            if users and not others:
                raise Conflict(f"image {image.name!r} is used by container{'s' if len(users) > 1 else ''} "
                               f"{', '.join(users)}: remove {'them' if len(users) > 1 else 'it'} first, or use -f")
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
            path = self.paths.layers / _hex(diff_id)
            if not path.is_dir():
                self._unpack(image, diff_id, blob, path)
            out.append(path)
        return out

    def _unpack(self, image: Image, diff_id: str, blob: str, path: Path) -> None:
        import shutil
        import tempfile

        with _flock(self.paths.layers / ".lock"):
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
                with _open_layer(self.blob_path(blob), f"image {image.name}") as (raw, tar_stream):
                    plain = raw is tar_stream
                    try:
                        got_diff = extract_layer(tar_stream.raw, tmp, layer=what)  # type: ignore[arg-type]
                        if not plain:
                            raw.drain()
                    except _unreadable_layer_errors() as exc:
                        raise CtrError(f"layer blob {self.blob_path(blob)} is corrupt or truncated: "
                                       f"{_describe(exc)}") from None
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

    def create(self, ref: str, layers: Sequence[bytes | str | os.PathLike], config: ImageConfig = ImageConfig(),
               *, labels: dict[str, str] | None = None, architecture: str = "", created: str = BUILTIN_CREATED) -> Image:
        """Add an image made of `layers` (tar files or bytes, plain or gzip), bottom first.

        The layers are stored as given; their diff_ids are computed here. This is
        how images other than busybox get into the store (import, commit, tests).
        """
        import io

        name = normalize_ref(ref)
        if split_ref(name)[2]:
            raise InvalidSpec(f"cannot create image {name!r}: a name with a digest cannot be assigned")
        with self._lock():
            descriptors, diff_ids = [], []
            for layer in layers:
                src = io.BytesIO(layer) if isinstance(layer, bytes) else open(layer, "rb")
                with src:
                    gzipped = _sniff_compression(src.read(4)) == "gzip"
                    src.seek(0)
                    digest, size = self._put_blob_stream(src)
                with _open_layer(self.blob_path(digest), f"image {name}") as (_, tar_stream):
                    tar_stream.drain()
                    diff_ids.append(tar_stream.digest)
                media = MEDIA_LAYER_GZIP if gzipped else MEDIA_LAYER
                descriptors.append({"mediaType": media, "digest": digest, "size": size})
            doc = {
                "created": created,
                "architecture": architecture or _MACHINE_ARCH.get(os.uname().machine, os.uname().machine),
                "os": "linux",
                "config": {**config.to_oci(), **({"Labels": labels} if labels else {})},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": created, "created_by": "ctr create"} for _ in diff_ids],
            }
            self._commit(name, doc, descriptors)
            return self._lookup(name)  # type: ignore[return-value]

    def tag(self, src: str, dst: str) -> Image:
        """Give the image `src` the additional name `dst` (moving `dst` if it named another)."""
        image = self.get(src)
        name = normalize_ref(dst)
        if split_ref(name)[2]:
            raise InvalidSpec(f"cannot tag {image.name!r} as {name!r}: a tag cannot contain a digest")
        with self._lock():
            manifest = self.read_blob(image.digest)
            entry = self._entry(name, image.digest, len(manifest), image.architecture, image.os, image.media_type)
            self._set_index_entry(name, entry)
        return self._lookup(name)  # type: ignore[return-value]

    def remove(self, ref: str) -> None:
        """Untag `ref` and delete the blobs no remaining name uses.

        Unpacked layers are kept: running containers may have them as lowerdirs.
        """
        name = normalize_ref(ref)
        with self._lock():
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

    # internals

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """The store's flock; also makes sure the layout exists and drops stale temp blobs."""
        with _flock(self.root / ".lock"):
            self.blobs.mkdir(parents=True, exist_ok=True)
            layout = self.root / "oci-layout"
            if not layout.exists():
                _write_atomic(layout, _canonical_json({"imageLayoutVersion": "1.0.0"}))
            # Blobs are only written under this lock, so a temp file now is a crashed writer's.
            for stale in self.blobs.glob(".tmp-*"):
                _unlink_quiet(stale)
            for staging in self.root.glob(".ingest-*"):
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
        _write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode() + b"\n")

    def _lookup(self, name: str) -> Image | None:
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
            raise CtrError(f"image {name!r} in {self.root} has a {media} entry; ctr reads single-platform manifests only")
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
        tmp, digest, size = _write_hashed(src, self.blobs, what="blob")
        try:
            if expected is not None and digest != expected:
                raise CtrError(f"blob written to {self.blobs} has digest {digest}, expected {expected}")
            final = self.blob_path(digest)
            if final.exists():
                os.unlink(tmp)  # content-addressed: an existing blob is the same bytes
            else:
                os.replace(tmp, final)
                _fsync_dir(self.blobs)
            return digest, size
        except BaseException:
            _unlink_quiet(tmp)
            raise

    def _put_blob(self, data: bytes) -> dict:
        import io

        digest, size = self._put_blob_stream(io.BytesIO(data))
        return {"digest": digest, "size": size}

    @staticmethod
    def _entry(name: str, digest: str, size: int, arch: str, os_: str, media: str = MEDIA_MANIFEST) -> dict:
        return {
            "mediaType": media,
            "digest": digest,
            "size": size,
            "annotations": {REF_ANNOTATION: name},
            "platform": {"architecture": arch, "os": os_},
        }

    def _set_index_entry(self, name: str, entry: dict) -> None:
        index = self._read_index()
        index["manifests"] = [e for e in index["manifests"]
                              if (e.get("annotations") or {}).get(REF_ANNOTATION) != name] + [entry]
        index.setdefault("schemaVersion", 2)
        index.setdefault("mediaType", MEDIA_INDEX)
        self._write_index(index)

    def _commit(self, name: str, config_doc: dict, layers: list[dict], annotations: dict | None = None) -> str:
        """Write config and manifest blobs, then point `name` at them (caller holds the lock)."""
        config = {"mediaType": MEDIA_CONFIG, **self._put_blob(_canonical_json(config_doc))}
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": layers}
        if annotations:
            manifest["annotations"] = annotations
        desc = self._put_blob(_canonical_json(manifest))
        entry = self._entry(name, desc["digest"], desc["size"], config_doc["architecture"], config_doc["os"])
        self._set_index_entry(name, entry)
        return desc["digest"]

    def _build_busybox(self) -> str:
        """Build busybox:latest from the host's static busybox (caller holds the lock)."""
        import tempfile

        busybox, arch = find_busybox()
        version, banner, applets = _busybox_facts(busybox)
        # The layer is built in a temp file inside the blobs dir, then stored like any blob.
        with tempfile.TemporaryFile(dir=self.blobs, prefix=".tmp-") as f:
            build_busybox_layer(busybox, applets, f)  # type: ignore[arg-type]
            f.seek(0)
            digest, size = self._put_blob_stream(f)
        labels = {"org.opencontainers.image.version": version, "org.opencontainers.image.description":
                  f"ctr built-in image from {banner}"}
        doc = {
            "created": BUILTIN_CREATED,
            "architecture": arch,
            "os": "linux",
            "config": {**ImageConfig(cmd=("sh",), env=(BUILTIN_PATH_ENV,)).to_oci(), "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [digest]},  # uncompressed: blob digest is the diff_id
            "history": [{"created": BUILTIN_CREATED, "created_by": f"ctr built-in busybox ({banner})"}],
        }
        return self._commit(BUILTIN_REF, doc, [{"mediaType": MEDIA_LAYER, "digest": digest, "size": size}],
                            annotations=labels)

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
                _unlink_quiet(blob)

    # export

    def export_docker_archive(self, image: Image, out: BinaryIO, *, extra: dict | None = None) -> None:
        """Write `image` as a docker-archive tar (what `docker save` writes, `docker load` reads).

        manifest.json, the config as <hex>.json, each layer uncompressed as
        <diff_id hex>/layer.tar, and `repositories`. `out` may be a pipe.
        `extra` adds members to the manifest.json entry (docker load ignores them).
        """
        import io
        import tarfile
        import tempfile

        def add(tar: tarfile.TarFile, name: str, size: int, src: IO[bytes] | None, type_: bytes = tarfile.REGTYPE) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.size, ti.mode, ti.mtime = type_, size, 0o644 if type_ == tarfile.REGTYPE else 0o755, BUILTIN_MTIME
            tar.addfile(ti, src)

        config = self.read_blob(image.config_digest)
        _, tag, digest = split_ref(image.name)
        repo_tags = [image.name] if tag and not digest else []
        layer_names = [f"{_hex(d)}/layer.tar" for d in image.diff_ids]
        manifest = [{"Config": f"{_hex(image.config_digest)}.json", "RepoTags": repo_tags, "Layers": layer_names,
                     **(extra or {})}]
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            add(tar, f"{_hex(image.config_digest)}.json", len(config), io.BytesIO(config))
            done: set[str] = set()
            for diff_id, blob, name in zip(image.diff_ids, image.layer_digests, layer_names, strict=True):
                if name in done:
                    continue
                done.add(name)
                add(tar, name.split("/")[0], 0, None, tarfile.DIRTYPE)
                with _open_layer(self.blob_path(blob), f"image {image.name}") as (raw, tar_stream):
                    if tar_stream is raw:
                        size = self.blob_path(blob).stat().st_size
                        add(tar, name, size, tar_stream)  # type: ignore[arg-type]
                    else:  # a gzip layer: the archive wants it uncompressed, whose size we learn by unpacking
                        with tempfile.TemporaryFile() as plain:
                            while chunk := tar_stream.read(_CHUNK):
                                plain.write(chunk)
                            size = plain.tell()
                            plain.seek(0)
                            add(tar, name, size, plain)
                if tar_stream.digest != diff_id:
                    raise CtrError(f"layer {blob} of image {image.name} does not match its diff_id {diff_id}")
            add(tar, "manifest.json", *_sized(json.dumps(manifest).encode()))
            if repo_tags:
                repo, tag, _ = split_ref(image.name)
                repositories = {repo: {tag: _hex(image.diff_ids[-1]) if image.diff_ids else ""}}
                add(tar, "repositories", *_sized(json.dumps(repositories).encode()))


class _BackgroundCopy(_Worker):
    """Copies file descriptor `src` to `dst` in a thread, telling how far it got.

    sendfile copies in the kernel without holding the GIL, so the copy, and
    then the fsync, run on one core while the caller hashes on the other.
    """

    CHUNK = 8 << 20

    def __init__(self, src: int, dst: int) -> None:
        self.src, self.dst = src, dst
        self.copied, self.through_user_space = 0, False
        super().__init__("ctr-copy")

    def _work(self) -> None:
        while not self.stopped and (n := self._copy_chunk()):
            with self._cond:
                self.copied += n
                self._cond.notify_all()
        if not self.stopped:
            os.fsync(self.dst)

    def _copy_chunk(self) -> int:
        if not self.through_user_space:
            try:
                return os.sendfile(self.dst, self.src, None, self.CHUNK)
            except OSError:
                if self.copied:
                    raise
                self.through_user_space = True  # a file system that cannot splice, as shutil falls back too
        data = view = memoryview(os.read(self.src, self.CHUNK))
        while view:
            view = view[os.write(self.dst, view):]
        return len(data)

    def wait(self, beyond: int) -> int:
        """The bytes copied, once there are more than `beyond` or the copy has ended (re-raising its error)."""
        with self._cond:
            self._cond.wait_for(lambda: self.copied > beyond or self.done)
        if self.error is not None:
            raise self.error
        return self.copied


class Ingest:
    """Blobs staged for one import or pull, beside the store, until commit() publishes them.

    A directory `.ingest-*` in the store root holds the verified blobs; its
    flock tells a live ingest from one whose process died (the store's lock
    removes the latter). Nothing reaches blobs/ or index.json before commit(),
    and close() removes the directory, so a failed import leaves nothing.
    """

    def __init__(self, store: ImageStore) -> None:
        import tempfile

        self.store = store
        with store._lock():  # created under the store lock, so the stale-ingest sweep never sees it unlocked
            self.dir = Path(tempfile.mkdtemp(dir=store.root, prefix=".ingest-"))
            self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def __enter__(self) -> "Ingest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        import shutil

        if self._lock_fd >= 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def temp_file(self, suffix: str = "") -> Path:
        """A path for scratch data (a spooled or decompressed archive), removed with the ingest."""
        import tempfile

        fd, path = tempfile.mkstemp(dir=self.dir, prefix=".scratch-", suffix=suffix)
        os.close(fd)
        return Path(path)

    # blobs

    def path(self, digest: str) -> Path | None:
        """Where the blob is: staged here, already in the store, or None."""
        for path in (self.dir / _hex(digest), self.store.blob_path(digest)):
            if path.is_file():
                return path
        return None

    def has(self, digest: str) -> bool:
        return self.path(digest) is not None

    def add_blob(self, src: IO[bytes], *, what: str, expected: str | None = None, size: int | None = None,
                 limit: int | None = None) -> tuple[str, int]:
        """Stream `src` into a staged blob; returns (digest, size).

        With `expected` (and `size`), a different digest (or length) is refused and
        nothing is kept. `limit` caps what is read (manifests and configs).
        """
        tmp, digest, n = _write_hashed(src, self.dir, what=what, size=size, limit=limit)
        try:
            if expected is not None and digest != expected:
                raise CtrError(f"{what} does not match its digest {expected}: the content has {digest}")
            os.replace(tmp, self.dir / _hex(digest))
            return digest, n
        except BaseException:
            _unlink_quiet(tmp)
            raise

    def add_file(self, path: Path, *, what: str) -> tuple[str, int]:
        """Copy the regular file `path` into a staged blob; returns (digest, size).

        Faster than add_blob for a big file: a _BackgroundCopy copies while this
        thread hashes what has landed in the staged copy, so the digest is that
        of the bytes kept even if `path` changes meanwhile.
        """
        import tempfile

        with open(path, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise CtrError(f"{what}: not a regular file")
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
            os.fchmod(fd, 0o644)
            copy = _BackgroundCopy(src.fileno(), fd)
            try:
                h, done = hashlib.sha256(), 0
                buf = memoryview(bytearray(_CHUNK))
                while (copied := copy.wait(done)) > done:
                    while done < copied:
                        n = os.preadv(fd, [buf[: copied - done]], done)
                        h.update(buf[:n])
                        done += n
                digest = "sha256:" + h.hexdigest()
                os.replace(tmp, self.dir / _hex(digest))
                return digest, done
            except BaseException:
                copy.stop()
                _unlink_quiet(tmp)
                raise
            finally:
                os.close(fd)

    def add_bytes(self, data: bytes, *, what: str, expected: str | None = None) -> str:
        import io

        return self.add_blob(io.BytesIO(data), what=what, expected=expected)[0]

    def read(self, digest: str, *, what: str, limit: int = CONFIG_LIMIT) -> bytes:
        """A small blob (manifest, config), staged or stored, checked against its digest."""
        path = self.path(digest)
        if path is None:
            raise NotFound(f"{what}: blob {digest} is missing")
        if path.stat().st_size > limit:
            raise CtrError(f"{what}: blob {digest} is larger than {limit} bytes: refused")
        data = path.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise CtrError(f"{what}: blob {digest} does not match its digest")
        return data

    def diff_id(self, digest: str, *, what: str) -> str:
        """Check the layer blob `digest` (staged or stored) by scan_layer's rules; returns its diff_id."""
        path = self.path(digest)
        if path is None:
            raise NotFound(f"{what}: layer blob {digest} is missing")
        with open(path, "rb") as f:
            kind = _sniff_compression(f.read(4))
            f.seek(0)
            if not kind and path.parent == self.dir:
                # Staged here, so hashed as it was written: its digest is its diff_id, and only
                # the headers need reading (seeking past the file data).
                with _corrupt_layer(what):
                    _check_members(f, "r:", what)
                return digest
            try:
                with decompressed(f, kind, f"layer {what}") as plain:  # type: ignore[union-attr]
                    return scan_layer(plain, layer=what)
            except CtrError:
                raise
            except (OSError, EOFError, ValueError) as exc:  # a gzip header that is not one, and the like
                raise CtrError(f"layer {what} is corrupt or truncated: {_describe(exc)}") from None

    # publishing

    def commit(self, images: Sequence[tuple[str, str, str]]) -> list[Image]:
        """Name each (name, manifest digest, manifest media type) and publish the blobs they use.

        Under the store lock: every blob each manifest references must be staged or
        stored (a blob an `ctr image rm` collected meanwhile makes this fail), staged
        ones are renamed into blobs/, then index.json is written once. Names that
        pointed elsewhere move, and blobs nothing uses any more are collected.
        """
        store = self.store
        with store._lock():
            entries, needed = [], set()
            for name, digest, media in images:
                what = f"image {name}"
                manifest = parse_json(self.read(digest, what=what, limit=MANIFEST_LIMIT), f"manifest of {what}")
                config_desc, layers = check_manifest(manifest, f"manifest of {what}")
                config = parse_json(self.read(config_desc["digest"], what=what), f"config of {what}")
                check_config(config, len(layers), f"config of {what}")
                for d in (digest, config_desc["digest"], *(layer["digest"] for layer in layers)):
                    if not self.has(d):
                        raise CtrError(f"{what}: blob {d} vanished from {store.blobs} while this import ran "
                                       "(an image was removed meanwhile): try again")
                    needed.add(d)
                size = self.path(digest).stat().st_size  # type: ignore[union-attr]
                entries.append(store._entry(normalize_ref(name), digest, size, str(config.get("architecture", "")),
                                            str(config.get("os", "")), media))
            moved: list[Path] = []
            try:
                for digest in sorted(needed):
                    staged, final = self.dir / _hex(digest), store.blob_path(digest)
                    if staged.is_file() and not final.exists():
                        os.rename(staged, final)
                        moved.append(final)
                if moved:
                    _fsync_dir(store.blobs)
                index = store._read_index()
                names = {e["annotations"][REF_ANNOTATION] for e in entries}
                index["manifests"] = [e for e in index["manifests"]
                                      if (e.get("annotations") or {}).get(REF_ANNOTATION) not in names] + entries
                index.setdefault("schemaVersion", 2)
                index.setdefault("mediaType", MEDIA_INDEX)
                store._write_index(index)
            except BaseException:
                for path in moved:
                    _unlink_quiet(path)
                raise
            store._collect_garbage(index["manifests"])
            return [store._lookup(e["annotations"][REF_ANNOTATION]) for e in entries]  # type: ignore[misc]


def export_oci(store: ImageStore, image: Image, out: BinaryIO, *, annotations: dict[str, str] | None = None,
               extra: dict | None = None) -> None:
    """Write `image` as an OCI image layout tar that `docker load` also reads.

    oci-layout, index.json (one entry: org.opencontainers.image.ref.name is the
    tag, as skopeo and umoci want it; io.containerd.image.name the full name),
    blobs/sha256/* byte for byte (so every digest survives a round trip), and a
    manifest.json pointing into blobs/, as Docker 25's `docker save` writes it,
    for engines that load only docker archives. `out` may be a pipe.
    """
    import tarfile

    def add(tar: tarfile.TarFile, name: str, size: int, src: IO[bytes] | None, type_: bytes = tarfile.REGTYPE) -> None:
        ti = tarfile.TarInfo(name)
        ti.type, ti.size, ti.mode, ti.mtime = type_, size, 0o644 if type_ == tarfile.REGTYPE else 0o755, BUILTIN_MTIME
        tar.addfile(ti, src)

    manifest = store.manifest(image)
    _, tag, digest = split_ref(image.name)
    names = {"io.containerd.image.name": full_ref(image.name)}
    if tag:
        names[REF_ANNOTATION] = tag
    entry = {"mediaType": image.media_type, "digest": image.digest, "size": len(manifest),
             "annotations": {**names, **(annotations or {})}}
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}
    blob_names = [f"blobs/sha256/{_hex(d)}" for d in image.layer_digests]
    docker_manifest = [{"Config": f"blobs/sha256/{_hex(image.config_digest)}",
                        "RepoTags": [image.name] if tag and not digest else [],
                        "Layers": blob_names, **(extra or {})}]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "blobs", 0, None, tarfile.DIRTYPE)
        add(tar, "blobs/sha256", 0, None, tarfile.DIRTYPE)
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
                reader = _HashingReader(f)
                add(tar, f"blobs/sha256/{_hex(blob)}", os.fstat(f.fileno()).st_size, reader)  # type: ignore[arg-type]
            if reader.digest != blob:
                raise CtrError(f"blob {path} of image {image.name} is corrupt: its content has digest {reader.digest}")
        add(tar, "oci-layout", *_sized(_canonical_json({"imageLayoutVersion": "1.0.0"})))
        add(tar, "index.json", *_sized(json.dumps(index).encode()))
        add(tar, "manifest.json", *_sized(json.dumps(docker_manifest).encode()))


def _sized(data: bytes) -> tuple[int, IO[bytes]]:
    import io

    return len(data), io.BytesIO(data)


__all__ = [
    "BUILTIN_REF",
    "Image",
    "ImageConfig",
    "ImageStore",
    "Ingest",
    "choose_platform",
    "export_oci",
    "extract_layer",
    "find_busybox",
    "full_ref",
    "host_platform",
    "normalize_ref",
    "scan_layer",
    "split_ref",
]
