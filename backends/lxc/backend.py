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
- -t: liblxc allocates the console from the container's own devpts (so `tty`
  prints /dev/pts/0) and relays it to its controlling terminal. ctr gives the
  monitor a pty of its own as that terminal and relays it to ctr's stdio,
  which works whether or not ctr runs on a terminal; raw mode and window size
  follow ctr's terminal. liblxc never makes the console PID 1's controlling
  terminal, so ctr turns ^C, ^\\ and ^Z into signals itself.
- Exit status: liblxc records PID 1's status in `struct lxc_container.error_num`,
  a public field the python bindings do not expose; the monitor reads it with
  ctypes (checking the struct against the container's name and lxcpath first)
  and writes it to a file, since close_fds has closed any pipe by then.
  An OOM kill is read by liblxc's stop hook (`cat memory.oom_control`), which
  liblxc runs after PID 1 has ended but before it removes the cgroup.
- Foreground `run`: ctr itself waits for the liblxc monitor. Signals to ctr go
  straight to PID 1 through a pidfd (found in the payload cgroup: the process
  whose innermost pid is 1); signals that arrive earlier are held until then.
  If ctr dies, the liblxc monitor gets SIGTERM, passes it on, and tidies up
  once the container has ended.
- Detached (`start`): ctr forks twice (the first child exits at once, so the
  second is orphaned and outlives ctr) into "ctr's monitor", the analogue of
  conmon. It forks the liblxc monitor with pipes (or, with -t, a pty) as its
  stdio and keeps their other ends: stdout and stderr go to the Docker
  json-file log apart, and nobody but the monitor holds them. liblxc's
  daemonize=True was not taken: its daemon keeps no exit status (error_num
  lives in a process nobody can ask) and sends PID 1's output to /dev/null or,
  with a console log, to one merged stream. ctr's monitor reports to `ctr
  start` once PID 1 has exec'd (its /proc/PID/exe or name is no longer the
  monitor's), or the start error, and records the exit when the liblxc monitor
  ends. Killed with -9, it takes the liblxc monitor with it (its death signal
  is SIGKILL here), and liblxc's own death signal on PID 1 ends the container,
  unless PID 1 runs as another user: the kernel clears a death signal on a uid
  change, as for the native backend's PID 1; `ps` then says it runs, which it
  does, and `rm -f` kills it.
- Status is read live: running while PID 1's pid has the start time recorded,
  paused while liblxc says FROZEN (or, with no liblxc monitor left to ask, the
  freezer cgroup does).
- exec: liblxc's attach (namespaces, and the container's cgroup through its
  monitor) runs a payload of ctr's in the container, which takes the user,
  capabilities, environment and working directory exactly as the native
  backend's exec does, then execs.
- A failed exec makes start() return False with liblxc's reason in the log
  (`No such file or directory - Failed to exec "x"`): that becomes 127 or 126.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import platform
import re
import select
import selectors
import shlex
import shutil
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ctr import errors as _errors
from ctr.errors import BackendUnavailable, CommandNotExecutable, CommandNotFound, Conflict, CtrError, NotFound, Unsupported
from ctr.spec import ContainerSpec

from ctr.backends.base import BackendInfo, check_host_gateway, check_mount_sources, writes_cidfile
from ctr.process import ExecSpec, exit_status, resolve_process
from ctr.backends.kept import etcfiles
from ctr.native.cgroups.mounted import controller_version, mounted_hierarchies, v1_mount
from ctr.images.store import ImageStore
from ctr.backends.kept.base import MONITOR_EXIT_TIMEOUT, KeptBackend, wait_pid
from ctr.state.records import Record, RecordStore, process_start_time
from ctr.backends.kept.monitor_start import fork_clean, start_under_monitor

INSTALL_HINT = "the python lxc bindings are missing: apt-get install lxc lxc-dev && pip install 'ctr[lxc]'"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
CPU_PERIOD = 100_000  # microseconds, Docker's default CFS period
RESULT_FILE = "result.json"
OOM_FILE = "memory-events"  # what the stop hook copied from the memory cgroup
MONITOR_COMM = "[lxc monitor]"  # the liblxc monitor's name, and PID 1's until it execs
LXC_LOCK_DIR = Path("/run/lxc/lock")  # liblxc's per-container lock files (lxclock.c), for root

class LxcBackend(KeptBackend):
    name = "lxc"
    UNSUPPORTED_FLAGS = {"--network bridge": "there is no bridge for containers on this host; use --network none or host",
                         "--add-host NAME:host-gateway": "there is no bridge for containers on this host, so there is no host gateway: give the host's address"}

    @classmethod
    def probe(cls) -> BackendInfo:
        versions = {"kernel": platform.release()}
        try:
            import lxc
        except ImportError:
            return BackendInfo(cls.name, False, INSTALL_HINT, versions)
        versions["liblxc"] = lxc.version
        try:
            from importlib.metadata import version

            versions["python-lxc"] = version("lxc")
        except Exception:  # the bindings may come from a distribution package without metadata
            pass
        reason = cls._unusable_because()
        return BackendInfo(cls.name, not reason, reason, versions)

    @classmethod
    def ready(cls, paths=None) -> "LxcBackend":
        """As probe decides, without the versions: every lxc command comes here, and
        importing importlib.metadata (email with it) for python-lxc's would cost ~15 ms."""
        reason = cls._unusable_because()
        if reason:
            raise BackendUnavailable(f"backend {cls.name} is not usable: {reason}")
        return cls(paths)

    @staticmethod
    def _unusable_because() -> str:
        """Why liblxc cannot run ctr's containers here ("" when it can)."""
        try:
            import lxc
        except ImportError:
            return INSTALL_HINT

        if os.geteuid() != 0:
            return "the lxc backend runs privileged containers and needs root (run ctr as root)"
        if not _has_filesystem("overlay"):
            return "the kernel has no overlayfs: modprobe overlay"
        try:
            # A handle only: lxc_container_new creates nothing on disk.
            _error_num(lxc.Container("ctr-probe", "/nonexistent-ctr-lxcpath"))
        except CtrError as exc:
            return str(exc)
        return ""

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
        record.cgroup = _cgroup_names(record.id)[0]
        record.extra = {"lxcpath": str(self.lxcpath), "hostname": hostname, "layers": layers, "process": asdict(process),
                        "seccomp": security}
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
            user = _prepare_rootfs(name, layers, str(upper), str(work), str(rootfs), process.user, process.cwd, spec)
        finally:
            shutil.rmtree(rundir, ignore_errors=True)  # made again by each start
        env = list(process.env)
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user['home']}")
        lxcdir = self.lxcpath / name
        shutil.rmtree(lxcdir, ignore_errors=True)  # of an earlier container of this name, if ever left
        lxcdir.mkdir(parents=True, mode=0o700)
        seccomp_file = None
        if security["profile"] != "unconfined":
            seccomp_file = lxcdir / "seccomp"
            seccomp_file.write_text(lxc_seccomp(spec, security))
        devices_script = None
        if spec.privileged:
            from ctr.native.devices import host_devices

            devices_script = lxcdir / "devices"
            devices_script.write_text(lxc_devices_script(host_devices()))
        config = lxc_config(
            spec, record.id, hostname, layers, str(upper), str(rootfs), str(lxcdir / "lxc.log"),
            env, process.cwd, user, oom_file=str(rundir / OOM_FILE),
            seccomp_file=str(seccomp_file) if seccomp_file else None,
            devices_script=str(devices_script) if devices_script else None,
        )
        _save_config(name, self.lxcpath, config)
        record.extra["config"] = [list(item) for item in config]
        self.records.save(record)

    @staticmethod
    def _config(record: Record) -> list[tuple[str, str]]:
        return [(k, v) for k, v in record.extra["config"]]

    # -- running in the foreground: ctr waits for the liblxc monitor ----------------------------

    def run(self, spec: ContainerSpec) -> int:
        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        record = self.create(spec)
        rundir = self.paths.runtime / record.name
        remove = spec.auto_remove
        try:
            (rundir / "rootfs").mkdir(parents=True, exist_ok=True)
            args = tuple(record.extra["process"]["args"])
            code = self._run_monitor(spec, record, self._config(record), args, rundir)
            record.exit_code, record.oom_killed = code, _read_oom(rundir)
            record.status, record.finished, record.pid = "exited", time.time(), None
            return code
        except BaseException:
            remove = True  # a container that failed to run leaves nothing behind
            raise
        finally:
            self._end(record, remove)

    def _run_monitor(self, spec: ContainerSpec, record: Record, config: list[tuple[str, str]],
                     args: tuple[str, ...], rundir: Path) -> int:
        master = slave = slave_path = None
        terminal = contextlib.nullcontext()  # ctr's own terminal, raw while -i -t relays to it
        if spec.tty:
            import tty as stdlib_tty

            from ctr.native import tty

            if spec.stdin:
                terminal = tty.raw_terminal(0)
            master, slave = os.openpty()
            stdlib_tty.setraw(slave)  # liblxc's relay writes here; see _Supervisor._pump_output
            slave_path = os.ttyname(slave)
            size = tty.winsize(0) or tty.winsize(1)
            if size is not None:
                import fcntl
                import termios

                fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        parent = os.getpid()
        try:
            with _SignalRelay(spec.tty) as relay:
                pid = fork_clean()
                if pid == 0:
                    self._monitor_main(parent, spec, record, config, args, rundir, master, slave)
                if slave is not None:
                    os.close(slave)
                    slave = None
                supervisor = _Supervisor(self, pid, record, relay, master, spec.stdin, slave_path)
                try:
                    with terminal:
                        status = supervisor.run()
                except BaseException:
                    supervisor.abort()  # ctr cannot go on (a broken stdout...): end the container
                    raise
                finally:
                    supervisor.close()
        finally:
            for fd in (master, slave):
                if fd is not None:
                    os.close(fd)
        return self._outcome(record, rundir, status)

    def _monitor_main(self, parent: int, spec: ContainerSpec, record: Record, config: list[tuple[str, str]],
                      args: tuple[str, ...], rundir: Path, master: int | None, slave: int | None,
                      death_signal: int = signal.SIGTERM) -> None:
        """The liblxc monitor process; never returns. `death_signal` comes when `parent` dies:
        SIGTERM (liblxc passes it on to PID 1) under a foreground ctr, SIGKILL under ctr's
        own monitor, so that killing that one ends the container as on the native backend."""
        try:
            for sig in (*FORWARDED_SIGNALS, signal.SIGCHLD, signal.SIGWINCH):
                signal.signal(sig, signal.SIG_DFL)  # ctr's handlers and wakeup fd are not ours
            signal.set_wakeup_fd(-1)
            # What liblxc calls its monitor when it daemonizes; our cmdline stays ctr's (with the name).
            Path("/proc/self/comm").write_text(MONITOR_COMM)
            from ctr.native import syscalls as sc

            sc.prctl(sc.PR_SET_PDEATHSIG, death_signal)
            if os.getppid() != parent:
                os._exit(1)
            os.setsid()  # ctr forwards signals itself; terminal signals must not come twice
            if slave is not None:
                import fcntl
                import termios

                os.close(master)
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # liblxc relays the console to /dev/tty
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                os.close(slave)
            elif not spec.stdin:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
            result = _start_container(record.name, self.lxcpath, config, args)
        except BaseException as exc:  # report, never unwind into ctr's code in this process
            result = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            if os.getppid() == parent:
                _write_result(rundir / RESULT_FILE, result)
            else:  # ctr is gone: nobody else will clean up
                _leave_cgroups()
                ran = bool(result.get("started"))
                if ran:
                    record.exit_code = _exit_code(result["status"])
                    record.status, record.finished, record.pid = "exited", time.time(), None
                    record.oom_killed = _read_oom(rundir)
                self._end(record, spec.auto_remove or not ran)
        finally:
            os._exit(0)

    def _outcome(self, record: Record, rundir: Path, status: int) -> int:
        """The container's exit code from what the monitor reported, or the error it met."""
        name = record.name
        try:
            with open(rundir / RESULT_FILE) as f:
                result = json.load(f)
        except FileNotFoundError:
            how = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.waitstatus_to_exitcode(status)}"
            raise CtrError(f"the liblxc monitor of container {name} ended without a result ({how})") from None
        if "error" in result:
            raise CtrError(f"cannot run container {name} with liblxc: {result['error']}")
        if "config_error" in result:
            key, value, reason = result["config_error"]
            raise CtrError(f"liblxc refused {key} = {value} for container {name}" + (f": {reason}" if reason else ""))
        if not result["started"]:
            raise _start_error(name, result.get("log", []))
        return _exit_code(result["status"])

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
        import tty as stdlib_tty

        from ctr.native import syscalls as sc

        from ctr.state import logs

        name = record.name
        rundir = self.paths.runtime / name
        lxc_pid, reaped = None, False
        try:
            for sig in (signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # let go of ctr's terminal and pipes
                os.dup2(null, fd)
            os.close(null)
            _close_fds_except(report_w)  # whoever started ctr must not wait on our copies of its fds
            spec = ContainerSpec.from_dict(record.spec)
            shutil.rmtree(rundir, ignore_errors=True)
            (rundir / "rootfs").mkdir(parents=True)
            master = slave = slave_path = None
            ours: list[int] = []  # the monitor's ends
            theirs: list[int | None] = [None, None, None]  # the liblxc monitor's stdio
            if spec.tty:
                master, slave = os.openpty()
                stdlib_tty.setraw(slave)
                slave_path = os.ttyname(slave)
                outputs = {master: "stdout"}
            else:
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                outputs = {out_r: "stdout", err_r: "stderr"}
                ours += [out_r, err_r]
                theirs[1:] = [out_w, err_w]
                if spec.stdin:  # -d -i: stdin stays open (never written), as Docker keeps it for an attach
                    in_r, in_w = os.pipe()
                    ours.append(in_w)
                    theirs[0] = in_r
            me = os.getpid()
            lxc_pid = fork_clean()
            if lxc_pid == 0:
                os.close(report_w)
                for fd in ours:
                    os.close(fd)
                for target, fd in enumerate(theirs):
                    if fd is not None:
                        os.dup2(fd, target)
                        os.close(fd)
                self._monitor_main(me, spec, record, self._config(record), tuple(record.extra["process"]["args"]),
                                   rundir, master, slave, death_signal=signal.SIGKILL)
            for fd in [*theirs, slave]:
                if fd is not None:
                    os.close(fd)
            lxc_fd = sc.pidfd_open(lxc_pid)
            init = _await_exec(record.id, lxc_pid, lxc_fd)
            status = None
            if init is None:  # the liblxc monitor ended first: a start error, or a command already done
                _, status = os.waitpid(lxc_pid, 0)
                reaped = True
                self._outcome(record, rundir, status)  # raises the start error
            # liblxc set up its terminal before the exec, and restores it when it ends: ask now.
            onlcr = (_peer_adds_cr(slave_path) if init is not None else True) if spec.tty else None
            record.status, record.pid, record.started = "running", init, time.time()
            record.pid_start = process_start_time(init) if init else None
            record.exit_code, record.finished, record.oom_killed = None, None, False
            record.extra.update(monitor_pid=me, monitor_start=process_start_time(me),
                                lxc_monitor_pid=lxc_pid, lxc_monitor_start=process_start_time(lxc_pid))
            self.records.save(record)  # `ctr start` holds the lock for us
            with contextlib.suppress(BrokenPipeError):  # `ctr start` was killed: the container runs on
                os.write(report_w, b"ok")
            os.close(report_w)
            report_w = -1
            # Already reaped (the command was done before we saw it start): only drain the output.
            _keep_logs(lxc_fd if status is None else None, outputs, self.records.dir(name) / logs.LOG_FILE, onlcr)
            os.close(lxc_fd)
            if status is None:
                _, status = os.waitpid(lxc_pid, 0)
            try:
                code = self._outcome(record, rundir, status)
            except CtrError:
                code = None  # the liblxc monitor was killed: nobody knows how PID 1 ended
            self._finish(name, code, _read_oom(rundir))
        except BaseException as exc:
            if report_w >= 0:
                code = getattr(exc, "exit_code", 125)
                with contextlib.suppress(BrokenPipeError):
                    os.write(report_w, f"{code}:{exc}".encode())
                # Nothing of this attempt stays; the record is as it was before `ctr start`.
                self._abort_start(record, None if reaped else lxc_pid)
        finally:
            os._exit(0)

    def _abort_start(self, record: Record, lxc_pid: int | None) -> None:
        if lxc_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(lxc_pid, signal.SIGKILL)  # liblxc's death signal ends PID 1 with it
            with contextlib.suppress(ChildProcessError):
                os.waitpid(lxc_pid, 0)
        init = _find_init(record.id)
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
            record.status, record.exit_code, record.finished, record.oom_killed, record.pid = "exited", code, time.time(), oom, None
            if record.spec.get("auto_remove"):
                self._destroy(record)
            else:
                self.records.save(record)

    # -- state ---------------------------------------------------------------------------

    def list(self) -> list[Record]:
        return [self._refresh(r) for r in self.records.list() if r.backend == self.name]

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
                return _driver().open(record.cgroup).frozen()
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
            init = _find_init(record.id)
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
            _driver().open(record.cgroup).thaw()  # no liblxc monitor to do it

    # -- inside a running container ----------------------------------------------------------

    def exec(self, name: str, spec: ExecSpec) -> int:
        """liblxc attaches (namespaces, cgroup); ctr's payload becomes the process as the
        native backend's exec does: user resolved in the container, its capabilities, env, cwd."""
        from ctr.backends.native.backend import SignalForwarder, exec_identity

        if spec.tty and spec.stdin and not os.isatty(0):
            raise CtrError("the input device is not a TTY")
        record = self._running(name, "exec in")
        identity = exec_identity(record, spec, self.paths)  # liblxc attach loads no seccomp: _become does
        with SignalForwarder() as forwarder:
            pid, master = _attach(self._lxc(name), name, identity, self.lxcpath / name / "lxc.log")
            status = forwarder.follow(pid, master, spec.stdin)
        return exit_status(status)

    def pause(self, name: str) -> None:
        record = self._running(name, "pause")
        c = self._lxc(name)
        if not c.freeze():
            raise CtrError(f"cannot pause container {name}: liblxc could not freeze it" + _reason(record, self.lxcpath))

    def unpause(self, name: str) -> None:
        record = self.get(name)
        if record.status != "paused":
            raise Conflict(f"cannot unpause container {name}: it is not paused")
        if not self._lxc(name).unfreeze():
            raise CtrError(f"cannot unpause container {name}: liblxc could not thaw it" + _reason(record, self.lxcpath))

    def stats(self, name: str) -> dict:
        record = self.get(name)
        if record.status not in ("running", "paused"):
            raise Conflict(f"cannot read stats of container {name}: it is not running")
        return _driver().open(record.cgroup).stats()

    def inspect(self, name: str) -> dict:
        record = self.get(name)
        c = self._lxc(name)
        config_file = self.lxcpath / name / "config"
        running = record.status in ("running", "paused")
        return {
            "raw": {
                "lxcpath": str(self.lxcpath),
                "config_file": str(config_file),
                "config": _read_lxc_config(config_file),
                "state": c.state,
                "init_pid": c.init_pid if running else None,
                "record": asdict(record),
            },
            "rootfs": {"type": "overlay", "lower": record.extra.get("layers", []),
                       "upper": str(self.records.dir(name) / "upper")},
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
        for name in _cgroup_names(record.id):
            _remove_cgroup(name)
        shutil.rmtree(self.paths.runtime / record.name, ignore_errors=True)

    def _destroy(self, record: Record) -> None:
        """Every trace of the container: the above, its liblxc directory and lock file, its record."""
        self._teardown(record)
        shutil.rmtree(self.lxcpath / record.name, ignore_errors=True)
        with contextlib.suppress(OSError):
            (LXC_LOCK_DIR / str(self.lxcpath).lstrip("/") / f".{record.name}").unlink()
        self.records.remove(record.name)


# -- the liblxc configuration ------------------------------------------------------------


def lxc_config(spec: ContainerSpec, cid: str, hostname: str, layers: list[str], upper: str, rootfs_mount: str,
               log_file: str, env: list[str], cwd: str, user: dict, oom_file: str | None = None,
               seccomp_file: str | None = None, devices_script: str | None = None) -> list[tuple[str, str]]:
    """The liblxc config items for a spec, in the order they are set; layers bottom first.
    `user` is what _prepare_rootfs found: ids, home, resolved mount targets. With `oom_file`,
    a stop hook copies the memory cgroup's OOM counters there before liblxc removes it.
    `seccomp_file` is the container's profile in liblxc's own format (lxc_seccomp);
    `devices_script` makes the host's devices in its /dev (--privileged: lxc_devices_script)."""
    from ctr.native.caps import container_mask
    from ctr.native.caps import names as capnames
    from ctr.native.rootfs import MASKED_PATHS

    payload, monitor, pivot = _cgroup_names(cid)
    items: list[tuple[str, str]] = [
        ("lxc.log.level", "ERROR"),
        ("lxc.log.file", log_file),
        ("lxc.uts.name", hostname),
        # overlayfs lists the topmost lower layer first; liblxc takes the last ":/" part as upper.
        ("lxc.rootfs.path", "overlay:" + ":".join([*reversed(layers), upper])),
        ("lxc.rootfs.mount", rootfs_mount),
    ]
    if spec.read_only:
        items.append(("lxc.rootfs.options", "ro"))
    items += [
        # :force mounts the container's cgroups even when it keeps CAP_SYS_ADMIN.
        # --privileged: /proc, /sys and the cgroups writable, as Docker leaves them then.
        ("lxc.mount.auto", "proc:rw sys:rw cgroup:rw:force" if spec.privileged else "proc:mixed sys:ro cgroup:ro:force"),
        ("lxc.autodev", "1"),
        ("lxc.pty.max", "1024"),  # a devpts of its own, as Docker's /dev/pts
        ("lxc.tty.max", "0"),
        ("lxc.mount.entry", "shm dev/shm tmpfs rw,nosuid,nodev,noexec,mode=1777,size=65536k,create=dir 0 0"),
        ("lxc.mount.entry", "mqueue dev/mqueue mqueue rw,nosuid,nodev,noexec,create=dir 0 0"),
    ]
    # Hooks are shell commands; version 1: no arguments appended, the LXC_* variables in the environment.
    hooks: list[tuple[str, str]] = []
    mount = shutil.which("mount")
    if mount and not spec.privileged:
        # liblxc leaves the tmpfs under the cgroup mounts writable; Docker's is not. A mount
        # hook runs in the container's mount namespace after liblxc mounted the cgroups. No
        # config item can do it: every lxc.mount.auto cgroup mode mounts that tmpfs writable
        # (liblxc 5.0), lxc.mount.entry lines are applied before it, and a "remount" entry
        # first mounts a new filesystem over the target.
        hooks.append(("lxc.hook.mount", f'{shlex.quote(mount)} -o remount,ro,nosuid,nodev,noexec "$LXC_ROOTFS_MOUNT/sys/fs/cgroup"'))
        # Docker's read-only /proc paths: proc:mixed makes /proc/sys and /proc/sysrq-trigger
        # read-only, but not these; no mount entry can name the container's own /proc as a
        # source, and this hook runs after liblxc's proc mount.
        for path in ("/proc/bus", "/proc/fs", "/proc/irq"):
            if Path(path).exists():  # as the masked paths: what this kernel's /proc has
                target = f'"$LXC_ROOTFS_MOUNT{path}"'
                hooks.append(("lxc.hook.mount", f"{shlex.quote(mount)} --bind {target} {target}"))
                hooks.append(("lxc.hook.mount", f"{shlex.quote(mount)} -o remount,bind,ro,nosuid,nodev,noexec {target}"))
    if devices_script:
        # Docker's privileged /dev: the host's device nodes beside liblxc's own. The autodev
        # hook runs in the container's mount namespace once liblxc has populated its /dev.
        # A script file, as liblxc 5.0 runs only the first statement of a hook's command line.
        hooks.append(("lxc.hook.autodev", f"/bin/sh {shlex.quote(devices_script)}"))
    events = _memory_events_file(payload)
    cat = shutil.which("cat")
    if oom_file and events and cat:
        # liblxc runs the stop hook on the host once PID 1 has ended, before it removes the
        # cgroups: the one moment the OOM kill count of a finished container can be read.
        # Always, not only with --memory: the kernel counts a host-wide OOM kill in the
        # container's memory cgroup too, and the native backend reports that as well.
        hooks.append(("lxc.hook.stop", f"{shlex.quote(cat)} {shlex.quote(str(events))} > {shlex.quote(oom_file)} 2>/dev/null || true"))
    if hooks:
        items += [("lxc.hook.version", "1"), *hooks]
    for m, target in zip(spec.mounts, user["targets"]):
        opts = "rbind" + (",ro" if m.read_only else "")
        items.append(("lxc.mount.entry", f"{_fstab(m.source)} {_fstab(target.lstrip('/'))} none {opts} 0 0"))
    for path in () if spec.privileged else MASKED_PATHS:  # Docker's; optional, as not every kernel has each
        host = Path(path)
        if host.is_dir():
            items.append(("lxc.mount.entry", f"tmpfs {path.lstrip('/')} tmpfs ro,optional 0 0"))
        elif host.exists():
            items.append(("lxc.mount.entry", f"/dev/null {path.lstrip('/')} none bind,optional 0 0"))
    if not spec.tty:
        items.append(("lxc.console.path", "none"))  # PID 1 gets the monitor's stdio as it is
    # liblxc would keep only what its bounding set holds anyway; say so in the config.
    caps = [c.removeprefix("CAP_").lower() for c in capnames(container_mask(spec))]
    items += [
        ("lxc.cap.keep", " ".join(caps) or "none"),
        ("lxc.no_new_privs", "1" if spec.no_new_privs() else "0"),
    ]
    if seccomp_file:
        items.append(("lxc.seccomp.profile", seccomp_file))
    if spec.network == "host":
        items.append(("lxc.net.0.type", "none"))  # no new network namespace
    else:
        items += [("lxc.net.0.type", "empty"), ("lxc.net.0.flags", "up")]  # lo only, and up
    items += [
        ("lxc.cgroup.dir.container", payload),
        ("lxc.cgroup.dir.monitor", monitor),
        ("lxc.cgroup.dir.monitor.pivot", pivot),
    ]
    items += _cgroup_items(spec)
    items += [("lxc.environment", e) for e in env]
    items += [
        ("lxc.init.cwd", cwd),
        ("lxc.init.uid", str(user["uid"])),
        ("lxc.init.gid", str(user["gid"])),
    ]
    if user["groups"]:
        items.append(("lxc.init.groups", ",".join(str(g) for g in user["groups"])))
    return items


def lxc_devices_script(devices) -> str:
    """A shell script that makes `devices` (ctr.native.devices.host_devices) in the container's
    /dev with the host's number, mode and owner, as runc does for a privileged container;
    a node liblxc made already stays."""
    lines = ['dev="$LXC_ROOTFS_MOUNT/dev"']
    for d in devices:
        path = shlex.quote(d.path)
        if "/" in d.path:
            lines.append(f'mkdir -p "$dev"/{shlex.quote(d.path.rsplit("/", 1)[0])}')
        lines.append(f'[ -e "$dev"/{path} ] || {{ mknod -m {d.mode:o} "$dev"/{path} {d.type} {d.major} {d.minor}'
                     f' && chown {d.uid}:{d.gid} "$dev"/{path}; }} || exit 1')
    return "\n".join(lines) + "\n"


def lxc_seccomp(spec: ContainerSpec, security: dict) -> str:
    """The container's seccomp profile (Docker's JSON, resolved for its caps by ctr.native.seccomp
    exactly as the native backend resolves it) in liblxc's version 2 format, which liblxc
    compiles with the same libseccomp and loads in PID 1 before it execs the command.

    Why liblxc's own config and not ctr installing the filter: PID 1 is exec'd by liblxc,
    not by ctr, and a filter installed in liblxc's monitor would bind liblxc's own set-up
    (clone with namespace flags, mount, pivot_root) as well. The format says the same:
    "allowlist errno N" is the default action, a line per syscall and action, argument
    conditions as [index,value,op] or, for SCMP_CMP_MASKED_EQ, [index,datum,op,mask]
    (JSON: value is the mask, valueTwo the datum). On x86_64 liblxc adds every rule to
    x86_64, x86 and x32, so the few rules a profile confines to some architectures
    (arch_prctl, modify_ldt) reach the 32-bit ABIs too; the x86_64 ABI is exactly the native one."""
    from ctr.native import seccomp

    from ctr.security import profile_text

    flt = seccomp.parse(profile_text(security), security["profile"]).resolve(spec.capabilities())
    ops = {v: k for k, v in seccomp.OPERATORS.items()}

    def action(a: int) -> str:
        kind, data = a & 0xFFFF0000, a & 0xFFFF
        if a == seccomp.SCMP_ACT_ALLOW:
            return "allow"
        if kind == seccomp.SCMP_ACT_ERRNO:
            return f"errno {data}"
        if a in (seccomp.SCMP_ACT_KILL_THREAD, seccomp.SCMP_ACT_KILL_PROCESS):
            return "kill"
        if a == seccomp.SCMP_ACT_TRAP:
            return "trap"
        raise Unsupported("lxc", "--security-opt seccomp=" + security["profile"], "liblxc's profiles know no SCMP_ACT_LOG or SCMP_ACT_TRACE")

    def cond(index: int, op: int, value: int, value2: int) -> str:
        if ops[op] == "SCMP_CMP_MASKED_EQ":
            return f"[{index},{value2},{ops[op]},{value}]"
        return f"[{index},{value},{ops[op]}]"

    lines = ["2", f"allowlist {action(flt.default_action)}", "[all]"]
    for rule in flt.rules:
        indexes = [a[0] for a in rule.args]
        groups = [rule.args] if len(set(indexes)) == len(indexes) else [(a,) for a in rule.args]
        for name in rule.names:
            for group in groups:
                lines.append(f"{name} {action(rule.action)}" + (" " + "".join(cond(*a) for a in group) if group else ""))
    return "\n".join(lines) + "\n"


def _cgroup_items(spec: ContainerSpec) -> list[tuple[str, str]]:
    """Limits and device rules, as v1 (lxc.cgroup.*) or v2 (lxc.cgroup2.*) keys per controller."""
    items: list[tuple[str, str]] = []

    def key(controller: str, name: str) -> str:
        return f"lxc.cgroup.{name}" if controller_version(controller) == 1 else f"lxc.cgroup2.{name}"

    if spec.memory is not None:
        if controller_version("memory") == 1:
            items.append(("lxc.cgroup.memory.limit_in_bytes", str(spec.memory)))
            if (v1_mount("memory") / "memory.memsw.limit_in_bytes").exists():
                # Docker's default --memory-swap: as much swap again as memory.
                items.append(("lxc.cgroup.memory.memsw.limit_in_bytes", str(2 * spec.memory)))
        else:
            items += [("lxc.cgroup2.memory.max", str(spec.memory)), ("lxc.cgroup2.memory.swap.max", str(spec.memory))]
    if spec.cpus is not None:
        quota = round(spec.cpus * CPU_PERIOD)
        if controller_version("cpu") == 1:
            items += [("lxc.cgroup.cpu.cfs_period_us", str(CPU_PERIOD)), ("lxc.cgroup.cpu.cfs_quota_us", str(quota))]
        else:
            items.append(("lxc.cgroup2.cpu.max", f"{quota} {CPU_PERIOD}"))
    if spec.pids_limit is not None:
        items.append((key("pids", "pids.max"), "max" if spec.pids_limit == -1 else str(spec.pids_limit)))
    # The device policy every backend shares (Docker's default); on cgroup2 liblxc compiles
    # the same keys into a BPF device program.
    from ctr.native.devices import container_policy, v1_writes

    prefix = "lxc.cgroup" if controller_version("devices") == 1 else "lxc.cgroup2"
    items += [(f"{prefix}.{filename}", rule) for filename, rule in v1_writes(container_policy(spec.privileged))]
    return items


def _fstab(path: str) -> str:
    """A path as an fstab field: liblxc reads mount entries with getmntent, which decodes these."""
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


# -- inside the monitor ------------------------------------------------------------------


def _start_container(name: str, lxcpath: Path, config: list[tuple[str, str]], args: tuple[str, ...]) -> dict:
    """Configure and start the container with liblxc; returns what ctr needs to know."""
    import lxc

    log_file = dict(config).get("lxc.log.file", "")
    if log_file:
        with open(log_file, "w"):
            pass  # this start's errors only: the reason for a failure is looked up there
    c = lxc.Container(name, str(lxcpath))
    c.clear_config()  # the config `create` saved was loaded: set it afresh from ctr's record
    for k, v in config:
        # append_config_item is the binding's plain set_config_item; the wrapper's
        # set_config_item clears list keys first and rejects values it reads back
        # differently (every "overlay:" rootfs, every multi-capability keep list).
        if not c.append_config_item(k, v):
            reasons = _log_errors(log_file)
            return {"config_error": [k, v, reasons[-1] if reasons else ""]}
    c.save_config()  # so lxc-ls/lxc-info -P <lxcpath> see it while it runs; start() uses the loaded config
    started = bool(c.start(useinit=False, daemonize=False, close_fds=True, cmd=tuple(args)))
    return {"started": started, "status": _error_num(c), "log": [] if started else _log_errors(log_file)}


def _write_result(path: Path, result: dict) -> None:
    """The liblxc monitor's report, renamed into place whole. Not fsync'd as records are
    (write_json_atomic): ctr reads it as soon as the monitor has exited, and it lives only
    in the runtime directory of this run."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def _save_config(name: str, lxcpath: Path, config: list[tuple[str, str]]) -> None:
    """Write the container's liblxc config to <lxcpath>/<name>/config, liblxc checking each item."""
    import lxc

    c = lxc.Container(name, str(lxcpath))
    log_file = dict(config).get("lxc.log.file", "")
    for k, v in config:
        if not c.append_config_item(k, v):  # see _start_container for why not set_config_item
            reasons = _log_errors(log_file)
            raise CtrError(f"liblxc refused {k} = {v} for container {name}" + (f": {reasons[-1]}" if reasons else ""))
    if not c.save_config():
        raise CtrError(f"cannot save the liblxc config of container {name} in {lxcpath / name}")


def _read_lxc_config(path: Path) -> dict[str, str | list[str]]:
    """A liblxc config file as key -> value (a list for keys given more than once)."""
    out: dict[str, str | list[str]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or line.lstrip().startswith("#"):
            continue
        key, value = key.strip(), value.strip()
        if key not in out:
            out[key] = value
        elif isinstance(out[key], list):
            out[key].append(value)
        else:
            out[key] = [out[key], value]
    return out


def _error_num(container) -> int:
    """PID 1's exit status, from `struct lxc_container.error_num` (lxc/lxccontainer.h).

    The bindings' Container object is PyObject_HEAD followed by the
    `struct lxc_container *`. Before trusting the layout, the struct's name and
    config_path must match what the bindings report.
    """
    import _lxc

    class _Struct(ctypes.Structure):
        _fields_ = [
            ("name", ctypes.c_char_p), ("configfile", ctypes.c_char_p), ("pidfile", ctypes.c_char_p),
            ("slock", ctypes.c_void_p), ("privlock", ctypes.c_void_p), ("numthreads", ctypes.c_int),
            ("lxc_conf", ctypes.c_void_p), ("error_string", ctypes.c_char_p), ("error_num", ctypes.c_int),
            ("daemonize", ctypes.c_bool), ("config_path", ctypes.c_char_p),
        ]

    layout_ok = isinstance(container, _lxc.Container) and _lxc.Container.__basicsize__ == object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
    if layout_ok:
        address = ctypes.c_void_p.from_address(id(container) + object.__basicsize__).value
        s = _Struct.from_address(address) if address else None
        if s is not None and s.name == container.name.encode() and s.config_path == container.get_config_path().encode():
            return s.error_num
    raise CtrError("cannot read container exit codes from these python lxc bindings: their object layout is not the one of python3-lxc 3.x/5.x")


def _log_errors(log_file: str) -> list[str]:
    """liblxc's ERROR lines, without the timestamp and source location."""
    try:
        lines = Path(log_file).read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        # lxc <name> <time> ERROR    <module> - <file>:<func>:<line> - <message>
        m = re.match(r"\S+ \S* ?\d+\.\d+ ERROR\s+\S+ - \S+ - (.*)", line)
        if m:
            out.append(m.group(1))
    return out


def _start_error(name: str, log: list[str]) -> CtrError:
    """start() said False. liblxc logs the cause first and its consequences after
    ("Failed to spawn container"), so the first error line is the reason."""
    for line in log:
        m = re.match(r"(.*) - Failed to exec \"(.*)\"$", line)
        if m:
            reason, cmd = m.groups()
            if reason == os.strerror(errno.ENOENT):
                if "/" in cmd:
                    return CommandNotFound(f'exec "{cmd}": no such file or directory')
                return CommandNotFound(f'exec "{cmd}": executable file not found in $PATH')
            return CommandNotExecutable(f'exec "{cmd}": {reason.lower()}')
    if log:
        return CtrError(f"cannot start container {name}: {log[0]}")
    return CtrError(f"cannot start container {name}: liblxc gave no reason")


def _exit_code(status: int) -> int:
    """liblxc's status -> Docker's exit code. liblxc 5 stores exits as code<<8 and
    deaths by signal as sig<<8|0x7f; a plain wait status is understood too."""
    if status & 0x7F == 0x7F:
        return 128 + ((status >> 8) & 0x7F)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return (status >> 8) & 0xFF


# -- the rootfs, prepared before liblxc mounts it ----------------------------------------


def _prepare_rootfs(name: str, layers: list[str], upper: str, work: str, mountpoint: str, user: str, cwd: str,
                    spec: ContainerSpec) -> dict:
    """Resolve the user in the image's /etc and create the working directory and the
    mount targets in the writable layer, as Docker does before it makes a root read-only.
    Returns uid, gid, groups, home and the mount targets with symlinks resolved.

    A child mounts the overlay in a mount namespace of its own and chroots into it, so
    symlinks resolve as in the container and the mount dies with the child. The mount is
    volatile: unmounting a plain overlay syncs the whole filesystem under the writable layer,
    which takes 1 ms on an idle disk and up to ~150 ms on a busy one, and nothing is owed
    that sync here (liblxc's own mount of the layer is not volatile).
    """
    from ctr.native import syscalls as sc  # before the fork: the liblxc monitor needs it too

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out: dict
        try:
            os.close(r)
            targets = [(m.target, os.path.isdir(m.source)) for m in spec.mounts]  # before the chroot
            from ctr.native.users import resolve_user

            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            options = f"lowerdir={':'.join(reversed(layers))},upperdir={upper},workdir={work}"
            try:
                sc.mount("overlay", mountpoint, "overlay", 0, options + ",volatile")
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                sc.mount("overlay", mountpoint, "overlay", 0, options)  # Linux before 5.10
            os.chroot(mountpoint)
            os.chdir("/")
            os.umask(0o022)
            u = resolve_user(user, "/etc", spec.group_add)
            for d in ("/dev", "/proc", "/sys", cwd):
                os.makedirs(d, exist_ok=True)
            resolved = []
            for target, is_dir in targets:
                if is_dir:
                    os.makedirs(target, exist_ok=True)
                elif not os.path.lexists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                # Symlinks resolved as the container sees them (chrooted: ".." stops at its root),
                # as runc's securejoin does; liblxc itself refuses to mount through one.
                resolved.append(os.path.realpath(target))
            out = {"uid": u.uid, "gid": u.gid, "groups": list(u.groups), "home": u.home, "targets": resolved}
        except CtrError as exc:
            out = {"error": str(exc), "kind": type(exc).__name__}
        except OSError as exc:
            out = {"error": f"cannot prepare the root filesystem of container {name}: {exc.strerror}" + (f": {exc.filename}" if exc.filename else ""), "kind": "CtrError"}
        except BaseException as exc:
            out = {"error": f"cannot prepare the root filesystem of container {name}: {type(exc).__name__}: {exc}", "kind": "CtrError"}
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    # A volatile mount leaves work/work/incompat/volatile behind, and overlayfs refuses to
    # mount a layer that has it: the mount is gone with the child, so the mark may go too.
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(Path(work, "work", "incompat"))
    out = json.loads(data) if data else {"error": f"cannot prepare the root filesystem of container {name}: the helper died", "kind": "CtrError"}
    if "error" in out:
        raise getattr(_errors, out["kind"], CtrError)(out["error"])
    return out


# -- cgroups -----------------------------------------------------------------------------


def _cgroup_names(cid: str) -> tuple[str, str, str]:
    """Payload, monitor and monitor-pivot cgroups of a container, at each hierarchy's root."""
    base = f"ctr-lxc-{cid}"
    return base, f"{base}.monitor", f"{base}.pivot"


def _memory_events_file(payload: str) -> Path | None:
    """Where the kernel counts OOM kills of cgroup `payload`: memory.oom_control (v1), memory.events (v2)."""
    version = controller_version("memory")
    if version == 1:
        return v1_mount("memory") / payload / "memory.oom_control"
    if version == 2:
        unified = next(h.mountpoint for h in mounted_hierarchies() if h.version == 2)
        return unified / payload / "memory.events"
    return None


def _read_oom(rundir: Path) -> bool:
    """Whether the stop hook's copy of the memory cgroup's counters shows an OOM kill."""
    try:
        text = (rundir / OOM_FILE).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value) > 0
    return False


@functools.lru_cache(maxsize=1)
def _driver():
    """ctr's cgroup driver, for reading and freezing the payload cgroup by name (stats, and the
    freezer when no liblxc monitor is left to ask)."""
    from ctr.native.cgroups import cgroup_driver

    return cgroup_driver()


def _remove_cgroup(name: str) -> None:
    """rmdir a cgroup and its children in every hierarchy; waits briefly for dying tasks."""
    for h in mounted_hierarchies():
        top = h.mountpoint / name
        if not top.is_dir():
            continue
        deadline = time.monotonic() + 5
        while True:
            try:
                for dirpath, _dirs, _files in os.walk(top, topdown=False):
                    os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    break  # left for the caller's check to report
                time.sleep(0.05)


def _leave_cgroups() -> None:
    """Move this process back to each hierarchy's root, out of the pivot cgroup it is in."""
    for h in mounted_hierarchies():
        try:
            (h.mountpoint / "cgroup.procs").write_text("0")
        except OSError:
            pass


def _find_init(cid: str) -> int | None:
    """The host pid of the container's PID 1: the task in its payload cgroup whose innermost pid is 1."""
    payload = _cgroup_names(cid)[0]
    for h in mounted_hierarchies():
        procs = h.mountpoint / payload / "cgroup.procs"
        try:
            pids = procs.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                        return int(pid)
            except OSError:
                continue
        return None
    return None


# -- ctr's side while the container runs -------------------------------------------------


class _SignalRelay:
    """Signals ctr receives, collected for the supervisor loop and woken through a pipe.

    Python runs signal handlers in the main thread only; elsewhere nothing is
    installed and the supervisor polls.
    """

    def __init__(self, tty: bool) -> None:
        self.signals = FORWARDED_SIGNALS + (signal.SIGCHLD,) + ((signal.SIGWINCH,) if tty else ())
        self.pending: list[int] = []
        self.previous: dict = {}
        self.wakeup: int | None = None
        self.active = threading.current_thread() is threading.main_thread()
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1

    def __enter__(self) -> "_SignalRelay":
        if self.active:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._pipe = (r, w)
            self.wakeup = r
            self._old_wakeup = signal.set_wakeup_fd(w)
            for sig in self.signals:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self._pipe:
            signal.set_wakeup_fd(self._old_wakeup)
            for fd in self._pipe:
                os.close(fd)

    def _handle(self, signum: int, _frame) -> None:
        self.pending.append(signum)

    def take(self) -> list[int]:
        if self.wakeup is not None:
            try:
                while os.read(self.wakeup, 512):
                    pass
            except BlockingIOError:
                pass
        out, self.pending = self.pending, []  # a handler running meanwhile appends to one of them
        return out


class _Supervisor:
    """Wait for the monitor; meanwhile relay signals to PID 1 and, with -t, the terminal."""

    def __init__(self, backend: LxcBackend, monitor: int, record: Record, relay: _SignalRelay,
                 master: int | None, forward_stdin: bool, slave_path: str | None = None) -> None:
        self.backend = backend
        self.monitor = monitor
        self.record = record
        self.relay = relay
        self.master = master
        self.slave_path = slave_path
        self.stdin_open = forward_stdin and master is not None
        self.to_container = bytearray()  # input read from ctr's stdin, not yet taken by the pty
        self.onlcr: bool | None = None  # decided on the first output
        self.carry = b""
        self.init_fd: int | None = None
        self.init_pid: int | None = None
        self.held: list[int] = []
        self.status: int | None = None
        if master is not None:
            os.set_blocking(master, False)

    def run(self) -> int:
        """Until the monitor has ended and, with -t, its terminal has been drained."""
        sel = selectors.DefaultSelector()
        if self.relay.wakeup is not None:
            sel.register(self.relay.wakeup, selectors.EVENT_READ)
        terminal_open = self.master is not None
        try:
            while self.status is None or terminal_open:
                self._watch(sel, self.master, (selectors.EVENT_READ | (selectors.EVENT_WRITE if self.to_container else 0)) if terminal_open else 0)
                self._watch(sel, 0, selectors.EVENT_READ if self.stdin_open and not self.to_container else 0)
                if self.status is not None:
                    timeout = 0.2  # the monitor is gone: what is left in the pty is there now
                elif self.init_fd is None or not self.relay.active:
                    timeout = 0.05  # looking for PID 1, or no SIGCHLD to wake us
                else:
                    timeout = None
                events = sel.select(timeout)
                for key, mask in events:
                    if key.fd == self.master:
                        if mask & selectors.EVENT_WRITE:
                            self._flush_input()
                        if mask & selectors.EVENT_READ and not self._pump_output():
                            terminal_open = False
                    elif key.fd == 0:
                        self._pump_input()
                if self.status is not None and terminal_open and not events:
                    terminal_open = False
                    _write_all(1, self.carry)
                self._signals()
                self._reap()
                if self.init_fd is None and self.status is None:
                    self._look_for_init()
        finally:
            sel.close()
        return self.status

    @staticmethod
    def _watch(sel: selectors.BaseSelector, fd: int | None, events: int) -> None:
        if fd is None:
            return
        current = sel.get_map().get(fd)
        if not events:
            if current is not None:
                sel.unregister(fd)
        elif current is None:
            sel.register(fd, events)
        elif current.events != events:
            sel.modify(fd, events)

    def abort(self) -> None:
        """Kill PID 1 (or, before it exists, the monitor, whose death liblxc turns into
        SIGKILL for PID 1) and wait for the monitor, so cleanup finds nothing running."""
        try:
            if self.init_fd is not None:
                signal.pidfd_send_signal(self.init_fd, signal.SIGKILL)
            elif self.status is None:
                os.kill(self.monitor, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.status is None:
            try:
                os.waitpid(self.monitor, 0)
            except ChildProcessError:
                pass

    def close(self) -> None:
        if self.init_fd is not None:
            os.close(self.init_fd)
            self.init_fd = None

    def _signals(self) -> None:
        for sig in self.relay.take():
            if sig == signal.SIGCHLD:
                continue  # _reap looks
            if sig == signal.SIGWINCH:
                if self.master is not None:
                    from ctr.native import tty

                    tty.copy_winsize(0 if os.isatty(0) else 1, self.master)
            elif self.init_fd is None:
                self.held.append(sig)  # delivered as soon as PID 1 exists
            else:
                self._send(sig)

    def _look_for_init(self) -> None:
        from ctr.native import syscalls as sc

        pid = _find_init(self.record.id)
        if pid is None:
            return
        try:
            fd = sc.pidfd_open(pid)
        except OSError:
            return
        # Still in the payload cgroup once the pidfd is held: it is PID 1, not a reused pid.
        if _find_init(self.record.id) != pid:
            os.close(fd)
            return
        self.init_fd, self.init_pid = fd, pid
        self.backend._started(self.record, pid, self.monitor)
        for sig in self.held:
            self._send(sig)
        self.held.clear()

    def _send(self, sig: int) -> None:
        try:
            signal.pidfd_send_signal(self.init_fd, sig)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        if self.status is not None:
            return
        pid, status = os.waitpid(self.monitor, os.WNOHANG)
        if pid == self.monitor:
            self.status = status

    def _pump_output(self) -> bool:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the monitor closed the terminal
                raise
            data = b""
        if not data:
            _write_all(1, self.carry)
            return False
        if self.onlcr is None:
            self.onlcr = self._peer_adds_cr()
        if self.onlcr:
            # liblxc sets OPOST|ONLCR on its terminal peer (lxc_setup_tios), so our pty turns
            # every "\n" the container's own pty sent into "\r\n": undo exactly that.
            data = (self.carry + data).replace(b"\r\n", b"\n")
            data, self.carry = (data[:-1], b"\r") if data.endswith(b"\r") else (data, b"")
        _write_all(1, data)
        return True

    def _peer_adds_cr(self) -> bool:
        return _peer_adds_cr(self.slave_path)

    def _pump_input(self) -> None:
        data = os.read(0, 65536)
        if not data:
            self.stdin_open = False
            data = b"\x04"  # EOF on ctr's stdin: ^D to the container
        elif self.init_pid is not None and re.search(rb"[\x00-\x1f\x7f]", data):
            self._terminal_signals(data)
        self.to_container += data
        self._flush_input()

    def _flush_input(self) -> None:
        try:
            while self.to_container:
                del self.to_container[: os.write(self.master, self.to_container)]
        except BlockingIOError:
            pass  # the container is not reading: wait until the pty takes more
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self.to_container.clear()  # the terminal is gone

    def _terminal_signals(self, data: bytes) -> None:
        """Do what the container's pty would do with ^C, ^\\ and ^Z if it were PID 1's
        controlling terminal: liblxc makes PID 1 a session leader on it (setsid) but never
        makes it the controlling terminal (no TIOCSCTTY), so the kernel signals no one."""
        import termios

        try:
            fd = os.open(f"/proc/{self.init_pid}/root/dev/console", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                attrs = termios.tcgetattr(fd)
            finally:
                os.close(fd)
        except (OSError, termios.error):
            return
        lflag, cc = attrs[3], attrs[6]
        if not lflag & termios.ISIG:
            return
        for index, sig in ((termios.VINTR, signal.SIGINT), (termios.VQUIT, signal.SIGQUIT), (termios.VSUSP, signal.SIGTSTP)):
            char = cc[index]
            if isinstance(char, bytes) and char != b"\x00" and char in data:
                try:
                    os.killpg(self.init_pid, sig)  # PID 1's group: the foreground without job control
                except ProcessLookupError:
                    pass


def _peer_adds_cr(slave_path: str | None) -> bool:
    """Whether liblxc left output processing with ONLCR on the pty ctr gave it."""
    import termios

    try:
        fd = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, TypeError):
        return True  # liblxc 4 and 5 always set it
    try:
        oflag = termios.tcgetattr(fd)[1]
    finally:
        os.close(fd)
    return bool(oflag & termios.OPOST and oflag & termios.ONLCR)


# -- ctr's monitor of a detached container -----------------------------------------------


def _exe_id(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _has_exec(pid: int, monitor_exe: tuple[int, int] | None) -> bool:
    """Whether `pid`, a clone of the liblxc monitor, has exec'd: execve replaces its binary
    (first) and its name; either tells, the name also when the command is the same file."""
    exe = _exe_id(pid)
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().rstrip("\n")
    except OSError:
        return False
    return (exe is not None and exe != monitor_exe) or comm != MONITOR_COMM


def _await_exec(cid: str, lxc_pid: int, lxc_fd: int) -> int | None:
    """PID 1 once it has exec'd the command, or None when the liblxc monitor ended first.

    Until the exec, PID 1 is a clone of the liblxc monitor, with its binary and name; a
    command that cannot be exec'd never gets that far (start() then fails). Polled, briefly:
    liblxc tells nobody else when it has exec'd.
    """
    monitor_exe = _exe_id(lxc_pid)
    while not select.select([lxc_fd], [], [], 0.01)[0]:
        pid = _find_init(cid)
        if pid is not None and _has_exec(pid, monitor_exe):
            return pid
    return None


class _UndoOnlcr:
    """liblxc sets OPOST|ONLCR on the terminal it relays the console to, so a pty between it
    and ctr turns the container's "\\r\\n" into "\\r\\r\\n": undo exactly that (as _Supervisor)."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.carry = b""

    def __call__(self, data: bytes) -> bytes:
        if not self.active:
            return data
        data = (self.carry + data).replace(b"\r\n", b"\n")
        data, self.carry = (data[:-1], b"\r") if data.endswith(b"\r") else (data, b"")
        return data

    def flush(self) -> bytes:
        out, self.carry = self.carry, b""
        return out


def _keep_logs(lxc_fd: int | None, outputs: dict[int, str], log_path: Path, onlcr: bool | None) -> None:
    """Copy each fd in `outputs` (fd -> "stdout"/"stderr") to the json-file log until the
    liblxc monitor (the last holder of the container's stdio besides PID 1's own processes)
    has ended and everything written before is in the log. Sleeps in the kernel throughout.
    `onlcr`: None for pipes, else whether liblxc's relay adds "\\r" (see _UndoOnlcr)."""
    from ctr.state import logs

    sel = selectors.DefaultSelector()
    if lxc_fd is not None:
        sel.register(lxc_fd, selectors.EVENT_READ)
    undo = {fd: _UndoOnlcr(onlcr) for fd in outputs} if onlcr is not None else {}
    for fd in outputs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def copy(fd: int) -> bool | None:
        """True: copied a chunk; None: nothing to read now; False: no writer is left."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a terminal whose every slave fd is closed
                raise
            data = b""
        if not data:
            return False
        if fd in undo:
            data = undo[fd](data)
        if data:
            os.write(log, logs.encode(outputs[fd], data))
        return True

    open_fds = set(outputs)
    try:
        ended = lxc_fd is None
        while not ended:
            for key, _ in sel.select():
                if key.fd == lxc_fd:
                    ended = True
                elif key.fd in open_fds and copy(key.fd) is False:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
        for fd in open_fds:  # what was written just before the end
            while copy(fd) is True:
                pass
        for fd, u in undo.items():
            rest = u.flush()
            if rest:
                os.write(log, logs.encode(outputs[fd], rest))
    finally:
        sel.close()
        os.close(log)
        for fd in outputs:
            os.close(fd)


def _close_fds_except(*keep: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own fd


# -- exec: liblxc attaches, ctr's payload becomes the process -------------------------------


def _attach(container, name: str, identity, log_file: Path) -> tuple[int, int | None]:
    """Start identity's process in the container; returns its pid (a child of ours) and,
    with a terminal, the pty master. Errors before the exec come back as CtrError, 126, 127."""
    import socket

    import lxc

    from ctr.native import process as native_process
    from ctr.native import syscalls as sc

    err_r, err_w = os.pipe2(os.O_CLOEXEC)  # closed by the exec: EOF means it ran
    tty_parent, tty_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if identity.tty else (None, None)

    def payload(_arg) -> int:
        # In the container's namespaces, root and cgroup, as root with every capability
        # still: the rest is the native runtime's own (_become), so that exec is the same.
        # Everything used here is imported already: the host's modules are out of reach now.
        code = 125
        try:
            try:
                for sig in FORWARDED_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)  # ctr's forwarding handlers are not ours
                os.close(err_r)
                if tty_parent is not None:
                    tty_parent.close()
                sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)  # as the native exec: gone with ctr
                native_process._become(identity, tty_child)
            except native_process._StartError as exc:
                code, message = exc.code, str(exc)
            except CtrError as exc:
                code, message = exc.exit_code, str(exc)
            except OSError as exc:
                message = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
            except BaseException as exc:
                message = f"{type(exc).__name__}: {exc}"
            os.write(err_w, f"{code}:{message}".encode())
        finally:
            os._exit(code)

    try:
        # No DROP_CAPABILITIES, no uid from liblxc: _become drops the bounding set and
        # switches user itself, after resolving -u in the container's /etc.
        pid = container.attach(payload, None, attach_flags=lxc.LXC_ATTACH_MOVE_TO_CGROUP, uid=0, gid=0,
                               env_policy=lxc.LXC_ATTACH_CLEAR_ENV)
    except BaseException:
        for fd in (err_r, err_w):
            os.close(fd)
        for sock in (tty_parent, tty_child):
            if sock is not None:
                sock.close()
        raise
    os.close(err_w)
    if tty_child is not None:
        tty_child.close()
    master = None
    try:
        if pid < 0:
            reasons = _log_errors(str(log_file))
            raise CtrError(f"cannot exec in container {name}: liblxc could not attach to it" + (f": {reasons[-1]}" if reasons else ""))
        try:
            master = native_process._receive_fd(tty_parent) if tty_parent is not None else None
            native_process._check_exec(err_r)
        except BaseException:
            if master is not None:
                os.close(master)
            native_process._reap(pid)
            raise
    finally:
        os.close(err_r)
        if tty_parent is not None:
            tty_parent.close()
    return pid, master


def _reason(record: Record, lxcpath: Path) -> str:
    """": <liblxc's last error>" for a message, or "" when it logged none."""
    reasons = _log_errors(str(lxcpath / record.name / "lxc.log"))
    return f": {reasons[-1]}" if reasons else ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _has_filesystem(name: str) -> bool:
    try:
        return any(line.split()[-1] == name for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False
