"""The cgroup drivers of the native runtime: v1 (one directory per hierarchy) and v2 (one directory).

Two implementations of one interface, picked by cgroup_driver() as runc's `manager.New`
and youki's `create_cgroup_manager` do. A container's cgroup is a directory named exactly
as the runtime asks (`ctr-<id>`) directly under each hierarchy root, so `ctr` commands run
later find it again by name alone, without state.

Every kernel file goes through _read/_write/_mkdir/_rmdir: kernel errors come out as
OSError(errno, strerror, path), and the unit tests put a small fake cgroupfs behind them.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ctr.errors import BackendUnavailable, Conflict, CtrError, InvalidSpec, NotFound, Unsupported

from ctr.native import mountinfo
from ctr.native.devices import DeviceRule, device_policy, v1_writes

DEFAULT_ROOT = Path("/sys/fs/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")
ENV_DRIVER = "CTR_CGROUP_DRIVER"

CPU_PERIOD_US = 100_000  # Docker's period: --cpus 0.5 is a 50 ms quota every 100 ms
TIMEOUT = 2.0  # seconds any wait (freeze, empty, rmdir) may take before we give up
POLL = 0.01

# The kernel reports "no memory limit" as PAGE_COUNTER_MAX pages in bytes, which depends on
# the page size (9223372036854771712 with 4 KiB pages); nothing this large is a real limit.
V1_UNLIMITED = 1 << 62

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


# Super options of a v1 cgroup mount that are flags, not controllers.
V1_MOUNT_FLAGS = frozenset({
    "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods",
    "all", "none", "sane_behavior",
})


@dataclass(frozen=True)
class Limits:
    """Resource limits; None leaves the kernel's default (no limit)."""

    memory: int | None = None  # bytes
    cpus: float | None = None  # 0.5 -> quota 50000 / period 100000
    pids: int | None = None  # -1 = unlimited


@dataclass(frozen=True)
class CgroupMount:
    """One mount the runtime performs under the container's /sys/fs/cgroup (a tmpfs for v1).

    `symlinks` are names under /sys/fs/cgroup that point at `target`, so that a combined
    v1 hierarchy "cpu,cpuacct" is also found as "cpu" and "cpuacct", as on the host.
    """

    target: str  # relative to /sys/fs/cgroup, "" for the top itself (v2)
    fstype: str  # "cgroup" or "cgroup2"
    options: str  # "memory", "cpu,cpuacct", "name=systemd", or "" for cgroup2
    symlinks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hierarchy:
    """One mounted v1 hierarchy: its mount point and the controllers (or name=X) it carries."""

    mountpoint: Path
    controllers: tuple[str, ...]  # ("cpu", "cpuacct"), ("memory",), ("name=systemd",)


# --- kernel files -------------------------------------------------------------------------


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


# A cgroup removed under us: ENOENT at open, ENODEV when it goes between open and read.
VANISHED = (errno.ENOENT, errno.ENODEV, errno.ESRCH)


def _read_present(path: Path) -> str | None:
    """The file's text, or None when it (or its cgroup) is gone: ordinary, never an error."""
    try:
        return _read(path)
    except OSError as exc:
        if exc.errno in VANISHED:
            return None
        raise


def _write(path: Path, value: str) -> None:
    """Write one value as one write(2), as the kernel wants; no O_CREAT, so a missing
    interface file is ENOENT rather than a misleading EACCES from cgroupfs."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        # os.write's error has no file name; the kernel's EINVAL/EBUSY means little without it.
        raise OSError(exc.errno, f"{exc.strerror} (writing {value!r})", str(path)) from None


PRIME_SECONDS = 0.2  # how long prime_attach keeps the lock warm unless stop_priming comes first
PRIME_PERIOD = 0.008  # the kernel lets the lock go cold ~15-20 ms after a write (measured here)
_prime = {"until": 0.0, "running": False}


def prime_attach(root: Path = DEFAULT_ROOT) -> None:
    """Have the kernel pay, in the background, the wait that the next cgroup move would pay.

    Every move into a cgroup takes the global cgroup_threadgroup_rwsem for writing; after a
    quiet spell of ~15-20 ms, that first waits out an RCU grace period while holding
    cgroup_mutex (measured here: 11-15 ms for such a cgroup.procs write, 0.1 ms for one
    that follows another closely; runc pays it too). A thread writes ctr's own pid into the
    cgroup ctr is already in, which takes the lock and moves nothing, and repeats that every
    few milliseconds while ctr goes on (importing, preparing the container), so that the
    container's own moves find the lock warm. Any hierarchy will do: the lock is shared.
    Bounded: it ends after PRIME_SECONDS, or at stop_priming(). Best effort: errors are
    ignored; nothing waits for the thread. Calling it again only extends the time.
    """
    _prime["until"] = time.monotonic() + PRIME_SECONDS
    if _prime["running"]:
        return
    try:
        procs = _own_procs(_read(Path("/proc/self/cgroup")), Path(root))
    except (OSError, ValueError):
        return
    if procs is not None:
        _prime["running"] = True
        from ctr.native.threads import start_quiet

        start_quiet(_keep_warm, procs, str(os.getpid()))


def stop_priming() -> None:
    """The container is in its cgroup: the priming thread may stop."""
    _prime["until"] = 0.0


def _keep_warm(procs: Path, pid: str) -> None:
    try:
        while True:
            _write(procs, pid)
            if time.monotonic() + PRIME_PERIOD >= _prime["until"]:
                return
            time.sleep(PRIME_PERIOD)
    except OSError:
        pass
    finally:
        _prime["running"] = False


def _own_procs(proc_cgroup: str, root: Path) -> Path | None:
    """The cgroup.procs file of ctr's own cgroup in the first hierarchy mounted where
    Debian, systemd and Docker put them (unified at root or root/unified, v1 at root/NAME)."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers.startswith("name="):
            continue
        dirs = (root, root / "unified") if controllers == "" else (root / controllers,)
        for d in dirs:
            procs = d / path.lstrip("/") / "cgroup.procs"
            if procs.exists():
                return procs
    return None


def _mkdir(path: Path) -> None:
    os.mkdir(path)


def _rmdir(path: Path) -> None:
    os.rmdir(path)


def _attach_devices(path: Path, rules: Sequence[DeviceRule]) -> None:
    """cgroup v2: compile `rules` into a BPF device program and attach it to the cgroup."""
    from ctr.native import bpf_devices

    bpf_devices.apply(rules, path)


def _read_int(path: Path) -> int | None:
    """An integer file, or None when the file is missing or says "max"."""
    text = _read_present(path)
    if text is None or text.strip() == "max":
        return None
    return int(text)


def _read_keyed(path: Path, key: str) -> int | None:
    """The value of `key` in a flat-keyed file such as memory.events or cpu.stat."""
    text = _read_present(path)
    if text is None:
        return None
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return None


def _wait_for(check: Callable[[], bool], timeout: float | None = None) -> bool:
    """Poll `check` every POLL seconds until it holds; bounded both in time and in count."""
    timeout = TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 1):
        if check():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    return False


def _remove_tree(top: Path) -> None:
    """rmdir `top` and any cgroups the container made below it, deepest first.

    A cgroup directory holds only kernel files, so rmdir (not unlink) is the only way to
    remove it; EBUSY right after a kill just means the kernel is still tearing down, so retry.
    """
    if not top.exists():
        return
    for dirpath, _, _ in os.walk(top, topdown=False):
        path = Path(dirpath)

        def gone() -> bool:
            try:
                _rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                return False
            return True

        if not _wait_for(gone):
            raise OSError(errno.EBUSY, f"cgroup still busy after {TIMEOUT:g}s", str(path))


def validate_name(name: str) -> None:
    """A cgroup name is one directory level: no "/", no "." or "..", nothing hidden."""
    if not NAME_RE.fullmatch(name):
        raise InvalidSpec(f"cgroup name {name!r}: must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 255 characters)")


def _check_limits(limits: Limits) -> None:
    if limits.memory is not None and limits.memory <= 0:
        raise InvalidSpec(f"memory limit {limits.memory}: must be positive")
    if limits.cpus is not None and limits.cpus <= 0:
        raise InvalidSpec(f"cpus {limits.cpus}: must be positive")
    if limits.pids is not None and limits.pids != -1 and limits.pids <= 0:
        raise InvalidSpec(f"pids limit {limits.pids}: must be positive, or -1 for unlimited")


def _cpu_quota(cpus: float) -> int:
    return round(cpus * CPU_PERIOD_US)


# --- mountinfo ----------------------------------------------------------------------------


def _visible_mounts(text: str) -> dict[Path, mountinfo.MountEntry]:
    """Mount point -> the mount visible there; a later mount on the same point hides earlier ones."""
    return {Path(point): entry for point, entry in mountinfo.visible(mountinfo.parse(text)).items()}


def _read_mountinfo() -> str:
    return _read(MOUNTINFO)


def v1_hierarchies(mountinfo: str, root: Path = DEFAULT_ROOT) -> list[Hierarchy]:
    """The v1 hierarchies mounted directly under `root`, one entry per hierarchy, by mount point.

    Controllers come from the super options (the last mountinfo field), so a combined mount
    "cpu,cpuacct" and a named one "name=systemd" are recognised whatever the directory is called.
    """
    found: dict[str, Hierarchy] = {}
    for m in sorted(_visible_mounts(mountinfo).values(), key=lambda m: m.mount_point):
        if m.fstype != "cgroup" or Path(m.mount_point).parent != root or m.device in found:
            continue
        controllers = tuple(
            o for o in m.super_options if o not in V1_MOUNT_FLAGS and not o.startswith("release_agent=")
        )
        if controllers:
            found[m.device] = Hierarchy(Path(m.mount_point), controllers)
    return list(found.values())


def is_cgroup2_mount(path: Path, mountinfo: str) -> bool:
    """Whether a cgroup2 filesystem is what is visible at `path`."""
    m = _visible_mounts(mountinfo).get(path)
    return m is not None and m.fstype == "cgroup2"


# --- the interface ------------------------------------------------------------------------


class Cgroup(ABC):
    """One container's cgroup, in whichever hierarchies the driver uses."""

    def __init__(self, name: str, paths: dict[str, Path]) -> None:
        self.name = name
        self.paths = paths  # controller (or "name=X", or "unified") -> directory

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _dirs(self) -> list[Path]:
        """Each directory once (a combined v1 hierarchy appears under several controllers)."""
        return list(dict.fromkeys(self.paths.values()))

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the cgroup."""

    def pids(self) -> list[int]:
        """Every process in the cgroup and in any cgroup the container made below it."""
        found: set[int] = set()
        for top in self._dirs():
            for dirpath, _, _ in os.walk(top):
                # a cgroup the container removed while we walked has no processes left
                found.update(int(p) for p in (_read_present(Path(dirpath) / "cgroup.procs") or "").split())
        return sorted(found)

    def _signal_all(self) -> list[int]:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def _kill_switch(self) -> bool:
        """Kill everything with one kernel write if the kernel can (v2 cgroup.kill)."""
        return False

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup and wait (bounded) until it is empty.

        Without cgroup.kill the cgroup is frozen first, so no process can fork a child
        we would miss between reading cgroup.procs and sending the signals (runc's
        signalAllProcesses). Zombies do not count: the kernel drops them from cgroup.procs.
        """
        if not self._kill_switch() and self.pids():
            try:
                self.freeze()
                frozen = True
            except (CtrError, OSError):
                # No freezer, or it would not settle: kill anyway, the loop below catches forks.
                frozen = False
            try:
                self._signal_all()
            finally:
                if frozen:
                    self.thaw()
        if not _wait_for(lambda: not self._signal_all()):
            raise CtrError(f"cannot empty cgroup {self.name}: pids {self.pids()} still alive after {TIMEOUT:g}s")

    def destroy(self) -> None:
        """Kill what is left and remove every directory; missing ones are fine, so it is idempotent."""
        self.kill_all()
        for top in self._dirs():
            _remove_tree(top)

    @abstractmethod
    def freeze(self) -> None:
        """Stop every process (SIGKILL still works); returns once the kernel says it is frozen."""

    @abstractmethod
    def thaw(self) -> None:
        """Let the processes run again."""

    @abstractmethod
    def frozen(self) -> bool:
        """Whether the kernel reports the cgroup as frozen (not merely freezing)."""

    @abstractmethod
    def stats(self) -> dict[str, int | None]:
        """memory_usage, memory_limit, cpu_usage_ns, pids_current, pids_limit.

        A value is None when its controller is not available, and a limit is None when unlimited.
        """

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""

    @abstractmethod
    def limits(self) -> Limits:
        """The limits as the kernel holds them; unlimited (including pids -1) reads back as None."""


class CgroupDriver(ABC):
    """Creates and finds containers' cgroups; CgroupV1 and CgroupV2 implement it."""

    version: int

    @abstractmethod
    def create(self, name: str, limits: Limits, devices: Sequence[DeviceRule] | None = None) -> Cgroup:
        """Make the cgroup and apply `limits` and the device rules (None: devices.device_policy(),
        Docker's default); on any failure remove what was made and raise.

        Raises Conflict if it exists, Unsupported if a limit cannot be enforced here.
        """

    @abstractmethod
    def open(self, name: str) -> Cgroup:
        """The existing cgroup `name` (for stop, stats, pause), or NotFound."""

    @abstractmethod
    def container_mounts(self) -> list[CgroupMount]:
        """What to mount at /sys/fs/cgroup in a container that has its own cgroup namespace."""

    @abstractmethod
    def describe(self) -> str:
        """One line for `ctr backends`."""


# --- cgroup v1 ----------------------------------------------------------------------------


class V1Cgroup(Cgroup):
    """A cgroup in every v1 hierarchy; paths maps each controller to its directory."""

    def _path(self, controller: str) -> Path | None:
        return self.paths.get(controller)

    def add(self, pid: int) -> None:
        for d in self._dirs():
            _write(d / "cgroup.procs", str(pid))

    def _freezer(self, action: str) -> Path:
        path = self._path("freezer")
        if path is None:
            raise Unsupported("native", action, f"the freezer cgroup hierarchy is not mounted (cgroup {self.name})")
        return path / "freezer.state"

    def freeze(self) -> None:
        state = self._freezer("pause")

        def settled() -> bool:
            # The kernel can stay in FREEZING when a task races with it; writing again
            # makes it retry (runc does the same).
            if _read(state).strip() == "FROZEN":
                return True
            _write(state, "FROZEN")
            return False

        _write(state, "FROZEN")
        if not _wait_for(settled):
            _write(state, "THAWED")
            raise CtrError(f"cannot freeze cgroup {self.name}: {state} did not reach FROZEN in {TIMEOUT:g}s")

    def thaw(self) -> None:
        state = self._freezer("unpause")
        _write(state, "THAWED")
        if not _wait_for(lambda: _read(state).strip() == "THAWED"):
            raise CtrError(f"cannot thaw cgroup {self.name}: {state} did not reach THAWED in {TIMEOUT:g}s")

    def frozen(self) -> bool:
        path = self._path("freezer")
        if path is None:
            return False
        return (_read_present(path / "freezer.state") or "").strip() == "FROZEN"

    def _file(self, controller: str, filename: str) -> Path | None:
        d = self._path(controller)
        return None if d is None else d / filename

    def _int(self, controller: str, filename: str) -> int | None:
        path = self._file(controller, filename)
        return None if path is None else _read_int(path)

    def _memory_limit(self) -> int | None:
        limit = self._int("memory", "memory.limit_in_bytes")
        return None if limit is None or limit >= V1_UNLIMITED else limit

    def stats(self) -> dict[str, int | None]:
        return {
            "memory_usage": self._int("memory", "memory.usage_in_bytes"),
            "memory_limit": self._memory_limit(),
            "cpu_usage_ns": self._int("cpuacct", "cpuacct.usage"),
            "pids_current": self._int("pids", "pids.current"),
            "pids_limit": self._int("pids", "pids.max"),
        }

    def oom_killed(self) -> bool:
        path = self._file("memory", "memory.oom_control")
        # "oom_kill N" exists since Linux 4.13; older kernels cannot tell us, so False.
        return path is not None and (_read_keyed(path, "oom_kill") or 0) > 0

    def limits(self) -> Limits:
        quota = self._int("cpu", "cpu.cfs_quota_us")
        period = self._int("cpu", "cpu.cfs_period_us")
        cpus = quota / period if quota is not None and quota > 0 and period else None
        return Limits(memory=self._memory_limit(), cpus=cpus, pids=self._int("pids", "pids.max"))


class CgroupV1(CgroupDriver):
    """cgroup v1: one directory per mounted hierarchy (runc's fs driver, without systemd).

    In hybrid mode the cgroup2 mount at /sys/fs/cgroup/unified carries no controllers; it is
    neither joined nor shown to the container, whose cgroup namespace root there would be
    the host's whole unified tree.
    """

    version = 1

    def __init__(self, root: Path = DEFAULT_ROOT, mountinfo: str | None = None) -> None:
        self.root = Path(root)
        text = _read_mountinfo() if mountinfo is None else mountinfo
        self.hierarchies = v1_hierarchies(text, self.root)
        self.hybrid = is_cgroup2_mount(self.root / "unified", text)
        if not self.hierarchies:
            raise BackendUnavailable(
                f"no cgroup v1 hierarchy is mounted under {self.root}: mount them "
                f"(e.g. mount -t cgroup -o memory cgroup {self.root}/memory) or use cgroup v2"
            )

    def _paths(self, name: str) -> dict[str, Path]:
        return {c: h.mountpoint / name for h in self.hierarchies for c in h.controllers}

    def create(self, name: str, limits: Limits, devices: Sequence[DeviceRule] | None = None) -> V1Cgroup:
        validate_name(name)
        _check_limits(limits)
        cg = V1Cgroup(name, self._paths(name))
        for controller, flag, value in (("memory", "--memory", limits.memory), ("cpu", "--cpus", limits.cpus),
                                        ("pids", "--pids-limit", limits.pids)):
            if value is not None and controller not in cg.paths:
                raise Unsupported("native", flag, f"the {controller} cgroup hierarchy is not mounted under {self.root}")
        existing = [str(d) for d in cg._dirs() if d.exists()]
        if existing:
            raise Conflict(f"cgroup {name} already exists: {', '.join(existing)}")
        made: list[Path] = []
        try:
            for d in cg._dirs():
                try:
                    _mkdir(d)
                except FileExistsError:
                    raise Conflict(f"cgroup {name} already exists: {d}") from None
                made.append(d)
            self._setup(cg, limits, device_policy() if devices is None else devices)
        except BaseException:
            for d in reversed(made):
                try:
                    _remove_tree(d)
                except OSError:
                    pass  # the original error matters more; nothing ran in it, so this is rare
            raise
        return cg

    def _setup(self, cg: V1Cgroup, limits: Limits, devices: Sequence[DeviceRule]) -> None:
        p = cg.paths
        if "cpuset" in p:
            # A new cpuset is empty, and a task cannot join an empty cpuset: inherit the parent's.
            for f in ("cpuset.cpus", "cpuset.mems"):
                _write(p["cpuset"] / f, _read(p["cpuset"].parent / f).strip())
        if "devices" in p:
            for filename, rule in v1_writes(devices):
                _write(p["devices"] / filename, rule)
        if limits.memory is not None:
            _write(p["memory"] / "memory.limit_in_bytes", str(limits.memory))
        if limits.cpus is not None:
            _write(p["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(p["cpu"] / "cpu.cfs_quota_us", str(_cpu_quota(limits.cpus)))
        if limits.pids is not None:
            _write(p["pids"] / "pids.max", "max" if limits.pids == -1 else str(limits.pids))

    def open(self, name: str) -> V1Cgroup:
        validate_name(name)
        paths = {c: d for c, d in self._paths(name).items() if d.is_dir()}
        if not paths:
            raise NotFound(f"cgroup {name} not found in any hierarchy under {self.root}")
        return V1Cgroup(name, paths)

    def container_mounts(self) -> list[CgroupMount]:
        mounts = []
        for h in self.hierarchies:
            target = h.mountpoint.name
            links = tuple(c for c in h.controllers if not c.startswith("name=") and c != target)
            mounts.append(CgroupMount(target, "cgroup", ",".join(h.controllers), links))
        return mounts

    def describe(self) -> str:
        return "cgroup v1 (hybrid)" if self.hybrid else "cgroup v1"


# --- cgroup v2 ----------------------------------------------------------------------------

# controller -> the flag a user typed to need it, for the Unsupported message.
V2_CONTROLLERS = {"cpu": "--cpus", "memory": "--memory", "pids": "--pids-limit"}


class V2Cgroup(Cgroup):
    """A cgroup in the unified hierarchy; paths == {"unified": directory}."""

    @property
    def path(self) -> Path:
        return self.paths["unified"]

    def add(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def _kill_switch(self) -> bool:
        kill = self.path / "cgroup.kill"  # Linux 5.14+; kills the whole subtree atomically
        if not kill.exists():
            return False
        _write(kill, "1")
        return True

    def _set_frozen(self, value: str, verb: str) -> None:
        _write(self.path / "cgroup.freeze", value)
        if not _wait_for(lambda: _read_keyed(self.path / "cgroup.events", "frozen") == int(value)):
            if value == "1":
                _write(self.path / "cgroup.freeze", "0")  # do not leave it half frozen
            raise CtrError(f"cannot {verb} cgroup {self.name}: {self.path / 'cgroup.events'} "
                           f"did not report frozen {value} in {TIMEOUT:g}s")

    def freeze(self) -> None:
        self._set_frozen("1", "freeze")

    def thaw(self) -> None:
        self._set_frozen("0", "thaw")

    def frozen(self) -> bool:
        return _read_keyed(self.path / "cgroup.events", "frozen") == 1

    def stats(self) -> dict[str, int | None]:
        usage_usec = _read_keyed(self.path / "cpu.stat", "usage_usec")  # core file, no controller needed
        return {
            "memory_usage": _read_int(self.path / "memory.current"),
            "memory_limit": _read_int(self.path / "memory.max"),
            "cpu_usage_ns": None if usage_usec is None else usage_usec * 1000,
            "pids_current": _read_int(self.path / "pids.current"),
            "pids_limit": _read_int(self.path / "pids.max"),
        }

    def oom_killed(self) -> bool:
        return (_read_keyed(self.path / "memory.events", "oom_kill") or 0) > 0

    def limits(self) -> Limits:
        cpus = None
        quota, _, period = (_read_present(self.path / "cpu.max") or "max").strip().partition(" ")
        if quota != "max":
            cpus = int(quota) / int(period)
        return Limits(memory=_read_int(self.path / "memory.max"), cpus=cpus,
                      pids=_read_int(self.path / "pids.max"))


class CgroupV2(CgroupDriver):
    """cgroup v2: one directory under `root`, the controllers enabled from the parent."""

    version = 2

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        if not (self.root / "cgroup.controllers").is_file():
            raise BackendUnavailable(f"{self.root} is not a cgroup2 mount: it has no cgroup.controllers")

    def _needed(self, limits: Limits) -> list[str]:
        """Controllers without which a requested limit could not be enforced."""
        needed = []
        if limits.cpus is not None:
            needed.append("cpu")
        if limits.memory is not None:
            needed.append("memory")
        if limits.pids is not None and limits.pids != -1:  # -1 is the default anyway
            needed.append("pids")
        return needed

    def _enable_controllers(self, available: set[str], needed: list[str]) -> None:
        """+cpu +memory +pids in the parent's subtree_control, each on its own write.

        One write per controller, so that one the kernel refuses (e.g. cpu while realtime
        tasks exist) only costs its statistics, unless a limit needs it: then it is an error.
        """
        control = self.root / "cgroup.subtree_control"
        enabled = set(_read(control).split())
        for controller in V2_CONTROLLERS:
            if controller not in available or controller in enabled:
                continue
            try:
                _write(control, f"+{controller}")
            except OSError:
                if controller in needed:
                    raise

    def create(self, name: str, limits: Limits, devices: Sequence[DeviceRule] | None = None) -> V2Cgroup:
        validate_name(name)
        _check_limits(limits)
        path = self.root / name
        if path.exists():
            raise Conflict(f"cgroup {name} already exists: {path}")
        available = set(_read(self.root / "cgroup.controllers").split())
        needed = self._needed(limits)
        for controller in needed:
            if controller not in available:
                raise Unsupported(
                    "native", V2_CONTROLLERS[controller],
                    f"the {controller} controller is not enabled in {self.root} "
                    f"(cgroup.controllers lists: {' '.join(sorted(available)) or 'nothing'})",
                )
        self._enable_controllers(available, needed)
        try:
            _mkdir(path)
        except FileExistsError:
            raise Conflict(f"cgroup {name} already exists: {path}") from None
        try:
            if limits.memory is not None:
                _write(path / "memory.max", str(limits.memory))
            if limits.cpus is not None:
                _write(path / "cpu.max", f"{_cpu_quota(limits.cpus)} {CPU_PERIOD_US}")
            if "pids" in needed or (limits.pids == -1 and "pids" in available):
                _write(path / "pids.max", "max" if limits.pids == -1 else str(limits.pids))
            # v2 has no devices controller: the policy is a BPF program on the cgroup
            _attach_devices(path, device_policy() if devices is None else devices)
        except BaseException:
            try:
                _remove_tree(path)
            except OSError:
                pass  # the original error matters more
            raise
        return V2Cgroup(name, {"unified": path})

    def open(self, name: str) -> V2Cgroup:
        validate_name(name)
        path = self.root / name
        if not path.is_dir():
            raise NotFound(f"cgroup {name} not found: {path} does not exist")
        return V2Cgroup(name, {"unified": path})

    def container_mounts(self) -> list[CgroupMount]:
        return [CgroupMount("", "cgroup2", "")]

    def describe(self) -> str:
        return "cgroup v2" if self.root == DEFAULT_ROOT else f"cgroup v2 ({self.root})"


# --- choosing -----------------------------------------------------------------------------


def cgroup_driver(root: Path = DEFAULT_ROOT, mountinfo: str | None = None) -> CgroupDriver:
    """Detect and pick the driver: v2 when `root` is a cgroup2 mount, v1 when v1 hierarchies
    are mounted under it. CTR_CGROUP_DRIVER=v1|v2 forces one; forced v2 on a hybrid host
    uses the cgroup2 mount at root/unified. `mountinfo` (text) replaces /proc/self/mountinfo.
    """
    root = Path(root)
    text = _read_mountinfo() if mountinfo is None else mountinfo
    choice = os.environ.get(ENV_DRIVER, "")
    if choice not in ("", "v1", "v2"):
        raise InvalidSpec(f"{ENV_DRIVER}={choice!r}: must be v1 or v2")
    if choice == "v2":
        for candidate in (root, root / "unified"):
            if is_cgroup2_mount(candidate, text):
                return CgroupV2(candidate)
        raise BackendUnavailable(
            f"{ENV_DRIVER}=v2 but no cgroup2 filesystem is mounted at {root} or {root / 'unified'}: "
            f"mount it with `mount -t cgroup2 none {root}`"
        )
    if choice == "" and is_cgroup2_mount(root, text):
        return CgroupV2(root)
    if v1_hierarchies(text, root):
        return CgroupV1(root, text)
    if choice == "v1":
        raise BackendUnavailable(f"{ENV_DRIVER}=v1 but no cgroup v1 hierarchy is mounted under {root}")
    raise BackendUnavailable(
        f"no cgroup filesystem is mounted at {root}: mount cgroup2 there "
        f"(`mount -t cgroup2 none {root}`) or the cgroup v1 hierarchies under it"
    )


__all__ = [
    "Limits", "CgroupMount", "Hierarchy", "Cgroup", "CgroupDriver", "CgroupV1", "CgroupV2",
    "V1Cgroup", "V2Cgroup", "cgroup_driver", "v1_hierarchies", "is_cgroup2_mount", "validate_name",
]
