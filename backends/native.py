"""The native backend: ctr's own runtime (ctr.native), no daemon, no external runtime."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import time
from pathlib import Path

from ctr.errors import CtrError, Unsupported
from ctr.spec import ContainerSpec

from .base import Backend, BackendInfo, check_mount_sources, resolve_process
from .images import ImageStore
from .records import RecordStore, process_start_time

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def exit_status(status: int) -> int:
    """waitpid status -> Docker's exit code: the code itself, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class NativeBackend(Backend):
    name = "native"

    @classmethod
    def probe(cls) -> BackendInfo:
        from ctr.native.cgroups import cgroup_driver

        versions = {"kernel": platform.release()}
        if os.geteuid() != 0:
            return BackendInfo(cls.name, False, "the native backend needs root (run ctr as root)", versions)
        try:
            versions["cgroup"] = cgroup_driver().describe()
        except CtrError as exc:
            return BackendInfo(cls.name, False, str(exc), versions)
        if not _has_filesystem("overlay"):
            return BackendInfo(cls.name, False, "the kernel has no overlayfs: modprobe overlay", versions)
        return BackendInfo(cls.name, True, "", versions)

    def __init__(self, paths=None) -> None:
        super().__init__(paths)
        self.records = RecordStore(self.paths)
        self.images = ImageStore(self.paths)

    def check_spec(self, spec: ContainerSpec) -> None:
        if spec.network == "bridge":
            raise Unsupported(self.name, "--network bridge", "use --network none or host")

    def run(self, spec: ContainerSpec) -> int:
        from ctr.native.cgroups import Limits, cgroup_driver
        from ctr.native.process import ProcessPlan, spawn
        from ctr.native.rootfs import RootfsPlan
        from ctr.native import caps, tty

        self.check_spec(spec)
        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        image = self.images.get(spec.image)
        layers = self.images.layer_paths(image)
        check_mount_sources(spec)
        driver = cgroup_driver()
        record = self.records.reserve(spec.name, self.name, spec.to_dict())
        hostname = spec.hostname or record.short_id
        process = resolve_process(spec.with_changes(hostname=hostname), image.config)
        cdir = self.records.dir(record.name)
        rundir = self.paths.runtime / record.name
        cgroup = None
        remove = spec.auto_remove
        # Signals to ctr are held from here on and go to the container once it exists.
        with SignalForwarder() as forwarder:
            try:
                record.image, record.image_digest = image.name, image.digest
                upper, work, rootfs_dir = cdir / "upper", cdir / "work", rundir / "rootfs"
                for d in (upper, work, rootfs_dir):
                    d.mkdir(parents=True, exist_ok=True)
                cgroup = driver.create(f"ctr-{record.id}", Limits(spec.memory, spec.cpus, spec.pids_limit))
                record.cgroup = cgroup.name
                plan = ProcessPlan(
                    args=process.args,
                    env=process.env,
                    cwd=process.cwd,
                    user=process.user,
                    hostname=hostname,
                    caps_mask=caps.mask(spec.capabilities()),
                    rootfs=RootfsPlan(
                        rootfs=str(rootfs_dir),
                        lower=tuple(str(p) for p in layers),
                        upper=str(upper),
                        work=str(work),
                        mounts=spec.mounts,
                        read_only=spec.read_only,
                        cgroup_mounts=tuple(driver.container_mounts()),
                    ),
                    host_network=spec.network == "host",
                    tty=spec.tty,
                    stdin=spec.stdin,
                    winsize=(tty.winsize(0) or tty.winsize(1)) if spec.tty else None,
                )
                started = spawn(plan, cgroup.add)
                forwarder.attach(started.pid)
                record.status, record.pid, record.started = "running", started.pid, time.time()
                record.pid_start = process_start_time(started.pid)
                self.records.save(record)
                status = self._wait(started, spec)
                record.exit_code = exit_status(status)
                record.oom_killed = cgroup.oom_killed()
                record.status, record.finished, record.pid = "exited", time.time(), None
                return record.exit_code
            except BaseException:
                remove = True  # a container that failed to run leaves nothing behind
                raise
            finally:
                if cgroup is not None:
                    cgroup.destroy()
                shutil.rmtree(rundir, ignore_errors=True)
                if remove:
                    self.records.remove(record.name)
                else:
                    self.records.save(record)

    def _wait(self, started, spec: ContainerSpec) -> int:
        from ctr.native import tty

        if started.master_fd is not None:
            try:
                tty.relay(started.master_fd, forward_stdin=spec.stdin)
            finally:
                os.close(started.master_fd)
        _, status = os.waitpid(started.pid, 0)
        return status


class SignalForwarder:
    """Pass the signals ctr receives to the container's PID 1, from before it exists:
    a signal that arrives while the container is being set up is held and delivered
    as soon as its pid is known, so Ctrl-C never leaves a half-made container."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        self.previous: dict = {}

    def __enter__(self) -> "SignalForwarder":
        for sig in FORWARDED_SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame) -> None:
        if self.pid is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def attach(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._send(signum)
        self.pending.clear()

    def _send(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


def _has_filesystem(name: str) -> bool:
    try:
        return any(line.split()[-1] == name for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False
