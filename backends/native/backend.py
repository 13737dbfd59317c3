"""The native backend: ctr's own runtime (ctr.native), no daemon, no external runtime.

A foreground `run` keeps the container itself: ctr is PID 1's parent. A detached
container gets a monitor process instead (forked, then orphaned so that it
outlives ctr), which keeps its logs and records how it ended. No command waits
for the monitor while holding the container's lock, since the monitor takes it
to write the exit.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from ctr.backends.base import BackendInfo, check_host_gateway, check_mount_sources, writes_cidfile
from ctr.backends.kept import etcfiles
from ctr.backends.kept.base import KeptBackend, wait_pid
from ctr.backends.kept.host import has_filesystem
from ctr.backends.kept.identity import exec_identity, terminal_size
from ctr.backends.kept.monitor_start import let_go_of_caller, start_under_monitor
from ctr.backends.kept.signals import SignalForwarder
from ctr.backends.native.finish import command, record_end
from ctr.errors import Conflict, CtrError, NotFound, Unsupported
from ctr.images.store import ImageStore
from ctr.process import ExecSpec, Process, exit_status, resolve_process
from ctr.spec import ContainerSpec
from ctr.state.records import Record, RecordStore, process_start_time


@functools.lru_cache(maxsize=1)
def _driver():
    from ctr.native.cgroups.driver import cgroup_driver

    return cgroup_driver()


def _prime_attach() -> None:
    from ctr.native.cgroups.prime import prime_attach

    prime_attach()


def _stop_priming() -> None:
    from ctr.native.cgroups.prime import stop_priming

    stop_priming()


class NativeBackend(KeptBackend):
    name = "native"
    UNSUPPORTED_FLAGS = {
        "--network bridge": "ctr makes no bridge: use --network none or host",
        "--add-host NAME:host-gateway": "ctr makes no bridge, so there is no host gateway: give the host's address",
    }

    @classmethod
    def probe(cls) -> BackendInfo:
        from ctr.native.monitor import describe

        versions = {"kernel": os.uname().release, "monitor": describe()}
        if os.geteuid() != 0:
            return BackendInfo(cls.name, False, "the native backend needs root (run ctr as root)", versions)
        try:
            versions["cgroup"] = _driver().describe().removeprefix("cgroup ")
        except CtrError as exc:
            return BackendInfo(cls.name, False, str(exc), versions)
        if not has_filesystem("overlay"):
            return BackendInfo(cls.name, False, "the kernel has no overlayfs: modprobe overlay", versions)
        return BackendInfo(cls.name, True, "", versions)

    def __init__(self, paths=None) -> None:
        super().__init__(paths)
        self.records = RecordStore(self.paths)
        self.images = ImageStore(self.paths)

    # ---- creating and starting -------------------------------------------------

    def check_spec(self, spec: ContainerSpec) -> dict:
        """Refuse what the native runtime cannot do; returns the security settings to keep."""
        from ctr.security import check_security_opts

        if spec.network == "bridge":
            raise Unsupported(self.name, "--network bridge", self.UNSUPPORTED_FLAGS["--network bridge"])
        check_host_gateway(self, spec)
        return check_security_opts(spec, self.name)

    @writes_cidfile
    def create(self, spec: ContainerSpec) -> Record:
        """A container that exists (record, writable layer) but has no process yet."""
        security = self.check_spec(spec)
        image = self.images.get(spec.image)
        layers = self.images.layer_paths(image)
        check_mount_sources(spec)
        record = self.records.reserve(spec.name, self.name, spec.to_dict())
        try:
            hostname = spec.hostname or record.short_id
            process = resolve_process(spec.with_changes(hostname=hostname), image.config)
            record.image, record.image_digest = image.name, image.digest
            record.extra = {
                "hostname": hostname,
                "layers": [str(p) for p in layers],
                "process": asdict(process),
                "seccomp": security,
            }
            cdir = self.records.dir(record.name)
            (cdir / "upper").mkdir()
            (cdir / "work").mkdir()
            self.records.save(record)
        except BaseException:
            self.records.remove(record.name)
            raise
        return record

    def _launch(self, record: Record, stdio=(None, None, None), winsize: bytes | None = None):
        """Cgroup, namespaces, root, exec: PID 1 of `record`, a child of the calling process."""
        from ctr.native import caps
        from ctr.native.cgroups.limits import Limits
        from ctr.native.cgroups.prime import stop_priming
        from ctr.native.devices import container_policy, host_devices
        from ctr.native.process import Identity, ProcessPlan, spawn
        from ctr.native.rootfs import RootfsPlan
        from ctr.security import seccomp_program

        spec = ContainerSpec.from_dict(record.spec)
        program = seccomp_program(self.paths, spec, record.extra.get("seccomp"))
        process = Process(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.extra["process"].items()})
        cdir = self.records.dir(record.name)
        # Written afresh at every start, as Docker rebuilds them for each start.
        etc_mounts = etcfiles.write(cdir, spec, record.extra["hostname"])
        rootfs_dir = self.paths.runtime / record.name / "rootfs"
        rootfs_dir.mkdir(parents=True, exist_ok=True)
        driver = _driver()
        cgroup = driver.create(
            f"ctr-{record.id}",
            Limits(spec.memory, spec.cpus, spec.pids_limit),
            devices=container_policy(spec.privileged),
        )
        before = (record.status, record.pid, record.pid_start, record.started, record.cgroup)
        joined: list[int] = []
        try:
            plan = ProcessPlan(
                identity=Identity(
                    args=process.args,
                    env=process.env,
                    cwd=process.cwd,
                    user=process.user,
                    caps_mask=caps.container_mask(spec),
                    tty=spec.tty,
                    stdin=spec.stdin,
                    winsize=winsize,
                    seccomp=program,
                    no_new_privs=spec.no_new_privs(),
                    group_add=spec.group_add,
                ),
                hostname=record.extra["hostname"],
                rootfs=RootfsPlan(
                    rootfs=str(rootfs_dir),
                    lower=(*record.extra["layers"], etcfiles.init_layer(cdir)),
                    upper=str(cdir / "upper"),
                    work=str(cdir / "work"),
                    mounts=spec.mounts + etc_mounts,
                    read_only=spec.read_only,
                    cgroup_mounts=tuple(driver.container_mounts()),
                    privileged=spec.privileged,
                    # Read at each start, as the engine reads them when it makes the OCI spec.
                    devices=tuple(host_devices()) if spec.privileged else (),
                ),
                host_network=spec.network == "host",
            )

            def join(pid: int) -> None:
                # Recorded before PID 1 may go on: if ctr dies from here on, `rm -f` still
                # knows the pid and the cgroup to clean up.
                joined.append(pid)
                cgroup.add(pid)
                stop_priming()
                record.status, record.pid, record.started = "running", pid, time.time()
                record.pid_start = process_start_time(pid)
                record.cgroup, record.exit_code, record.finished, record.oom_killed = cgroup.name, None, None, False
                self.records.save(record)

            started = spawn(plan, join, stdio)
        except BaseException:
            cgroup.destroy()
            shutil.rmtree(self.paths.runtime / record.name, ignore_errors=True)
            if joined:  # the record said running: put it back as it was
                record.status, record.pid, record.pid_start, record.started, record.cgroup = before
                self.records.save(record)
            raise
        return cgroup, started

    def run(self, spec: ContainerSpec) -> int:
        """Foreground: ctr is the keeper; stdio is ctr's own."""
        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        _prime_attach()  # cheap when the CLI did it already, before importing this module
        record = self.create(spec)
        cgroup = None
        remove = spec.auto_remove
        # Signals to ctr are held from here on and go to the container once it exists.
        with SignalForwarder() as forwarder:
            try:
                winsize = terminal_size() if spec.tty else None
                cgroup, started = self._launch(record, winsize=winsize)
                status = forwarder.follow(started.pid, started.master_fd, spec.stdin)
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
                shutil.rmtree(self.paths.runtime / record.name, ignore_errors=True)
                if remove:
                    self.records.remove(record.name)
                else:
                    self.records.save(record)

    def start(self, name: str) -> None:
        """Start a created or exited container in the background, under a monitor."""
        with self.records.lock(name) as lock_fd:
            record = self._refresh(self.records.load(name))
            if record.status in ("running", "paused"):
                raise Conflict(f"cannot start container {name}: it is {record.status}")
            _prime_attach()  # the monitor's move into the cgroup then finds the lock warm
            start_under_monitor(name, lock_fd, lambda report_w: self._monitor(record, report_w))

    def _monitor(self, record: Record, report_w: int) -> None:
        """The monitor process: start PID 1, report to `ctr start`, keep logs, record the exit."""
        from ctr.native import monitor

        try:
            let_go_of_caller(report_w)
            spec = ContainerSpec.from_dict(record.spec)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            in_r = in_w = None
            if spec.stdin:  # -d -i: stdin stays open, as Docker keeps it for a later attach
                in_r, in_w = os.pipe()
            cgroup, started = self._launch(record, stdio=(in_r, out_w, err_w))
            for fd in (out_w, err_w, in_r):
                if fd is not None:
                    os.close(fd)
            if started.master_fd is not None:
                os.close(out_r)
                os.close(err_r)
                outputs = {started.master_fd: "stdout"}
            else:
                outputs = {out_r: "stdout", err_r: "stderr"}
            record.extra["monitor_pid"] = os.getpid()
            record.extra["monitor_start"] = process_start_time(os.getpid())
            self.records.save(record)
            from ctr.state.logs import LOG_FILE

            log_path = str(self.records.dir(record.name) / LOG_FILE)
            self._exec_monitor(record, cgroup.name, started, outputs, log_path, in_w, report_w)
            os.write(report_w, b"ok")  # no ctr-monitor: this Python process stays the keeper
            os.close(report_w)
            report_w = -1
            code = monitor.run(started.pid, outputs, log_path)
            record_end(self.records, _driver(), record.name, cgroup.name, code, started.pid)
        except BaseException as exc:
            if report_w >= 0:
                code = getattr(exc, "exit_code", 125)
                os.write(report_w, f"{code}:{exc}".encode())
        finally:
            os._exit(0)

    def _exec_monitor(
        self,
        record: Record,
        cgroup_name: str,
        started,
        outputs: dict[int, str],
        log_path: str,
        in_w: int | None,
        report_w: int,
    ) -> None:
        """Become ctr-monitor, the C loop that keeps no interpreter resident; it ends by
        exec'ing ctr.backends.native.finish, i.e. record_end, in this same process.
        Returns only when there is no binary (no C compiler at install) or it would not exec."""
        import sys

        from ctr.native import monitor

        path = monitor.binary()
        if path is None or not sys.executable:
            return
        if in_w is not None:
            os.set_inheritable(in_w, True)  # a -d -i container's stdin stays open for its whole life
        try:
            monitor.exec_binary(
                path,
                started.pid,
                outputs,
                log_path,
                started.master_fd is not None,
                command(self.paths, record.name, cgroup_name, started.pid),
                report_w,
            )
        except OSError:
            pass  # the Python loop does the same job

    # ---- state -------------------------------------------------------------------

    def _refresh(self, record: Record) -> Record:
        """The record with its status read from the live system, not from what was last written."""
        if record.status in ("running", "paused"):
            if record.pid and process_start_time(record.pid) == record.pid_start:
                record.status = "paused" if self._cgroup(record).frozen() else "running"
            else:
                record.status, record.pid = "exited", None  # its keeper died without recording the end
        return record

    def _cgroup(self, record: Record):
        return _driver().open(record.cgroup)

    # ---- stopping and removing -----------------------------------------------------

    def _thaw(self, record: Record) -> None:
        self._cgroup(record).thaw()

    def _wait_keeper(self, name: str, timeout: float | None) -> None:
        """Until the monitor has recorded the exit (it exits right after); PID 1 may be gone
        while its monitor is still recording the end."""
        try:
            record = self.records.load(name)
        except NotFound:
            return
        if record.status in ("running", "paused") or record.exit_code is None:
            wait_pid(record.extra.get("monitor_pid"), record.extra.get("monitor_start"), timeout)

    def remove(self, name: str, force: bool = False) -> None:
        record = self.get(name)
        self._end_for_removal(record, force)
        with self.records.lock(name):
            if record.cgroup:
                try:
                    self._cgroup(record).destroy()  # left behind when the keeper was killed
                except NotFound:
                    pass
            shutil.rmtree(self.paths.runtime / name, ignore_errors=True)
            self.records.remove(name)

    # ---- inside a running container ------------------------------------------------

    def exec(self, name: str, spec: ExecSpec) -> int:
        from ctr.native.process import ExecPlan, enter

        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        record = self._running(name, "exec in")
        _prime_attach()
        identity = exec_identity(record, spec, self.paths)
        cgroup = self._cgroup(record)
        with SignalForwarder() as forwarder:
            started = enter(ExecPlan(identity, record.pid), cgroup.add)
            _stop_priming()
            status = forwarder.follow(started.pid, started.master_fd, spec.stdin)
        return exit_status(status)

    def pause(self, name: str) -> None:
        self._cgroup(self._running(name, "pause")).freeze()

    def unpause(self, name: str) -> None:
        record = self.get(name)
        if record.status != "paused":
            raise Conflict(f"cannot unpause container {name}: it is not paused")
        self._cgroup(record).thaw()

    def stats(self, name: str) -> dict:
        record = self.get(name)
        if record.status not in ("running", "paused"):
            raise Conflict(f"cannot read stats of container {name}: it is not running")
        return self._cgroup(record).stats()

    def inspect(self, name: str) -> dict:
        record = self.get(name)
        return {
            "raw": {"record": asdict(record), "runtime_dir": str(self.paths.runtime / name)},
            "rootfs": {
                "type": "overlay",
                "lower": record.extra.get("layers", []),
                "upper": str(self.records.dir(name) / "upper"),
            },
            "cgroup": record.cgroup if record.status in ("running", "paused") else "",
        }

    def root_path(self, name: str) -> Path:
        """Where the running container's root can be reached from the host."""
        record = self._running(name, "reach the files of")
        return Path(f"/proc/{record.pid}/root")
