"""The lxc backend: liblxc, through its python bindings, runs ctr's image and spec.

How it maps onto liblxc 5 (each choice checked against liblxc's source and on a
real host):

- Containers live under ctr's own lxcpath (`<data>/lxc`), never /var/lib/lxc.
  `create` writes the container's liblxc config there (`<lxcpath>/<name>/config`,
  so lxc-ls -P and lxc-info -P see ctr's containers); it stays until `rm`. Their
  cgroups are named after the container id (`ctr-lxc-<id>`), never
  `lxc.payload.<name>`, so they cannot meet a user's own LXC container of the
  same name; the monitor's pivot cgroup is per container too
  (`ctr-lxc-<id>.pivot`), so it can be removed afterwards.
- The root is `lxc.rootfs.path = overlay:<top layer>:...:<bottom layer>:<upper>`
  (liblxc takes everything up to the last ":/" as the lowerdir list, and the
  workdir as the sibling `work` of upper). liblxc mounts it in the container's
  own mount namespace: the host's mount table never sees it, whatever happens
  to ctr. Mount targets and the working directory are created beforehand in
  the writable layer, by a short-lived child that mounts the same overlay in a
  throwaway mount namespace, so they also exist under --read-only.
- liblxc's start() blocks for the container's whole life and changes process
  state (signal mask, environment, log), so it runs in a forked child of ctr,
  "the liblxc monitor", started non-daemonized with useinit=False: the command
  is PID 1 itself, not lxc-init. With lxc.console.path = none, liblxc hands the
  monitor's stdin/stdout/stderr to PID 1 unchanged, so stdout and stderr stay
  apart; stdin is /dev/null unless -i. close_fds=True keeps every other fd
  out of the container.
- Status is read live: running while PID 1's pid has the start time recorded,
  paused while liblxc says FROZEN (or, with no liblxc monitor left to ask, the
  freezer cgroup does).
- How ctr keeps the container, one concept per module beside this one: its liblxc
  config (config), its root before liblxc mounts it (rootfs), its cgroups (cgroups),
  the liblxc monitor and ctr's monitor of a detached container (monitor), a foreground
  run's signals and terminal (supervisor, console), one start and its exit status or
  error (start, log), exec (attach).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path

from ctr.backends.base import BackendInfo, check_host_gateway, check_mount_sources, writes_cidfile
from ctr.backends.kept import etcfiles
from ctr.backends.kept.base import MONITOR_EXIT_TIMEOUT, KeptBackend, wait_pid
from ctr.backends.kept.identity import exec_identity
from ctr.backends.kept.monitor_start import fork_clean, let_go_of_caller, start_under_monitor
from ctr.backends.kept.signals import SignalForwarder
from ctr.backends.lxc.cgroups import OOM_FILE, cgroup_names, driver, find_init, read_oom, remove_cgroup
from ctr.backends.lxc.config import lxc_config, read_config, save_config, write_files
from ctr.backends.lxc.console import peer_adds_cr
from ctr.backends.lxc.log import log_reason
from ctr.backends.lxc.monitor import KeeperStdio, await_exec, keep_logs, liblxc_monitor
from ctr.backends.lxc.probe import probe_info, unusable_because
from ctr.backends.lxc.rootfs import prepare_rootfs
from ctr.backends.lxc.start import exit_code, read_outcome
from ctr.errors import BackendUnavailable, Conflict, CtrError, NotFound, Unsupported
from ctr.images.store import ImageStore
from ctr.native.cgroups.mounted import controller_version
from ctr.process import ExecSpec, exit_status, resolve_process
from ctr.spec import ContainerSpec
from ctr.state.records import Record, RecordStore, process_start_time

LXC_LOCK_DIR = Path("/run/lxc/lock")  # liblxc's per-container lock files (lxclock.c), for root


class LxcBackend(KeptBackend):
    name = "lxc"
    UNSUPPORTED_FLAGS = {
        "--network bridge": "there is no bridge for containers on this host; use --network none or host",
        "--add-host NAME:host-gateway": "there is no bridge for containers on this host, so there is no host gateway: give the host's address",
    }

    @classmethod
    def probe(cls) -> BackendInfo:
        return probe_info(cls.name)

    @classmethod
    def ready(cls, paths=None) -> LxcBackend:
        """As probe decides, without the versions: every lxc command comes here, and
        importing importlib.metadata (email with it) for python-lxc's would cost ~15 ms."""
        reason = unusable_because()
        if reason:
            raise BackendUnavailable(f"backend {cls.name} is not usable: {reason}")
        return cls(paths)

    def __init__(self, paths=None) -> None:
        super().__init__(paths)
        self.records = RecordStore(self.paths)
        self.images = ImageStore(self.paths)

    @property
    def lxcpath(self) -> Path:
        """ctr's own LXC container directory, apart from the system's /var/lib/lxc."""
        return self.paths.data / "lxc"

    def check_spec(self, spec: ContainerSpec) -> dict:
        """Refuse what liblxc cannot do here, before anything is made; returns the security
        settings the record keeps."""
        from ctr.security import check_security_opts

        if spec.network == "bridge":
            raise Unsupported(self.name, "--network bridge", self.UNSUPPORTED_FLAGS["--network bridge"])
        check_host_gateway(self, spec)
        wanted = {"memory": spec.memory is not None, "cpu": spec.cpus is not None, "pids": spec.pids_limit is not None}
        flags = {"memory": "--memory", "cpu": "--cpus", "pids": "--pids-limit"}
        for controller, asked in wanted.items():
            if asked and controller_version(controller) is None:
                raise Unsupported(self.name, flags[controller], f"the {controller} cgroup controller is not available")
        return check_security_opts(spec, self.name)

    # -- creating: record, writable layer, liblxc config; no process ------------------------

    @writes_cidfile
    def create(self, spec: ContainerSpec) -> Record:
        security = self.check_spec(spec)
        image = self.images.get(spec.image)
        layers = [str(p) for p in self.images.layer_paths(image)]
        check_mount_sources(spec)
        record = self.records.reserve(spec.name, self.name, spec.to_dict())
        try:
            self._define(record, spec, image, layers, security)
        except BaseException:
            self._destroy(record)
            raise
        return record

    def _define(self, record: Record, spec: ContainerSpec, image, layers: list[str], security: dict) -> None:
        name = record.name
        cdir = self.records.dir(name)
        rundir = self.paths.runtime / name
        hostname = spec.hostname or record.short_id
        process = resolve_process(spec.with_changes(hostname=hostname), image.config)
        record.image, record.image_digest = image.name, image.digest
        record.cgroup = cgroup_names(record.id)[0]
        record.extra = {
            "lxcpath": str(self.lxcpath),
            "hostname": hostname,
            "layers": layers,
            "process": asdict(process),
            "seccomp": security,
        }
        upper, work, rootfs = cdir / "upper", cdir / "work", rundir / "rootfs"
        for p in [*layers, str(upper)]:
            if re.search(r"[:,]", p):
                raise CtrError(f"cannot use {p} as an overlay layer of container {name}: the path contains ':' or ','")
        for d in (upper, work, rootfs):
            d.mkdir(parents=True, exist_ok=True)
        # /etc/hostname, hosts, resolv.conf: bind mounts like the user's, after them.
        spec = spec.with_changes(mounts=spec.mounts + etcfiles.write(cdir, spec, hostname))
        layers = [*layers, etcfiles.init_layer(cdir)]  # their mount points, out of the writable layer
        try:
            user = prepare_rootfs(name, layers, str(upper), str(work), str(rootfs), process.user, process.cwd, spec)
        finally:
            shutil.rmtree(rundir, ignore_errors=True)  # made again by each start
        env = list(process.env)
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user['home']}")
        lxcdir = self.lxcpath / name
        seccomp_file, devices_script = write_files(lxcdir, spec, security)
        config = lxc_config(
            spec,
            record.id,
            hostname,
            layers,
            str(upper),
            str(rootfs),
            str(lxcdir / "lxc.log"),
            env,
            process.cwd,
            user,
            oom_file=str(rundir / OOM_FILE),
            seccomp_file=seccomp_file,
            devices_script=devices_script,
        )
        save_config(name, self.lxcpath, config)
        record.extra["config"] = [list(item) for item in config]
        self.records.save(record)

    @staticmethod
    def _config(record: Record) -> list[tuple[str, str]]:
        return [(k, v) for k, v in record.extra["config"]]

    # -- running in the foreground: ctr waits for the liblxc monitor ----------------------------

    def run(self, spec: ContainerSpec) -> int:
        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        from ctr.backends.lxc.supervisor import run_foreground  # off the other commands' start-up

        record = self.create(spec)
        rundir = self.paths.runtime / record.name
        remove = spec.auto_remove
        try:
            (rundir / "rootfs").mkdir(parents=True, exist_ok=True)
            status = run_foreground(
                spec,
                record.id,
                functools.partial(self._liblxc_monitor, spec, record, rundir),
                functools.partial(self._started, record),
            )
            code = read_outcome(record.name, rundir, status)
            record.exit_code, record.oom_killed = code, read_oom(rundir)
            record.status, record.finished, record.pid = "exited", time.time(), None
            return code
        except BaseException:
            remove = True  # a container that failed to run leaves nothing behind
            raise
        finally:
            self._end(record, remove)

    def _liblxc_monitor(
        self,
        spec: ContainerSpec,
        record: Record,
        rundir: Path,
        parent: int,
        master: int | None,
        slave: int | None,
        death_signal: int = signal.SIGTERM,
    ) -> None:
        """The liblxc monitor process (monitor.liblxc_monitor), under `parent`; never returns."""
        liblxc_monitor(
            parent,
            record.name,
            self.lxcpath,
            self._config(record),
            tuple(record.extra["process"]["args"]),
            rundir,
            spec.stdin,
            master,
            slave,
            death_signal,
            orphaned=lambda result: self._end_orphaned(record, rundir, spec.auto_remove, result),
        )

    def _end_orphaned(self, record: Record, rundir: Path, auto_remove: bool, result: dict) -> None:
        """The liblxc monitor's report when its parent is gone: nobody else will clean up."""
        ran = bool(result.get("started"))
        if ran:
            record.exit_code = exit_code(result["status"])
            record.status, record.finished, record.pid = "exited", time.time(), None
            record.oom_killed = read_oom(rundir)
        self._end(record, auto_remove or not ran)

    # -- detached: ctr's monitor keeps the logs and records the exit -------------------------

    def start(self, name: str) -> None:
        """Start a created or exited container in the background, under ctr's monitor;
        returns once PID 1 runs the command, or raises why it could not."""
        if self.get(name).status not in ("running", "paused"):
            self._wait_keeper(name, MONITOR_EXIT_TIMEOUT)  # one may still be recording the last exit
        with self.records.lock(name) as lock_fd:
            record = self._refresh(self.records.load(name))
            if record.status in ("running", "paused"):
                raise Conflict(f"cannot start container {name}: it is {record.status}")
            start_under_monitor(name, lock_fd, lambda report_w: self._monitor(record, report_w))

    def _monitor(self, record: Record, report_w: int) -> None:
        """ctr's monitor of a detached container; never returns.

        Forks the liblxc monitor with the container's stdio, tells `ctr start` how the start
        went, copies the output to the log and records the exit. It saves the record without
        the lock while `ctr start` holds it for the start, and takes it for the exit.
        """
        from ctr.native import syscalls as sc
        from ctr.state import logs

        name = record.name
        rundir = self.paths.runtime / name
        lxc_pid, reaped = None, False
        try:
            let_go_of_caller(report_w)
            spec = ContainerSpec.from_dict(record.spec)
            shutil.rmtree(rundir, ignore_errors=True)
            (rundir / "rootfs").mkdir(parents=True)
            stdio = KeeperStdio.open(spec.tty, spec.stdin)
            me = os.getpid()
            lxc_pid = fork_clean()
            if lxc_pid == 0:
                stdio.take_child_side(report_w)
                self._liblxc_monitor(spec, record, rundir, me, stdio.master, stdio.slave, death_signal=signal.SIGKILL)
            stdio.close_child_side()
            lxc_fd = sc.pidfd_open(lxc_pid)
            init = await_exec(record.id, lxc_pid, lxc_fd)
            status = None
            if init is None:  # the liblxc monitor ended first: a start error, or a command already done
                _, status = os.waitpid(lxc_pid, 0)
                reaped = True
                read_outcome(name, rundir, status)  # raises the start error
            # liblxc set up its terminal before the exec, and restores it when it ends: ask now.
            onlcr = (peer_adds_cr(stdio.slave_path) if init is not None else True) if spec.tty else None
            self._record_running(record, init, me, lxc_pid)  # `ctr start` holds the lock for us
            with contextlib.suppress(BrokenPipeError):  # `ctr start` was killed: the container runs on
                os.write(report_w, b"ok")
            os.close(report_w)
            report_w = -1
            # Already reaped (the command was done before we saw it start): only drain the output.
            keep_logs(lxc_fd if status is None else None, stdio.outputs, self.records.dir(name) / logs.LOG_FILE, onlcr)
            os.close(lxc_fd)
            if status is None:
                _, status = os.waitpid(lxc_pid, 0)
            try:
                code = read_outcome(name, rundir, status)
            except CtrError:
                code = None  # the liblxc monitor was killed: nobody knows how PID 1 ended
            self._finish(name, code, read_oom(rundir))
        except BaseException as exc:
            if report_w >= 0:
                code = getattr(exc, "exit_code", 125)
                with contextlib.suppress(BrokenPipeError):
                    os.write(report_w, f"{code}:{exc}".encode())
                # Nothing of this attempt stays; the record is as it was before `ctr start`.
                self._abort_start(record, None if reaped else lxc_pid)
        finally:
            os._exit(0)

    def _record_running(self, record: Record, init: int | None, monitor: int, lxc_monitor: int) -> None:
        """A detached container's PID 1 runs (or has run already: `init` None): who keeps it."""
        record.status, record.pid, record.started = "running", init, time.time()
        record.pid_start = process_start_time(init) if init else None
        record.exit_code, record.finished, record.oom_killed = None, None, False
        record.extra.update(
            monitor_pid=monitor,
            monitor_start=process_start_time(monitor),
            lxc_monitor_pid=lxc_monitor,
            lxc_monitor_start=process_start_time(lxc_monitor),
        )
        self.records.save(record)

    def _abort_start(self, record: Record, lxc_pid: int | None) -> None:
        if lxc_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(lxc_pid, signal.SIGKILL)  # liblxc's death signal ends PID 1 with it
            with contextlib.suppress(ChildProcessError):
                os.waitpid(lxc_pid, 0)
        init = find_init(record.id)
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
        self._teardown(record)

    def _finish(self, name: str, code: int | None, oom: bool) -> None:
        """The liblxc monitor has ended: record how, and let go of what the run used."""
        with self.records.lock(name):
            try:
                record = self.records.load(name)
            except NotFound:
                return  # removed meanwhile (rm -f): it took everything with it
            self._teardown(record)
            record.status, record.exit_code, record.finished, record.oom_killed, record.pid = (
                "exited",
                code,
                time.time(),
                oom,
                None,
            )
            if record.spec.get("auto_remove"):
                self._destroy(record)
            else:
                self.records.save(record)

    # -- state ---------------------------------------------------------------------------

    def _refresh(self, record: Record) -> Record:
        """The record with its status read from the live system, not from what was last written:
        PID 1 by pid and start time (a reused pid is another process), paused when liblxc says FROZEN."""
        if record.status in ("running", "paused"):
            alive = record.pid and record.pid_start is not None and process_start_time(record.pid) == record.pid_start
            if alive:
                record.status = "paused" if self._frozen(record) else "running"
            else:
                record.status, record.pid = "exited", None  # its keeper died without recording the end
        return record

    def _frozen(self, record: Record) -> bool:
        state = self._lxc(record.name).state
        if state in ("FROZEN", "FREEZING"):
            return True
        if state == "STOPPED":  # no liblxc monitor to ask (killed): the freezer itself tells
            try:
                return driver().open(record.cgroup).frozen()
            except CtrError:
                return False
        return False

    def _lxc(self, name: str):
        import lxc

        return lxc.Container(name, str(self.lxcpath))

    # -- stopping, waiting, removing -----------------------------------------------------------

    def remove(self, name: str, force: bool = False) -> None:
        record = self.get(name)
        self._end_for_removal(record, force)
        with self.records.lock(name):
            # A liblxc monitor whose keeper was killed may still be about; so may PID 1, if it
            # outlived it (a non-root PID 1 loses liblxc's death signal when it changes uid).
            for pid_key in ("lxc_monitor", "monitor"):
                pid, start = record.extra.get(f"{pid_key}_pid"), record.extra.get(f"{pid_key}_start")
                if pid and start is not None and process_start_time(pid) == start:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            init = find_init(record.id)
            if init is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(init, signal.SIGKILL)
                wait_pid(init, process_start_time(init), MONITOR_EXIT_TIMEOUT)
            self._destroy(record)

    def _wait_keeper(self, name: str, timeout: float | None) -> None:
        """While the record still says running (whether or not PID 1 is alive), until whoever
        keeps the container has recorded its end; so `wait` returns its exit code, and `rm`
        and `start` do not race with the keeper's own tidying up."""
        try:
            stored = self.records.load(name)
        except NotFound:
            return
        if stored.status == "running":
            self._wait_recorded(stored, timeout)

    def _wait_recorded(self, record: Record, timeout: float | None) -> None:
        """Until the container's end is recorded (or `timeout` seconds). ctr's monitor exits
        right after recording it; a foreground ctr, whose process may be anyone's (a program
        calling run()), records it just after the liblxc monitor has ended."""
        if record.extra.get("monitor_pid"):
            wait_pid(record.extra["monitor_pid"], record.extra.get("monitor_start"), timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(deadline - time.monotonic(), 0)

        wait_pid(record.pid, record.pid_start, left())
        wait_pid(record.extra.get("lxc_monitor_pid"), record.extra.get("lxc_monitor_start"), left())
        grace = time.monotonic() + (MONITOR_EXIT_TIMEOUT if deadline is None else min(left(), MONITOR_EXIT_TIMEOUT))
        while time.monotonic() < grace:  # bounded: that ctr may have been killed as well
            try:
                if self.records.load(record.name).status != "running":
                    return
            except NotFound:
                return
            time.sleep(0.05)

    def _thaw(self, record: Record) -> None:
        if not self._lxc(record.name).unfreeze():
            driver().open(record.cgroup).thaw()  # no liblxc monitor to do it

    # -- inside a running container ----------------------------------------------------------

    def exec(self, name: str, spec: ExecSpec) -> int:
        """liblxc attaches (namespaces, cgroup); ctr's payload becomes the process as the
        native backend's exec does: user resolved in the container, its capabilities, env, cwd."""
        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        from ctr.backends.lxc.attach import attach  # off the other commands' start-up

        record = self._running(name, "exec in")
        identity = exec_identity(record, spec, self.paths)  # liblxc attach loads no seccomp: become does
        with SignalForwarder() as forwarder:
            pid, master = attach(self._lxc(name), name, identity, self.lxcpath / name / "lxc.log")
            status = forwarder.follow(pid, master, spec.stdin)
        return exit_status(status)

    def pause(self, name: str) -> None:
        record = self._running(name, "pause")
        c = self._lxc(name)
        if not c.freeze():
            raise CtrError(
                f"cannot pause container {name}: liblxc could not freeze it" + log_reason(record, self.lxcpath)
            )

    def unpause(self, name: str) -> None:
        record = self.get(name)
        if record.status != "paused":
            raise Conflict(f"cannot unpause container {name}: it is not paused")
        if not self._lxc(name).unfreeze():
            raise CtrError(
                f"cannot unpause container {name}: liblxc could not thaw it" + log_reason(record, self.lxcpath)
            )

    def stats(self, name: str) -> dict:
        record = self.get(name)
        if record.status not in ("running", "paused"):
            raise Conflict(f"cannot read stats of container {name}: it is not running")
        return driver().open(record.cgroup).stats()

    def inspect(self, name: str) -> dict:
        record = self.get(name)
        c = self._lxc(name)
        config_file = self.lxcpath / name / "config"
        running = record.status in ("running", "paused")
        return {
            "raw": {
                "lxcpath": str(self.lxcpath),
                "config_file": str(config_file),
                "config": read_config(config_file),
                "state": c.state,
                "init_pid": c.init_pid if running else None,
                "record": asdict(record),
            },
            "rootfs": {
                "type": "overlay",
                "lower": record.extra.get("layers", []),
                "upper": str(self.records.dir(name) / "upper"),
            },
            "cgroup": record.cgroup if running else "",
        }

    def root_path(self, name: str) -> Path:
        """Where the running container's root can be reached from the host."""
        record = self._running(name, "reach the files of")
        return Path(f"/proc/{record.pid}/root")

    # -- bookkeeping -----------------------------------------------------------------------------

    def _started(self, record: Record, pid: int, lxc_monitor: int) -> None:
        """A foreground run's PID 1 is there: it is running, and who keeps it."""
        record.status, record.pid, record.started = "running", pid, time.time()
        record.pid_start = process_start_time(pid)
        record.extra.update(lxc_monitor_pid=lxc_monitor, lxc_monitor_start=process_start_time(lxc_monitor))
        self._save(record)

    def _save(self, record: Record) -> None:
        """Save the record unless `ctr rm -f` removed it meanwhile (it holds the same lock)."""
        with self.records.lock(record.name):
            if self.records.dir(record.name).exists():
                self.records.save(record)

    def _end(self, record: Record, remove: bool) -> None:
        """After a foreground run: what the run used goes; the container too unless kept."""
        if remove:
            with self.records.lock(record.name):
                self._destroy(record)
        else:
            self._teardown(record)
            self._save(record)

    def _teardown(self, record: Record) -> None:
        """What only a running container has: its cgroups and runtime directory."""
        for name in cgroup_names(record.id):
            remove_cgroup(name)
        shutil.rmtree(self.paths.runtime / record.name, ignore_errors=True)

    def _destroy(self, record: Record) -> None:
        """Every trace of the container: the above, its liblxc directory and lock file, its record."""
        self._teardown(record)
        shutil.rmtree(self.lxcpath / record.name, ignore_errors=True)
        with contextlib.suppress(OSError):
            (LXC_LOCK_DIR / str(self.lxcpath).lstrip("/") / f".{record.name}").unlink()
        self.records.remove(record.name)

    def rename(self, old: str, new: str) -> None:
        """Backend.rename, and what liblxc names after the container: its liblxc directory
        <lxcpath>/<name>, the paths in its liblxc config that name it (upper dir, log file,
        rootfs mount point, runtime files), and liblxc's lock file."""
        super().rename(old, new)
        records = self.records
        lxcpath = self.lxcpath
        moves = [
            (f"{d(old)}/", f"{d(new)}/") for d in (records.dir, lambda n: lxcpath / n, lambda n: self.paths.runtime / n)
        ]

        def moved(value: str) -> str:
            for a, b in moves:
                value = value.replace(a, b)
            return value

        record = records.load(new)
        before = list(record.extra.get("config") or [])
        try:
            config = [(k, moved(v)) for k, v in before]
            if (lxcpath / old).is_dir():
                os.rename(lxcpath / old, lxcpath / new)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lxcpath / new / "config")
                save_config(new, lxcpath, config)
            record.extra["config"] = [list(item) for item in config]
            records.save(record)
            with contextlib.suppress(OSError):
                (LXC_LOCK_DIR / str(lxcpath).lstrip("/") / f".{old}").unlink()
        except BaseException:
            with contextlib.suppress(OSError):
                if (lxcpath / new).is_dir() and not (lxcpath / old).exists():
                    os.rename(lxcpath / new, lxcpath / old)
                    os.unlink(lxcpath / old / "config")
                    save_config(old, lxcpath, [tuple(i) for i in before])
            super().rename(new, old)
            raise
