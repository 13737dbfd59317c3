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

The package, one concept a module: engine (reaching the engine, its errors), images (ctr's
images under ctr.local/), create (the create request), foreground (the attached run), exec (`ctr exec`),
streams (ctr's stdio joined to an engine stream) and logs (the json-file log read back).
`import docker` happens only inside functions, so other backends never pay for it.
"""

from __future__ import annotations

import math
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctr.backends.base import Backend, BackendInfo, check_mount_sources, writes_cidfile
from ctr.backends.docker.create import create_body
from ctr.backends.docker.engine import (
    PROBE_TIMEOUT,
    Unreachable,
    connect,
    engine_call,
    engine_error,
    engine_exceptions,
    engine_time,
    error_status,
    explanation,
    start_error,
    versions,
)
from ctr.backends.docker.exec import Exec
from ctr.backends.docker.foreground import Foreground
from ctr.backends.docker.images import engine_tag, retag_archive
from ctr.backends.docker.logs import read_logs
from ctr.errors import BackendUnavailable, Conflict, CtrError, InvalidSpec, NotFound, Unsupported
from ctr.process import ExecSpec, Process, resolve_process
from ctr.spec import ContainerSpec
from ctr.state.logs import LogEntry
from ctr.state.paths import Paths
from ctr.state.records import Record, RecordStore

if TYPE_CHECKING:
    import docker

    from ctr.images.model import Image

NAME_ATTEMPTS = 8  # a generated name that clashes is replaced this often
ACTIVE = ("running", "paused")
REMOVAL_TIMEOUT = 30  # seconds the engine may take to remove a --rm container after its exit
_UNKNOWN_CAP = re.compile(r'unknown capability: "?([A-Z_]+)"?')


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
            client, version = connect(PROBE_TIMEOUT)
        except Unreachable as exc:
            return BackendInfo(cls.name, False, str(exc))
        client.close()
        return BackendInfo(cls.name, True, "", versions(version))

    @classmethod
    def ready(cls, paths: Paths | None = None) -> DockerBackend:
        """Probe and connect with one request to the engine (the SDK's own version
        negotiation would make it three: ~10 ms each on a fresh connection)."""
        backend = cls(paths)
        _ = backend.client  # connects, or says why it cannot
        return backend

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client, _ = connect(None)
            except Unreachable as exc:
                raise BackendUnavailable(f"backend docker is not usable: {exc}") from exc
        return self._client

    # --- images ---

    def ensure_image(self, ref: str) -> tuple[Image, str]:
        """ctr's image `ref`, present in the engine as ctr.local/<name>; returns (image, engine ref).

        Nothing is sent when the engine already holds an image whose Id is the config
        digest; at most the tag is (re)set.
        """
        from ctr.images.store import ImageStore

        image = ImageStore(self.paths).get(ref)
        repo, tag = engine_tag(image.name)
        engine_ref = f"{repo}:{tag}"
        api = self.client.api
        tagged = engine_call(f"cannot inspect image {engine_ref}", api.inspect_image, engine_ref, if_missing=None)
        if tagged and tagged["Id"] == image.config_digest:
            return image, engine_ref
        if not engine_call(
            f"cannot inspect image {image.config_digest}", api.inspect_image, image.config_digest, if_missing=None
        ):
            self._load(image, engine_ref)
        engine_call(f"cannot tag image {image.config_digest} as {engine_ref}", api.tag, image.config_digest, repo, tag)
        return image, engine_ref

    def _load(self, image: Image, engine_ref: str) -> None:
        from ctr.images.export import export_docker_archive
        from ctr.images.store import ImageStore

        doing = f"cannot load image {image.name} into the docker engine"
        with tempfile.TemporaryFile() as exported, tempfile.TemporaryFile() as retagged:
            export_docker_archive(ImageStore(self.paths), image, exported)
            retag_archive(exported, retagged, engine_ref)
            progress = engine_call(doing, self.client.api.load_image, retagged, quiet=True)
            try:
                for message in progress:
                    detail = message.get("error") or (message.get("errorDetail") or {}).get("message")
                    if detail:
                        raise CtrError(f"{doing}: {detail}")
            except engine_exceptions() as exc:
                raise engine_error(exc, doing) from exc
        loaded = engine_call(doing, self.client.api.inspect_image, image.config_digest, if_missing=None)
        if not loaded:
            raise CtrError(
                f"{doing}: the engine holds no image {image.config_digest} afterwards "
                "(the exported archive does not carry ctr's image config unchanged)"
            )

    # --- creating -----------------------------------------------------------------------

    def create_config(
        self,
        spec: ContainerSpec,
        process: Process,
        engine_ref: str,
        name: str,
        foreground: bool = True,
        security: dict | None = None,
    ) -> dict[str, Any]:
        """The body of POST /containers/create (create_body), labelled as ctr's container `name`."""
        # ctr.root tells this ctr's containers from another state root's of the same name.
        labels = {"ctr.name": name, "ctr.backend": self.name, "ctr.root": str(self.paths.data)}
        return create_body(self.client.api, spec, process, engine_ref, labels, foreground, security)

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
                    if error_status(exc) == 409 and not spec.name:
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
        if error_status(exc) == 409:
            return Conflict(f"container name {name} is already in use in the docker engine")
        unknown_cap = _UNKNOWN_CAP.search(explanation(exc))
        if unknown_cap:
            cap = "CAP_" + unknown_cap.group(1).removeprefix("CAP_")
            return Unsupported(self.name, f"capability {cap}", "this Docker Engine does not know it")
        if error_status(exc) == 400:
            return InvalidSpec(f"cannot create container {name}: {explanation(exc)}")
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
            if error_status(exc) in (404, 409):
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
        return Foreground(self.client.api, spec, lambda: self._create(spec, foreground=True), self._discard).run()

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
        return engine_call(
            f"cannot inspect container {record.name}", self.client.api.inspect_container, cid, if_missing=None
        )

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
        record.started = engine_time(state.get("StartedAt"))
        record.finished = engine_time(state.get("FinishedAt")) if record.status == "exited" else None
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
                raise NotFound(
                    f"cannot {doing} container {record.name}: its docker container "
                    f"{record.extra['docker_id'][:12]} is gone: remove it with ctr rm"
                )
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
        engine_call(
            f"cannot stop container {name}",
            self.client.api.stop,
            cid,
            timeout=-1 if grace is None else max(0, math.ceil(grace)),
            if_missing=None,
        )
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
        engine_call(f"cannot kill container {name}", self.client.api.kill, record.extra["docker_id"], signal=int(sig))

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
        result = engine_call(
            f"cannot wait for container {name}",
            self.client.api.wait,
            cid,
            timeout=None,
            condition=condition,
            if_missing=None,
        )
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
            state = (
                engine_call("cannot inspect container", self.client.api.inspect_container, cid, if_missing=None) or {}
            ).get("State") or {}
            if state.get("OOMKilled"):
                return
            time.sleep(0.05)

    # --- inside a running container -----------------------------------------------------

    def exec(self, name: str, spec: ExecSpec) -> int:
        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        record = self._running(name, "exec in")
        return Exec(self.client.api, record, spec).run()

    def logs(self, name: str, follow: bool = False, tail: int | None = None) -> Iterator[LogEntry]:
        """The engine's json-file log, stdout and stderr apart, each entry with its time.
        A foreground container keeps no log (as on native); one that is gone has none left."""
        record = self._record(name)
        info = self._inspect(record)
        if info is None or (info["HostConfig"].get("LogConfig") or {}).get("Type") == "none":
            return
        yield from read_logs(self.client.api, name, info, follow, tail)

    def pause(self, name: str) -> None:
        record = self._running(name, "pause")
        engine_call(f"cannot pause container {name}", self.client.api.pause, record.extra["docker_id"])

    def unpause(self, name: str) -> None:
        record = self.get(name)
        if record.status != "paused":
            raise Conflict(f"cannot unpause container {name}: it is not paused")
        engine_call(f"cannot unpause container {name}", self.client.api.unpause, record.extra["docker_id"])

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
        rootfs = {
            "type": graph.get("Name", ""),
            "upper": data.get("UpperDir", ""),
            "lower": [p for p in (data.get("LowerDir") or "").split(":") if p],
            "merged": data.get("MergedDir", ""),
        }
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
