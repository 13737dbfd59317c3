"""The docker backend: the same ContainerSpec, run by a Docker Engine through its API.

ctr's image is handed to the engine with `docker load` (tagged under ctr.local/, so
the user's own images are never touched); the process is decided by ctr's
resolve_process() and passed in full; every spec field maps onto one field of
the create request. Every engine container of ctr's has a ctr record of the same
name and id (so names are unique across backends and `ctr ps` lists them all);
its status is always read live from the engine.

The foreground run attaches and registers its wait before it starts, demultiplexes
stdout and stderr onto ctr's own fds, pumps stdin, and forwards signals. Detached
containers log to the engine's json-file driver, which `ctr logs` reads back.

`import docker` happens only inside functions, so other backends never pay for it.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import math
import os
import re
import select
import signal
import socket
import tarfile
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator

from ctr.errors import (
    BackendUnavailable,
    CommandNotExecutable,
    CommandNotFound,
    Conflict,
    CtrError,
    InvalidSpec,
    NotFound,
    Unsupported,
)
from ctr.native.threads import start_quiet_thread
from ctr.spec import ContainerSpec

from ctr.backends.base import Backend, BackendInfo, check_mount_sources, writes_cidfile
from ctr.process import ExecSpec, Process, merge_env, resolve_process
from ctr.state.logs import LogEntry
from ctr.state.paths import Paths
from ctr.state.records import Record, RecordStore

if TYPE_CHECKING:
    import docker

    from ctr.images.model import Image

DEFAULT_HOST = "unix:///var/run/docker.sock"
PROBE_TIMEOUT = 3  # seconds; `ctr backends` must not hang on a dead engine
ENGINE_NAMESPACE = "ctr.local"  # engine tags of ctr's images: ctr.local/busybox:latest
NAME_ATTEMPTS = 8  # a generated name that clashes is replaced this often
BUFSIZE = 64 * 1024
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
SDK_MISSING = "the docker SDK is not installed: pip install 'ctr[docker]'"


# --- engine address and errors ------------------------------------------------------------


def engine_address() -> str:
    """The engine URL the SDK uses: DOCKER_HOST, else the current docker context's."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    try:
        from docker.context import ContextAPI

        return ContextAPI.kwargs_from_context().get("base_url") or DEFAULT_HOST
    except Exception:  # a broken ~/.docker/config.json must not break the probe
        return DEFAULT_HOST


def unreachable_reason(host: str, exc: BaseException) -> str:
    """Why the engine at `host` cannot be used, and what to do about it."""
    cause: BaseException | None = exc
    while cause is not None:  # the SDK wraps requests' error, which wraps the OSError
        if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM):
            break
        cause = cause.__cause__ or cause.__context__
    if cause is not None or "Permission denied" in str(exc):
        return f"permission denied on {host}: run ctr as root or as a member of the docker group"
    return f"no Docker Engine answers at {host}: start dockerd (scripts/start-dockerd.sh)"


class _Unreachable(Exception):
    """No usable engine or SDK; the message says why and what to do."""


def _connect(timeout: float | None) -> tuple["docker.DockerClient", dict]:
    """A client of the engine that speaks its API version, and the engine's /version.

    One request: GET /version, which every engine answers unversioned; the client is then
    made for the API version it names, as the SDK's "auto" would, without asking again.
    `timeout` None keeps the SDK's default for ordinary calls (attach and wait set their own).
    Raises _Unreachable saying what is missing.
    """
    try:
        import docker
        from docker.constants import MINIMUM_DOCKER_API_VERSION
    except ImportError:
        raise _Unreachable(SDK_MISSING) from None
    host = engine_address()
    kwargs = {} if timeout is None else {"timeout": timeout}
    try:
        asking = docker.from_env(version=MINIMUM_DOCKER_API_VERSION, **kwargs)
        try:
            version = asking.version(api_version=False)
        finally:
            asking.close()
        return docker.from_env(version=str(version["ApiVersion"]), **kwargs), version
    except Exception as exc:  # DockerException, a malformed DOCKER_HOST (ValueError), no answer
        raise _Unreachable(unreachable_reason(host, exc)) from exc


def _versions(version: dict) -> dict[str, str]:
    import docker

    return {"engine": str(version.get("Version", "")), "api": str(version.get("ApiVersion", "")),
            "sdk": docker.__version__}


def engine_exceptions() -> tuple[type[BaseException], ...]:
    """What a call to the engine may raise: the SDK's errors and the transport's.
    Programming errors are left alone, so they are not dressed up as engine trouble."""
    import docker
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def _explanation(exc: BaseException) -> str:
    """The engine's own message on one line, without the SDK's '400 Client Error' prefix."""
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


def engine_error(exc: BaseException, doing: str) -> CtrError:
    """An engine failure as a CtrError: 404 -> NotFound, 409 -> Conflict, else CtrError."""
    import docker

    msg = f"{doing}: {_explanation(exc)}"
    if _status(exc) == 404:
        return NotFound(msg)
    if _status(exc) == 409:
        return Conflict(msg)
    if isinstance(exc, docker.errors.DockerException):
        return CtrError(msg)
    return CtrError(f"{doing}: lost the docker engine at {engine_address()}: {_explanation(exc)}")


# runc ends a chain of wrappers ("failed to create shim task: OCI runtime create failed: ...")
# with `exec: "nosuchcmd": executable file not found in $PATH: unknown`.
_EXEC_FAILURE = re.compile(r'exec: ("(?:[^"\\]|\\.)*"): (.*?)(?:: unknown)?$')
_UNKNOWN_CAP = re.compile(r'unknown capability: "?([A-Z_]+)"?')


def exec_failure(text: str) -> CtrError | None:
    """runc's failure to exec a command, with Docker's exit codes: 127 missing, 126 not executable."""
    m = _EXEC_FAILURE.search(text.strip())
    if not m:
        return None
    message, detail = f"exec {m.group(1)}: {m.group(2)}", m.group(2)
    if "executable file not found" in detail or "no such file or directory" in detail:
        return CommandNotFound(message)
    if "permission denied" in detail or "is a directory" in detail or "exec format error" in detail:
        return CommandNotExecutable(message)
    return CtrError(message)


def start_error(exc: BaseException, name: str, privileged: bool = False) -> CtrError:
    """A failed start, with Docker's exit codes: 127 for a missing command, 126 for one
    that cannot be executed, 125 for everything else (unknown user, bad mount, ...)."""
    if privileged and "unable to apply caps" in _explanation(exc):
        # Docker's --privileged asks runc for every capability the kernel knows; where the
        # engine's bounding set lacks one (a sandboxed host), runc's capset fails. Nothing
        # ctr can send changes that: the engine ignores --cap-drop for a privileged container.
        return Unsupported("docker", "--privileged", "the engine cannot grant every capability here "
                           "(runc: unable to apply caps: operation not permitted); the native and lxc "
                           "backends grant every capability ctr holds")
    error = exec_failure(_explanation(exc))
    if error is None:
        return engine_error(exc, f"cannot start container {name}")
    if type(error) is CtrError:
        return CtrError(f"cannot start container {name}: {error}")
    return error


# --- images -------------------------------------------------------------------------------


def engine_tag(image_name: str) -> tuple[str, str]:
    """(repository, tag) under ctr's namespace, valid for the engine whatever ctr accepted:
    'busybox:latest' -> ('ctr.local/busybox', 'latest');
    '127.0.0.1:5000/bb:1' -> ('ctr.local/127.0.0.1__5000/bb', '1');
    'bb@sha256:HEX' -> ('ctr.local/bb', 'sha256-HEX').

    Under ctr.local/ a registry host is only a path component, and Docker's path components
    allow neither ':' nor brackets: the port becomes '__' (a host name has no '_', so this
    cannot collide with another host), an IPv6 host 'ip6-' and its groups joined by '-'.
    A digest becomes the tag, so two digests of one name never share an engine tag.
    """
    from ctr.images.reference import split_ref

    name, tag, digest = split_ref(image_name)
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        name = f"{_engine_component(first)}/{rest}"
    if digest:
        tag = digest.replace(":", "-")
    repo = f"{ENGINE_NAMESPACE}/{name.lower()}"
    if len(repo) > ENGINE_NAME_MAX:  # Docker's limit on a repository name
        repo = f"{ENGINE_NAMESPACE}/long-{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    return repo, tag or "latest"


ENGINE_NAME_MAX = 255


def _engine_component(domain: str) -> str:
    """A registry host[:port] as one valid path component: '[::1]:5000' -> 'ip6---1__5000'."""
    host, port = domain, ""
    if domain.startswith("["):
        end = domain.index("]")
        host, port = "ip6-" + domain[1:end].replace(":", "-"), domain[end + 2 :]
    elif ":" in domain:
        host, _, port = domain.partition(":")
    return host.lower() + (f"__{port}" if port else "")


def retag_archive(src: BinaryIO, dst: BinaryIO, ref: str) -> None:
    """Copy a `docker save` archive with `ref` as its only tag.

    `docker load` applies the archive's RepoTags and its legacy `repositories` file,
    which would move the user's own `busybox:latest`; ctr's images live under ctr.local/.
    Layers are copied by tarfile in blocks, never parsed.
    """
    src.seek(0)
    with tarfile.open(fileobj=src, mode="r:") as tin, \
            tarfile.open(fileobj=dst, mode="w:", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            name = os.path.normpath(member.name)
            if name == "repositories":
                continue
            if name == "manifest.json":
                manifest = json.load(tin.extractfile(member))  # type: ignore[arg-type]
                if len(manifest) != 1:
                    raise CtrError(f"image archive for {ref}: manifest.json lists {len(manifest)} images, expected 1")
                manifest[0]["RepoTags"] = [ref]
                data = json.dumps(manifest).encode()
                member.size = len(data)
                tout.addfile(member, _BytesReader(data))
            elif member.isfile():
                tout.addfile(member, tin.extractfile(member))
            else:
                tout.addfile(member)
    dst.seek(0)


class _BytesReader:
    """The smallest file object tarfile.addfile needs."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk


# --- the backend --------------------------------------------------------------------------

_RAISE = object()
ACTIVE = ("running", "paused")
REMOVAL_TIMEOUT = 30  # seconds the engine may take to remove a --rm container after its exit
EXEC_FAILED = b"OCI runtime exec failed"  # how runc's failure to exec reaches an exec's stdout
LOG_TIE_WINDOW = 0.010  # seconds: stdout and stderr entries this close count as simultaneous (stdout_first)
TAIL_SLACK = 256  # entries read beyond a --tail, so that stdout_first orders the cut right


class DockerBackend(Backend):
    """ContainerSpec -> Docker Engine API, through the docker SDK (>= 7).

    Each engine container of ctr's has a ctr record of the same name (RecordStore), which
    keeps the spec and the engine's id; everything that changes (status, pid, exit code)
    is read live from the engine.
    """

    name = "docker"

    def __init__(self, paths: Paths | None = None) -> None:
        super().__init__(paths)
        self._client: docker.DockerClient | None = None
        self.records = RecordStore(self.paths)

    @classmethod
    def probe(cls) -> BackendInfo:
        try:
            client, version = _connect(PROBE_TIMEOUT)
        except _Unreachable as exc:
            return BackendInfo(cls.name, False, str(exc))
        client.close()
        return BackendInfo(cls.name, True, "", _versions(version))

    @classmethod
    def ready(cls, paths: Paths | None = None) -> "DockerBackend":
        """Probe and connect with one request to the engine (the SDK's own version
        negotiation would make it three: ~10 ms each on a fresh connection)."""
        backend = cls(paths)
        backend.client  # connects, or says why it cannot
        return backend

    @property
    def client(self) -> "docker.DockerClient":
        if self._client is None:
            try:
                self._client, _ = _connect(None)
            except _Unreachable as exc:
                raise BackendUnavailable(f"backend docker is not usable: {exc}") from exc
        return self._client

    def _call(self, doing: str, fn: Callable[..., Any], *args: Any, if_missing: Any = _RAISE, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) against the engine, its failures as CtrError; a 404 returns
        `if_missing` when one is given."""
        try:
            return fn(*args, **kwargs)
        except engine_exceptions() as exc:
            if if_missing is not _RAISE and _status(exc) == 404:
                return if_missing
            raise engine_error(exc, doing) from exc

    # --- images ---

    def ensure_image(self, ref: str) -> tuple["Image", str]:
        """ctr's image `ref`, present in the engine as ctr.local/<name>; returns (image, engine ref).

        Nothing is sent when the engine already holds an image whose Id is the config
        digest; at most the tag is (re)set.
        """
        from ctr.images.store import ImageStore

        image = ImageStore(self.paths).get(ref)
        repo, tag = engine_tag(image.name)
        engine_ref = f"{repo}:{tag}"
        api = self.client.api
        tagged = self._call(f"cannot inspect image {engine_ref}", api.inspect_image, engine_ref, if_missing=None)
        if tagged and tagged["Id"] == image.config_digest:
            return image, engine_ref
        if not self._call(f"cannot inspect image {image.config_digest}", api.inspect_image, image.config_digest, if_missing=None):
            self._load(image, engine_ref)
        self._call(f"cannot tag image {image.config_digest} as {engine_ref}", api.tag, image.config_digest, repo, tag)
        return image, engine_ref

    def _load(self, image: "Image", engine_ref: str) -> None:
        from ctr.images.store import ImageStore

        doing = f"cannot load image {image.name} into the docker engine"
        with tempfile.TemporaryFile() as exported, tempfile.TemporaryFile() as retagged:
            ImageStore(self.paths).export_docker_archive(image, exported)
            retag_archive(exported, retagged, engine_ref)
            progress = self._call(doing, self.client.api.load_image, retagged, quiet=True)
            try:
                for message in progress:
                    detail = message.get("error") or (message.get("errorDetail") or {}).get("message")
                    if detail:
                        raise CtrError(f"{doing}: {detail}")
            except engine_exceptions() as exc:
                raise engine_error(exc, doing) from exc
        loaded = self._call(doing, self.client.api.inspect_image, image.config_digest, if_missing=None)
        if not loaded:
            raise CtrError(
                f"{doing}: the engine holds no image {image.config_digest} afterwards "
                "(the exported archive does not carry ctr's image config unchanged)"
            )

    # --- creating -----------------------------------------------------------------------

    def create_config(self, spec: ContainerSpec, process: Process, engine_ref: str, name: str,
                      foreground: bool = True, security: dict | None = None) -> dict[str, Any]:
        """The body of POST /containers/create: ctr's process in full, every spec field mapped.

        A foreground container's output goes to ctr's fds through the attach stream; a
        detached one's is kept by the engine's json-file driver, which `ctr logs` reads.
        """
        import docker

        api = self.client.api
        if spec.privileged:
            # The engine's own --privileged (every capability, no seccomp, no masked paths,
            # /sys writable, every host device): it ignores --cap-add and --cap-drop then.
            cap_add, cap_drop = None, None
        elif "ALL" in spec.cap_add:
            # spec.capabilities() follows Docker's own rule here, and the engine's ALL means
            # every capability it knows; naming them one by one could name one it does not.
            cap_add, cap_drop = ["ALL"], [c.removeprefix("CAP_") for c in spec.cap_drop if c != "ALL"]
        else:
            # Drop everything, add back exactly spec.capabilities(): the same set on every backend.
            cap_add, cap_drop = [c.removeprefix("CAP_") for c in spec.capabilities()], ["ALL"]
        host_config = api.create_host_config(
            auto_remove=spec.auto_remove,  # so the engine removes it even when ctr is killed
            mounts=[docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts],
            read_only=spec.read_only,
            mem_limit=spec.memory,
            memswap_limit=spec.memory,  # equal to the memory limit: no swap
            nano_cpus=round(spec.cpus * 1e9) if spec.cpus is not None else None,
            pids_limit=spec.pids_limit,
            cap_add=cap_add,
            cap_drop=cap_drop,
            network_mode=spec.network,
            privileged=spec.privileged,
            security_opt=_security_opt(spec, security),
            extra_hosts=list(spec.extra_hosts) or None,  # "NAME:IP", as the docker CLI sends them
            group_add=list(spec.group_add) or None,
            # In the foreground the engine's json-file copy of the output would be a second,
            # unread one, and halves the throughput; detached, it is the only one.
            log_config=docker.types.LogConfig(type="none" if foreground else "json-file"),
        )
        size = _terminal_size() if spec.tty and foreground else None
        if size and docker.utils.version_gte(api.api_version, "1.42"):
            # The tty's size from its first instant. Older engines (20.10 is API 1.41) ignore
            # it and only learn the size by the resize right after start: a race.
            host_config["ConsoleSize"] = list(size)
        labels = dict(spec.labels)
        # ctr.root tells this ctr's containers from another state root's of the same name.
        labels.update({"ctr.name": name, "ctr.backend": self.name, "ctr.root": str(self.paths.data)})
        return api.create_container_config(
            engine_ref,
            # Entrypoint [] (not null) and the whole argv as Cmd: the engine then neither
            # prepends the image's Entrypoint nor falls back to its Cmd; ctr's merge is the only one.
            list(process.args),
            entrypoint=[],
            environment=list(process.env),
            working_dir=process.cwd,
            user=process.user or None,
            hostname=spec.hostname,
            tty=spec.tty,
            # Foreground (detach=False) this also sets StdinOnce: our EOF closes it. Detached,
            # stdin stays open with nothing attached, as with `docker run -d -i`.
            stdin_open=spec.stdin,
            detach=not foreground,
            labels=labels,
            host_config=host_config,
            stop_signal=spec.stop_signal,
            stop_timeout=spec.stop_timeout,
        )

    def create(self, spec: ContainerSpec) -> Record:
        return self._create(spec, foreground=False)

    @writes_cidfile
    def _create(self, spec: ContainerSpec, foreground: bool) -> Record:
        """The record and the engine container, both or neither. The record is reserved
        first, so a name is unique across backends; a generated name the engine already
        has (another state root's container) is replaced, a chosen one is a Conflict."""
        check_mount_sources(spec)  # the same message as on the other backends, before any engine call
        from ctr.security import check_security_opts

        security = check_security_opts(spec, self.name, applies_lsm=True)
        image, engine_ref = self.ensure_image(spec.image)
        process = resolve_process(spec, image.config)
        attempts = 1 if spec.name else NAME_ATTEMPTS
        for _ in range(attempts):
            record = self.records.reserve(spec.name, self.name, spec.to_dict())
            cid: str | None = None
            try:
                config = self.create_config(spec, process, engine_ref, record.name, foreground, security)
                try:
                    cid = self.client.api.create_container_from_config(config, name=record.name)["Id"]
                except engine_exceptions() as exc:
                    if _status(exc) == 409 and not spec.name:
                        self.records.remove(record.name)
                        continue
                    raise self._create_error(exc, record.name) from exc
                # One id for one container: ctr's is the engine's, as the hostname is its short form.
                record.id = cid
                record.image, record.image_digest = image.name, image.digest
                record.extra = {"docker_id": cid, "process": asdict(process)}
                self.records.save(record)
                return record
            except BaseException as exc:
                try:
                    if cid is not None:
                        self.remove_container(cid)
                    elif not isinstance(exc, CtrError):  # interrupted: the engine may have made it
                        self._remove_orphan(record.name)
                finally:
                    self.records.remove(record.name)
                raise
        raise Conflict(f"no free container name after {attempts} generated ones")

    def _create_error(self, exc: BaseException, name: str) -> CtrError:
        if _status(exc) == 409:
            return Conflict(f"container name {name} is already in use in the docker engine")
        unknown_cap = _UNKNOWN_CAP.search(_explanation(exc))
        if unknown_cap:
            cap = "CAP_" + unknown_cap.group(1).removeprefix("CAP_")
            return Unsupported(self.name, f"capability {cap}", "this Docker Engine does not know it")
        if _status(exc) == 400:
            return InvalidSpec(f"cannot create container {name}: {_explanation(exc)}")
        return engine_error(exc, f"cannot create container {name}")

    def _remove_orphan(self, name: str) -> None:
        """Best effort: the engine container `name` made by a create whose answer never
        arrived, if its labels say it is this root's."""
        try:
            info = self.client.api.inspect_container(name)
            labels = info["Config"].get("Labels") or {}
            if labels.get("ctr.name") == name and labels.get("ctr.root") == str(self.paths.data):
                self.client.api.remove_container(info["Id"], force=True, v=True)
        except Exception:
            pass

    def remove_container(self, container_id: str) -> None:
        """Force-remove, with its anonymous volumes; a container that is gone, or going, already is fine."""
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except engine_exceptions() as exc:
            if _status(exc) in (404, 409):
                return  # removed already, or AutoRemove is removing it right now
            raise engine_error(exc, f"cannot remove container {container_id[:12]}") from exc

    def _discard(self, record: Record, engine_removed: bool = False) -> None:
        """Engine container and record, both gone (`engine_removed`: the engine said so already)."""
        cid = record.extra.get("docker_id")
        with self.records.lock(record.name):
            if cid and not engine_removed:
                self.remove_container(cid)
            self.records.remove(record.name)

    # --- running ------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> int:
        return _Foreground(self, spec).run()

    def start(self, name: str) -> None:
        """Start a created or exited container in the background."""
        with self.records.lock(name):
            record, info = self._state(name)
            if record.status in ACTIVE:
                raise Conflict(f"cannot start container {name}: it is {record.status}")
            cid = self._engine_id(record, info, "start")
            try:
                self.client.api.start(cid)
            except engine_exceptions() as exc:
                raise start_error(exc, name, bool(record.spec.get("privileged"))) from exc

    # --- state --------------------------------------------------------------------------

    def _record(self, name: str) -> Record:
        """ctr's record of `name`, which must be a docker container."""
        record = self.records.load(name)
        if record.backend != self.name:  # the CLI never asks; a library caller might
            raise NotFound(f"no such container in the docker backend: {name} is a {record.backend} container")
        return record

    def _inspect(self, record: Record) -> dict | None:
        """The engine's inspect of the record's container; None when it has none (yet, or any more)."""
        cid = record.extra.get("docker_id")
        if not cid:
            return None
        return self._call(f"cannot inspect container {record.name}", self.client.api.inspect_container, cid,
                          if_missing=None)

    def _state(self, name: str) -> tuple[Record, dict | None]:
        """The record with its status read live from the engine, and the engine's inspect."""
        record = self._record(name)
        info = self._inspect(record)
        if info is None:
            if record.extra.get("docker_id"):
                # Gone behind ctr's back (docker rm, or the engine's AutoRemove after --rm).
                record.status, record.pid = "exited", None
            return record, info  # else still being created: the record as reserved
        state = info["State"]
        status = state.get("Status", "")
        if status == "paused" or state.get("Paused"):
            record.status = "paused"
        elif status in ("running", "restarting"):
            record.status = "running"
        elif status == "created":
            record.status = "created"
        else:  # exited, dead, removing
            record.status = "exited"
        active = record.status in ACTIVE
        record.pid = (state.get("Pid") or None) if active else None
        record.exit_code = state.get("ExitCode") if record.status == "exited" else None
        record.oom_killed = bool(state.get("OOMKilled"))
        record.started = _engine_time(state.get("StartedAt"))
        record.finished = _engine_time(state.get("FinishedAt")) if record.status == "exited" else None
        return record, info

    def get(self, name: str) -> Record:
        record, info = self._state(name)
        if info is None and record.extra.get("docker_id") and record.spec.get("auto_remove"):
            # A --rm container the engine removed when it exited: ctr's record goes too,
            # as the native monitor removes it.
            self._forget(record)
            raise NotFound(f"no such container: {name}")
        return record

    def _forget(self, record: Record) -> None:
        """Remove the record of an engine container that is gone, unless it was replaced meanwhile."""
        with self.records.lock(record.name):
            try:
                current = self.records.load(record.name)
            except NotFound:
                return
            if current.extra.get("docker_id") == record.extra.get("docker_id"):
                self.records.remove(record.name)

    def list(self) -> list[Record]:
        out = []
        for record in self.records.list():
            if record.backend != self.name:
                continue
            try:
                out.append(self.get(record.name))
            except NotFound:
                continue  # removed while we listed, or an auto-removed one just forgotten
        return out

    def _engine_id(self, record: Record, info: dict | None, doing: str) -> str:
        if info is None:
            if record.extra.get("docker_id"):
                raise NotFound(f"cannot {doing} container {record.name}: its docker container "
                               f"{record.extra['docker_id'][:12]} is gone: remove it with ctr rm")
            raise Conflict(f"cannot {doing} container {record.name}: it is still being created")
        return info["Id"]

    # --- stopping and removing ----------------------------------------------------------

    def stop(self, name: str, timeout: float | None = None) -> None:
        """The engine's stop: the container's StopSignal, then SIGKILL after `timeout` seconds
        (whole ones, as the API takes; None: its StopTimeout, else 10, as the engine's)."""
        from ctr.process import stop_plan

        record = self.get(name)
        if record.status not in ACTIVE:
            return
        cid = record.extra["docker_id"]
        _, grace = stop_plan(record.spec, timeout)
        # Always an explicit t: the SDK's HTTP timeout grows by it (the engine's -1 waits for ever).
        self._call(f"cannot stop container {name}", self.client.api.stop, cid,
                   timeout=-1 if grace is None else max(0, math.ceil(grace)), if_missing=None)
        if record.spec.get("auto_remove"):
            self._wait_removed(record)

    def _wait_removed(self, record: Record) -> None:
        """After the exit of a --rm container: until the engine removed it; then the record goes."""
        try:
            self.client.api.wait(record.extra["docker_id"], timeout=REMOVAL_TIMEOUT, condition="removed")
        except engine_exceptions():
            pass  # gone already (404), or slow: the next look at it forgets it
        if self._inspect(record) is None:
            self._forget(record)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        record = self.get(name)
        if record.status not in ACTIVE:
            raise Conflict(f"cannot kill container {name}: it is not running")
        # The engine thaws a paused container after signalling it, as the native backend does.
        self._call(f"cannot kill container {name}", self.client.api.kill, record.extra["docker_id"], signal=int(sig))

    def remove(self, name: str, force: bool = False) -> None:
        record = self.get(name)
        if record.status in ACTIVE and not force:
            raise Conflict(f"cannot remove container {name}: it is {record.status}: stop it first or use --force")
        self._discard(record)

    def wait(self, name: str) -> int:
        record = self.get(name)
        if record.status == "created":
            raise CtrError(f"container {name} has no exit code: it never ran")
        cid = record.extra.get("docker_id")
        if record.status == "exited" and record.exit_code is None:
            raise CtrError(f"container {name} has no exit code: its docker container {str(cid)[:12]} is gone")
        # With --rm, the exit and the engine's removal race: wait for the removal, which
        # reports the exit code as well, and then forget the record.
        condition = "removed" if record.spec.get("auto_remove") else "not-running"
        result = self._call(f"cannot wait for container {name}", self.client.api.wait, cid, timeout=None,
                            condition=condition, if_missing=None)
        if record.spec.get("auto_remove"):
            self._forget(record)
        if result is None:
            if record.spec.get("auto_remove"):
                raise NotFound(f"container {name} was removed when it exited (--rm)")
            raise CtrError(f"container {name} has no exit code: its docker container {cid[:12]} is gone")
        error = (result.get("Error") or {}).get("Message")
        if error:
            raise CtrError(f"cannot wait for container {name}: {error}")
        code = int(result["StatusCode"])
        if code == 137 and record.spec.get("memory") and not record.spec.get("auto_remove"):
            self._settle_oom_flag(cid)
        return code

    def _settle_oom_flag(self, cid: str) -> None:
        """The engine may handle a container's exit before the OOM event that caused it, and
        set State.OOMKilled only afterwards: give it a moment (bounded), so that an inspect
        right after `wait` tells how the container died."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            state = (self._call("cannot inspect container", self.client.api.inspect_container, cid,
                                if_missing=None) or {}).get("State") or {}
            if state.get("OOMKilled"):
                return
            time.sleep(0.05)

    # --- inside a running container -----------------------------------------------------

    def exec(self, name: str, spec: ExecSpec) -> int:
        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        return _Exec(self, self._running(name, "exec in"), spec).run()

    def logs(self, name: str, follow: bool = False, tail: int | None = None) -> Iterator[LogEntry]:
        """The engine's json-file log, stdout and stderr apart, each entry with its time.
        A foreground container keeps no log (as on native); one that is gone has none left."""
        record = self._record(name)
        info = self._inspect(record)
        if info is None or (info["HostConfig"].get("LogConfig") or {}).get("Type") == "none":
            return
        tty = bool(info["Config"].get("Tty"))
        if tail is not None and tail <= 0 and not follow:
            return
        # Without follow, a few entries more than asked for, so that the order fixed below
        # (stdout_first) is right at the cut too; the surplus is dropped here.
        wanted = "all" if tail is None else max(tail, 0) + (0 if follow or tty else TAIL_SLACK)
        params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow), "tail": wanted}
        api = self.client.api
        doing = f"cannot read the logs of container {name}"

        def request():
            url = api._url("/containers/{0}/logs", info["Id"])
            response = api._get(url, params=params, stream=True, timeout=None if follow else api.timeout)
            api._raise_for_status(response)
            return response

        response = self._call(doing, request)
        try:
            chunks = response.iter_content(chunk_size=None)  # each chunk as the engine sends it
            if tty:  # one stream: nothing to order
                entries = _log_lines(chunks)
            else:
                entries = stdout_first(_with_ticks(_log_frames(chunks)) if follow else _log_frames(chunks))
            entries = self._engine_iter(doing, entries)
            if tail is not None and not follow:
                entries = iter(collections.deque(entries, maxlen=tail))
            yield from entries
        finally:
            response.close()

    def _engine_iter(self, doing: str, it: Iterator[Any]) -> Iterator[Any]:
        """Iterate over an engine stream with its failures as CtrError."""
        try:
            yield from it
        except engine_exceptions() as exc:
            raise engine_error(exc, doing) from exc

    def pause(self, name: str) -> None:
        record = self._running(name, "pause")
        self._call(f"cannot pause container {name}", self.client.api.pause, record.extra["docker_id"])

    def unpause(self, name: str) -> None:
        record = self.get(name)
        if record.status != "paused":
            raise Conflict(f"cannot unpause container {name}: it is not paused")
        self._call(f"cannot unpause container {name}", self.client.api.unpause, record.extra["docker_id"])

    def stats(self, name: str) -> dict:
        """From the engine's cgroup of the container, read on the host as for native."""
        record = self.get(name)
        if record.status not in ACTIVE or not record.pid:
            raise Conflict(f"cannot read stats of container {name}: it is not running")
        try:
            return host_cgroup(record.pid).stats()
        except (FileNotFoundError, ProcessLookupError):
            raise Conflict(f"cannot read stats of container {name}: it is not running") from None

    def inspect(self, name: str) -> dict:
        record, info = self._state(name)
        if info is None:
            return {"raw": {}, "rootfs": {}, "cgroup": ""}
        graph = info.get("GraphDriver") or {}
        data = graph.get("Data") or {}
        rootfs = {"type": graph.get("Name", ""), "upper": data.get("UpperDir", ""),
                  "lower": [p for p in (data.get("LowerDir") or "").split(":") if p],
                  "merged": data.get("MergedDir", "")}
        cgroup = ""
        if record.status in ACTIVE and record.pid:
            try:
                cgroup = host_cgroup(record.pid).name
            except (FileNotFoundError, ProcessLookupError, CtrError):
                pass  # exited meanwhile
        return {"raw": info, "rootfs": rootfs, "cgroup": cgroup}

    def root_path(self, name: str) -> Path:
        """Where the running container's root can be reached from the host."""
        record = self._running(name, "reach the files of")
        return Path(f"/proc/{record.pid}/root")


def _engine_time(text: str | None) -> float | None:
    """The engine's RFC 3339 time with nanoseconds as a Unix time; its zero time (never) -> None."""
    if not text or text.startswith("0001-01-01"):
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        return None
    whole = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return whole.timestamp() + (int(m.group(2)) / 10 ** len(m.group(2)) if m.group(2) else 0.0)


def host_cgroup(pid: int):
    """The cgroup the engine put `pid` in, as a native Cgroup object (for its stats), from
    /proc/PID/cgroup: v1 .../<controller>/docker/<id>, v2 system.slice/docker-<id>.scope or docker/<id>."""
    from ctr.native.cgroups.mounted import is_cgroup2_mount, v1_hierarchies
    from ctr.native.cgroups.v1 import V1Cgroup
    from ctr.native.cgroups.v2 import V2Cgroup

    root = Path("/sys/fs/cgroup")
    by_controllers: dict[frozenset[str], str] = {}
    unified = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers:
            by_controllers[frozenset(controllers.split(","))] = path.lstrip("/")
        else:
            unified = path.lstrip("/")
    mountinfo = Path("/proc/self/mountinfo").read_text()
    paths: dict[str, Path] = {}
    name = ""
    for h in v1_hierarchies(mountinfo, root):
        rel = by_controllers.get(frozenset(h.controllers))
        if rel is not None:
            paths.update({c: h.mountpoint / rel for c in h.controllers})
            if "memory" in h.controllers or not name:
                name = rel
    if any(c in paths for c in ("memory", "pids", "cpuacct")):
        return V1Cgroup(name, paths)
    if unified is None:
        raise CtrError(f"cannot find the cgroup of process {pid}: /proc/{pid}/cgroup has no entry ctr knows")
    top = root if is_cgroup2_mount(root, mountinfo) else root / "unified"
    return V2Cgroup(unified, {"unified": top / unified})


def _log_frames(chunks: Iterator[bytes]) -> Iterator[LogEntry]:
    """The logs of a container without tty: Docker's framing (8-byte header: stream, 0, 0, 0,
    big-endian length), one frame per log message, each starting with its time and a space."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 8:
            length = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + length:
                break
            stream = "stderr" if buf[0] == 2 else "stdout"
            yield _log_entry(stream, bytes(buf[8:8 + length]))
            del buf[:8 + length]


def _log_lines(chunks: Iterator[bytes]) -> Iterator[LogEntry]:
    """The logs of a tty container: one stream, no framing; each message is a line."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield _log_entry("stdout", line + b"\n")
    if buf:
        yield _log_entry("stdout", buf)


def _log_entry(stream: str, message: bytes) -> LogEntry:
    stamp, _, data = message.partition(b" ")
    return LogEntry(stream, stamp.decode("ascii", "replace"), data)


_TICK = object()  # "nothing new for a while", from _with_ticks


def stdout_first(entries: Iterator[Any], window: float = LOG_TIE_WINDOW) -> Iterator[LogEntry]:
    """The log in the order the container wrote it, as near as the engine lets us know.

    Docker stamps stdout and stderr in separate goroutines (behind containerd's shim, which
    copies them in two more), so of `echo out; echo err >&2` the err line is stamped, and
    stored, first about a third of the time: by a few hundred µs here, by tens of ms under
    load. Each stream's own order is exact. So entries of the two streams stamped within
    `window` of each other count as simultaneous, and stdout goes first, which is what the
    native monitor does with two pipes that are ready at once. The cost: stderr written
    less than `window` before stdout is shown after it.

    stderr entries are held until a later entry, a _TICK (nothing came for `window`) or the
    end shows that no stdout entry stamped before them (within the window) can still come.
    """
    held: collections.deque[LogEntry] = collections.deque()
    for entry in entries:
        if entry is _TICK:
            yield from held
            held.clear()
        elif entry.stream == "stderr":
            held.append(entry)
        else:
            stamp = _engine_time(entry.time) or 0.0
            while held and (_engine_time(held[0].time) or 0.0) < stamp - window:
                yield held.popleft()
            yield entry  # before the stderr entries stamped at most `window` earlier
    yield from held


def _with_ticks(entries: Iterator[LogEntry], quiet: float = LOG_TIE_WINDOW) -> Iterator[Any]:
    """`entries` (read in a thread), with a _TICK whenever none came for `quiet` seconds:
    a followed log must not hold a stderr line back until the next line comes."""
    import queue

    q: queue.Queue = queue.Queue()
    end = object()

    def read() -> None:
        try:
            for entry in entries:
                q.put(entry)
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put(exc)
        q.put(end)

    start_quiet_thread(threading.Thread(target=read, name="ctr-logs", daemon=True))
    while True:
        try:
            item = q.get(timeout=quiet)
        except queue.Empty:
            yield _TICK
            item = q.get()
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


# --- the foreground run -------------------------------------------------------------------


class _Interrupted(BaseException):
    """A signal arrived before the container started: clean up, exit 128+N.

    A BaseException like KeyboardInterrupt, so no `except Exception` mistakes it for an engine error.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _security_opt(spec: ContainerSpec, security: dict | None) -> list[str]:
    """HostConfig.SecurityOpt as the docker CLI sends it: no-new-privileges (ctr's default on
    every backend), a custom seccomp profile as its JSON text (the engine takes no path),
    unconfined, or nothing for the engine's own default profile; apparmor= and label= as given."""
    import json

    from ctr.security import kept_seccomp

    opts = ["no-new-privileges"] if spec.no_new_privs() else []
    security = kept_seccomp(spec, security)
    if security["profile"] == "unconfined":
        opts.append("seccomp=unconfined")
    elif security["profile"] != "default":
        opts.append("seccomp=" + json.dumps(json.loads(security["text"]), separators=(",", ":")))
    opts += list(spec.lsm_options())
    return opts


class _Foreground:
    """One `ctr run` without -d: the container's stdio is ctr's, its exit code is ctr's.

    Its record exists from create on, so `ctr ps` and `ctr inspect` see it while it runs;
    --rm, or a start that failed or never happened, removes record and engine container."""

    def __init__(self, backend: DockerBackend, spec: ContainerSpec) -> None:
        self.backend = backend
        self.spec = spec
        self.api = backend.client.api
        self.record: Record | None = None
        self.container_id: str | None = None
        self.name = spec.name or ""
        self.started = False
        self._old_handlers: dict[int, Any] = {}
        self._attach_wrapper: Any = None
        self.engine_removed = False  # the wait for condition "removed" (--rm) has answered

    def run(self) -> int:
        # Signal handlers can only be set from the main thread; a library caller elsewhere
        # gets no forwarding, the rest works the same.
        handle_signals = threading.current_thread() is threading.main_thread()
        if handle_signals:
            self._install_signal_handlers()
        try:
            return self._run()
        except _Interrupted as exc:
            return 128 + exc.signum
        finally:
            try:
                # --rm, or a start that failed or never happened: leave nothing behind.
                if self.record is not None and (self.spec.auto_remove or not self.started):
                    self.backend._discard(self.record, engine_removed=self.engine_removed)
            finally:
                if handle_signals:
                    self._restore_signal_handlers()

    def _run(self) -> int:
        self.record = self.backend._create(self.spec, foreground=True)
        self.container_id, self.name = self.record.extra["docker_id"], self.record.name
        # Attach and register the wait before starting: no output and no exit can be missed.
        sock = self.backend._call(f"cannot attach to container {self.name}", self._attach)
        waiter = None
        try:
            waiter = self.backend._call(f"cannot wait for container {self.name}", self._wait_request)
            try:
                self.api.start(self.container_id)
            except engine_exceptions() as exc:
                raise start_error(exc, self.name, self.spec.privileged) from exc
            self.started = True
            return self.backend._call(f"lost container {self.name}", self._stream_until_exit, sock, waiter)
        finally:
            sock.close()
            if waiter is not None:
                waiter.close()

    # --- engine calls ---

    def _attach(self) -> socket.socket:
        params = {"stdin": int(self.spec.stdin), "stdout": 1, "stderr": 1, "stream": 1}
        wrapper = self.api.attach_socket(self.container_id, params=params)
        self._attach_wrapper = wrapper  # the SocketIO must live as long as its socket
        return _raw_socket(wrapper)

    def _wait_request(self):
        """POST /wait with stream=True returns as soon as the engine sent its headers, i.e.
        once the waiter is registered; the body, the exit status, comes when the container
        is done (or, with --rm, removed)."""
        condition = "removed" if self.spec.auto_remove else "next-exit"
        url = self.api._url("/containers/{0}/wait", self.container_id)
        response = self.api._post(url, params={"condition": condition}, stream=True, timeout=None)
        self.api._raise_for_status(response)
        return response

    def _forward(self, signum: int) -> None:
        _in_thread("kill", lambda: self.api.kill(self.container_id, signal=int(signum)))

    def _resize(self) -> None:
        size = _terminal_size()
        if size is not None and self.started:
            rows, cols = size
            _in_thread("resize", lambda: self.api.resize(self.container_id, height=rows, width=cols))

    # --- signals ---

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame) -> None:
            if self.started:
                self._forward(signum)
            else:  # not running yet: give up, and let run() remove what was created
                raise _Interrupted(signum)

        for signum in FORWARDED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, on_signal)
        if self.spec.tty:
            self._old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda s, f: self._resize())

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()

    # --- streams ---

    def _stream_until_exit(self, sock: socket.socket, waiter) -> int:
        if self.spec.tty:
            self._resize()
        status = _Stdio(self.spec.tty, self.spec.stdin).relay(sock, _Output(), until=waiter.json)
        error = (status.get("Error") or {}).get("Message")
        if error:
            raise CtrError(f"cannot wait for container {self.name}: {error}")
        self.engine_removed = self.spec.auto_remove
        return int(status["StatusCode"])


# --- exec ---------------------------------------------------------------------------------


class _Exec:
    """One `ctr exec`: the engine's exec, with the process decided as on native (the
    container's env with the exec's on top, its workdir and user unless given), ctr's
    stdio joined to it, and its exit code returned."""

    def __init__(self, backend: DockerBackend, record: Record, spec: ExecSpec) -> None:
        self.backend = backend
        self.api = backend.client.api
        self.record = record
        self.spec = spec
        self.exec_id = ""
        self._old_handlers: dict[int, Any] = {}
        self._wrapper: Any = None

    def run(self) -> int:
        record, spec = self.record, self.spec
        process = record.extra.get("process") or {}
        doing = f"cannot exec in container {record.name}"
        created = self.backend._call(
            doing, self.api.exec_create, record.extra["docker_id"], list(spec.args),
            stdout=True, stderr=True, stdin=spec.stdin, tty=spec.tty,
            environment=list(merge_env(process.get("env") or (), spec.env)),
            workdir=spec.workdir or process.get("cwd") or None,
            user=spec.user if spec.user is not None else process.get("user") or "",
        )
        self.exec_id = created["Id"]
        handle_signals = threading.current_thread() is threading.main_thread()
        if handle_signals:
            self._install_signal_handlers()
        try:
            sock = self.backend._call(doing, self._start)
            out = _HoldingOutput()
            try:
                if spec.tty:
                    self._resize()
                self.backend._call(f"lost exec in container {record.name}",
                                   _Stdio(spec.tty, spec.stdin).relay, sock, out)
            finally:
                sock.close()
            info = self.backend._call(doing, self._finished)
        finally:
            if handle_signals:
                for signum, handler in self._old_handlers.items():
                    signal.signal(signum, handler)
        if out.held and not info.get("Pid"):  # the runtime could not exec: its message, not output
            error = exec_failure(out.held.decode("utf-8", "replace"))
            if error is not None:
                raise error
        out.release()
        return int(info.get("ExitCode") or 0)

    def _start(self) -> socket.socket:
        self._wrapper = self.api.exec_start(self.exec_id, tty=self.spec.tty, socket=True)
        return _raw_socket(self._wrapper)

    def _finished(self) -> dict:
        """The exec's inspect once it has ended: the output may close a moment before."""
        delay = 0.01
        while True:
            info = self.api.exec_inspect(self.exec_id)
            if not info.get("Running"):
                return info
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _resize(self) -> None:
        size = _terminal_size()
        if size is None:
            return
        rows, cols = size

        def resize() -> None:
            # The engine starts the process after the stream is set up: retry briefly, as docker's CLI does.
            for attempt in range(10):
                try:
                    self.api.exec_resize(self.exec_id, height=rows, width=cols)
                    return
                except Exception:
                    time.sleep(0.01 * (attempt + 1))

        _in_thread("resize", resize)

    def _install_signal_handlers(self) -> None:
        for signum in FORWARDED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, lambda s, f: _in_thread("kill", lambda: self._signal(s)))
        if self.spec.tty:
            self._old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda s, f: self._resize())

    def _signal(self, signum: int) -> None:
        """The engine cannot signal an exec; its process is signalled on the host, once it
        exists, and only when /proc shows it in this container (not a pid of another pid
        namespace, were the engine elsewhere)."""
        cid = self.record.extra["docker_id"]
        for _ in range(100):
            info = self.api.exec_inspect(self.exec_id)
            pid = info.get("Pid")
            if pid:
                try:
                    if cid in Path(f"/proc/{pid}/cgroup").read_text():
                        os.kill(pid, signum)
                except (FileNotFoundError, ProcessLookupError):
                    pass
                return
            if not info.get("Running") and info.get("ExitCode") is not None:
                return
            time.sleep(0.02)


# --- ctr's stdio joined to an engine stream -----------------------------------------------


def _in_thread(what: str, fn: Callable[[], Any]) -> None:
    """Fire and forget: signal handlers must not block on HTTP, and the container may
    have exited meanwhile, which is no error."""

    def call() -> None:
        try:
            fn()
        except Exception:
            pass

    start_quiet_thread(threading.Thread(target=call, name=f"ctr-{what}", daemon=True))


def _raw_socket(wrapper: Any) -> socket.socket:
    sock = getattr(wrapper, "_sock", wrapper)  # unix: a SocketIO around the socket
    sock.settimeout(None)  # the SDK's 60 s timeout must not cut off a quiet container
    return sock


class _Stdio:
    """ctr's stdin, stdout and stderr joined to an attach or exec stream: output demultiplexed
    onto fds 1 and 2 (one raw stream with a tty), ctr's stdin pumped in, and the terminal
    made raw for -it. The foreground run and exec share it."""

    def __init__(self, tty: bool, stdin: bool) -> None:
        self.tty = tty
        self.stdin = stdin
        self._old_term: list | None = None
        self._wake_r = self._wake_w = -1

    def relay(self, sock: socket.socket, out: "_Output", until: Callable[[], Any] | None = None) -> Any:
        """Until the engine ends the output; then `until()`, whose result is returned, is
        called before ctr's terminal and stdin are let go."""
        pump = None
        if self.stdin:
            self._wake_r, self._wake_w = os.pipe()
            pump = threading.Thread(target=self._pump_stdin, args=(sock,), name="ctr-stdin", daemon=True)
        try:
            if self.tty and self.stdin and os.isatty(0):
                self._make_raw(0)
            if pump:
                start_quiet_thread(pump)
            if self.tty:
                _copy_raw(sock, out)
            else:
                _copy_multiplexed(sock, out)
            return until() if until else None
        finally:
            self._restore_terminal()
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")  # wakes a pump waiting for ctr's stdin,
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # and this one blocked in sendall
                except OSError:
                    pass
                if pump and pump.is_alive():
                    pump.join(timeout=5)
                os.close(self._wake_w)
                os.close(self._wake_r)
                self._wake_r = self._wake_w = -1

    def _pump_stdin(self, sock: socket.socket) -> None:
        """ctr's fd 0 -> the container's stdin. EOF half-closes the socket, which the engine
        passes on (StdinOnce), so `echo hi | ctr run -i busybox cat` ends.

        With a tty, EOF becomes ^D instead, as on the native backend: the engine answers a
        half-close in tty mode by ending the output stream while the container runs on.
        """
        poller = select.poll()
        poller.register(0, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                return
            try:
                data = os.read(0, BUFSIZE)
            except OSError:  # fd 0 closed or unreadable: as good as EOF
                data = b""
            try:
                if data:
                    sock.sendall(data)
                    continue
                if self.tty:
                    sock.sendall(b"\x04")
                else:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the container is gone
            return

    def _make_raw(self, fd: int) -> None:
        import termios
        import tty

        self._old_term = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)

    def _restore_terminal(self) -> None:
        if self._old_term is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._old_term)
            self._old_term = None


def _terminal_size() -> tuple[int, int] | None:
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


class _Output:
    """Writes to ctr's fds 1 and 2. A reader that went away (`ctr run ... | head`) is
    not fatal: its stream is drained and dropped, the container runs to its end."""

    def __init__(self) -> None:
        self.dead: set[int] = set()

    def write(self, fd: int, data: memoryview | bytes) -> None:
        if fd in self.dead:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            self.dead.add(fd)


class _HoldingOutput(_Output):
    """An exec's output, except that a first line that reads like runc's failure to exec is
    held back until the exec has ended: the engine sends that failure as the process's
    stdout, and only the exec's inspect (no pid) tells it from real output."""

    def __init__(self) -> None:
        super().__init__()
        self.held: bytes | None = b""

    def write(self, fd: int, data: memoryview | bytes) -> None:
        if self.held is None:
            return super().write(fd, data)
        if fd != 1:
            self.release()
            return super().write(fd, data)
        complete = self.held.endswith(b"\n")
        self.held += bytes(data)
        n = min(len(self.held), len(EXEC_FAILED))
        if complete or self.held[:n] != EXEC_FAILED[:n]:
            self.release()

    def release(self) -> None:
        held, self.held = self.held, None
        if held:
            super().write(1, held)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(BUFSIZE)
    except ConnectionResetError:
        return b""


def _copy_raw(sock: socket.socket, out: _Output) -> None:
    """A tty container: one stream, no framing."""
    while data := _recv(sock):
        out.write(1, data)


def _copy_multiplexed(sock: socket.socket, out: _Output) -> None:
    """Docker's attach framing: an 8-byte header (stream, 0, 0, 0, big-endian length), then
    the payload. Payload is written as it arrives, in slices of what recv returned."""
    header = bytearray()
    remaining = 0
    fd = 1
    while data := _recv(sock):
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if remaining == 0:
                take = min(8 - len(header), end - pos)
                header += view[pos:pos + take]
                pos += take
                if len(header) < 8:
                    break
                fd = 2 if header[0] in (2, 3) else 1  # 2 stderr, 3 the engine's own errors
                remaining = int.from_bytes(header[4:8], "big")
                header.clear()
                continue
            chunk = view[pos:pos + remaining]
            out.write(fd, chunk)
            pos += len(chunk)
            remaining -= len(chunk)
