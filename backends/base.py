"""The Backend interface: three implementations (native, lxc, docker) of one contract.

A backend takes a ContainerSpec and makes the container with its own machinery;
what the process inside sees (command, env, cwd, user) is decided once, here,
by resolve_process(), so that the image's config means the same on all three.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ctr.errors import BackendUnavailable, Conflict, InvalidSpec, Unsupported, os_reason
from ctr.process import ExecSpec
from ctr.spec import ContainerSpec
from ctr.state.paths import Paths

if TYPE_CHECKING:
    from ctr.state.logs import LogEntry
    from ctr.state.records import Record


@dataclass(frozen=True)
class BackendInfo:
    """What `ctr backends` prints: whether it is usable here, and the versions behind it."""

    name: str
    usable: bool
    reason: str = ""
    versions: dict[str, str] = field(default_factory=dict)


def writes_cidfile(create):
    """Decorates a backend's create(spec, ...): --cidfile as the docker CLI's. A FILE that
    exists already is refused before anything is made; FILE is claimed (O_EXCL, so two
    ctr calls cannot both take it), gets the id once the container exists, and is removed
    again if the create fails."""

    @functools.wraps(create)
    def wrapper(self, spec: ContainerSpec, *args, **kwargs):
        if spec.cidfile is None:
            return create(self, spec, *args, **kwargs)
        try:
            fd = os.open(spec.cidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise Conflict(
                f"container ID file found, make sure the other container isn't running or delete {spec.cidfile}"
            ) from None
        except OSError as exc:
            raise InvalidSpec(f"invalid --cidfile {spec.cidfile}: {os_reason(exc)}") from None
        try:
            record = create(self, spec, *args, **kwargs)
            os.write(fd, record.id.encode())  # no newline, as Docker's
        except BaseException:
            os.unlink(spec.cidfile)
            raise
        finally:
            os.close(fd)
        return record

    return wrapper


def check_host_gateway(backend: Backend, spec: ContainerSpec) -> None:
    """--add-host NAME:host-gateway names the engine's bridge gateway; native and lxc have none."""
    from ctr.spec import HOST_GATEWAY

    flag = "--add-host NAME:host-gateway"
    if any(h.partition(":")[2] == HOST_GATEWAY for h in spec.extra_hosts) and flag in backend.UNSUPPORTED_FLAGS:
        raise Unsupported(backend.name, flag, backend.UNSUPPORTED_FLAGS[flag])


def check_mount_sources(spec: ContainerSpec) -> None:
    """Docker would create a missing source; ctr refuses it, since a typo should not make a directory."""
    for m in spec.mounts:
        if not os.path.exists(m.source):
            raise InvalidSpec(f"invalid volume {m}: source {m.source} does not exist")


# The README's feature table, row by row: (row label, what decides it).
# "method:X" means the backend overrides Backend.X; "flag:X" means X is not among
# the backend's UNSUPPORTED_FLAGS. tests/unit/test_readme.py keeps the README true to this.
FEATURE_ROWS: tuple[tuple[str, str], ...] = (
    ("`run` in the foreground", "method:run"),
    ("`run -d`, `create`, `start`", "method:start"),
    ("`stop`, `kill`, `wait`, `restart`", "method:stop"),
    ("`rm`, `ps`", "method:remove"),
    ("`exec`", "method:exec"),
    ("`logs`", "method:logs"),
    ("`pause`, `unpause`", "method:pause"),
    ("`stats`", "method:stats"),
    ("`inspect`", "method:inspect"),
    ("`cp`", "method:root_path"),
    ("`-i`, `-t`", "flag:--tty"),
    ("`-e`, `-w`, `-u`, `--hostname`", "flag:--user"),
    ("`-v SRC:DST[:ro]`, `--read-only`", "flag:--volume"),
    ("`--memory`, `--cpus`, `--pids-limit`", "flag:--memory"),
    ("`--cap-add`, `--cap-drop`", "flag:--cap-add"),
    ("`--network none`", "flag:--network none"),
    ("`--network host`", "flag:--network host"),
    ("`--network bridge`", "flag:--network bridge"),
    ("`--security-opt seccomp=`, `no-new-privileges`", "flag:--security-opt seccomp"),
    ("`--privileged`", "flag:--privileged"),
    ("`--add-host`, `--group-add`, `--env-file`", "flag:--add-host"),
    ("`--add-host NAME:host-gateway`", "flag:--add-host NAME:host-gateway"),
    ("`--stop-signal`, `--stop-timeout`, `--cidfile`", "flag:--stop-signal"),
)


class Backend(ABC):
    """One container implementation. Methods raise CtrError subclasses, never return False."""

    name: ClassVar[str]
    # Flags this backend refuses with Unsupported, and why (shown in the README's table).
    UNSUPPORTED_FLAGS: ClassVar[dict[str, str]] = {}

    @classmethod
    def features(cls) -> dict[str, bool]:
        """Row label -> supported, for the README's feature table."""
        out = {}
        for label, rule in FEATURE_ROWS:
            kind, _, what = rule.partition(":")
            if kind == "method":
                out[label] = getattr(cls, what) is not getattr(Backend, what)
            else:
                out[label] = what not in cls.UNSUPPORTED_FLAGS
        return out

    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths.default()

    @classmethod
    @abstractmethod
    def probe(cls) -> BackendInfo:
        """Whether this backend can run here, and why not; never raises."""

    @classmethod
    def ready(cls, paths: Paths | None = None) -> Backend:
        """A backend ready to use, or BackendUnavailable saying what is missing. A backend
        whose probe is costly (a round trip to a daemon) overrides it to probe and connect
        in one go."""
        info = cls.probe()
        if not info.usable:
            raise BackendUnavailable(f"backend {cls.name} is not usable: {info.reason}")
        return cls(paths)

    @abstractmethod
    def run(self, spec: ContainerSpec) -> int:
        """Run a container in the foreground on ctr's own stdin/stdout/stderr.

        Returns the exit status with Docker's conventions (128+N for signal N).
        Errors before the command starts raise CtrError (exit_code 125/126/127).
        """

    # The lifecycle. A backend overrides what it can do; the rest says so (Unsupported),
    # which is what the CLI shows, with exit code 125.

    def create(self, spec: ContainerSpec) -> Record:
        """A container that exists but has not started."""
        raise Unsupported(self.name, "create")

    def start(self, name: str) -> None:
        """Start a created or exited container in the background."""
        raise Unsupported(self.name, "start")

    def run_detached(self, spec: ContainerSpec) -> Record:
        """create + start; a container that fails to start is removed again."""
        record = self.create(spec)
        try:
            self.start(record.name)
        except BaseException:
            self.remove(record.name, force=True)
            raise
        return record

    def get(self, name: str) -> Record:
        """The container's record with its status read from the live system."""
        raise Unsupported(self.name, "get")

    def _running(self, name: str, doing: str) -> Record:
        """The record of container `name`, or Conflict saying why `doing` is impossible now."""
        record = self.get(name)
        if record.status != "running":
            if record.status == "paused":
                raise Conflict(f"cannot {doing} container {name}: it is paused, unpause it first")
            raise Conflict(f"cannot {doing} container {name}: it is not running")
        return record

    def list(self) -> list[Record]:
        raise Unsupported(self.name, "list")

    def stop(self, name: str, timeout: float | None = None) -> None:
        """The container's --stop-signal (SIGTERM), then SIGKILL after `timeout` seconds;
        None: its --stop-timeout, else 10 (stop_plan)."""
        raise Unsupported(self.name, "stop")

    def kill(self, name: str, sig: int = 9) -> None:
        raise Unsupported(self.name, "kill")

    def remove(self, name: str, force: bool = False) -> None:
        raise Unsupported(self.name, "rm")

    def wait(self, name: str) -> int:
        raise Unsupported(self.name, "wait")

    def exec(self, name: str, spec: ExecSpec) -> int:
        raise Unsupported(self.name, "exec")

    def logs(self, name: str, follow: bool = False, tail: int | None = None) -> Iterator[LogEntry]:
        raise Unsupported(self.name, "logs")

    def pause(self, name: str) -> None:
        raise Unsupported(self.name, "pause")

    def unpause(self, name: str) -> None:
        raise Unsupported(self.name, "unpause")

    def stats(self, name: str) -> dict:
        """{"memory_usage", "memory_limit", "cpu_usage_ns", "pids_current", "pids_limit"} from the cgroup."""
        raise Unsupported(self.name, "stats")

    def inspect(self, name: str) -> dict:
        """The backend's part of `ctr inspect`: {"raw": ..., "rootfs": ..., "cgroup": ...}."""
        raise Unsupported(self.name, "inspect")

    def root_path(self, name: str) -> Path:
        """A host path that shows the running container's root filesystem (for cp)."""
        raise Unsupported(self.name, "cp")

    # -- moving containers (issue 8: commit, export/import, migrate; backends/migrate.py) --

    def writable_layer(self, name: str) -> Path:
        """The host directory holding the container's writable layer: an overlayfs upper
        directory (whiteouts as 0:0 character devices, opaque directories by xattr)."""
        upper = (self.inspect(name).get("rootfs") or {}).get("upper")
        if not upper:
            raise Unsupported(
                self.name, "access to a container's writable layer", f"inspect of {name} names no upper directory"
            )
        return Path(upper)

    def rename(self, old: str, new: str) -> None:
        """Give a container that is not running the name `new` (migrate parks its source so).

        Atomic: `new` is reserved with mkdir, then the record directory is renamed over it
        (rename(2) replaces an empty directory). This is all native and docker bind to a
        name (docker finds its engine container by id); a backend that names more after
        the container (lxc: its liblxc directory) extends it."""
        from ctr.errors import Conflict
        from ctr.state.records import RecordStore

        store = RecordStore(self.paths)
        if self.get(old).status in ("running", "paused"):
            raise Conflict(f"cannot rename container {old}: it is running")
        with store.lock(old):
            try:
                os.mkdir(store.dir(new), 0o700)
            except FileExistsError:
                raise Conflict(f'cannot rename container {old} to {new}: the name "{new}" is already in use') from None
            try:
                os.rename(store.dir(old), store.dir(new))
            except BaseException:
                os.rmdir(store.dir(new))
                raise
            record = store.load(new)
            record.name = new
            store.save(record)
