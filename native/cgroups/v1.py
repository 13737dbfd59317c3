"""The cgroup v1 driver: one directory per mounted hierarchy (runc's fs driver, without systemd)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ctr.errors import BackendUnavailable, Conflict, CtrError, NotFound, Unsupported
from ctr.native.cgroups import cgroupfs
from ctr.native.cgroups.base import Cgroup, CgroupDriver, CgroupMount, validate_name
from ctr.native.cgroups.cgroupfs import DEFAULT_ROOT
from ctr.native.cgroups.limits import CPU_PERIOD_US, V1_UNLIMITED, Limits, check_limits, cpu_quota
from ctr.native.cgroups.mounted import is_cgroup2_mount, read_mountinfo, v1_hierarchies
from ctr.native.devices import DeviceRule, device_policy, v1_writes


class V1Cgroup(Cgroup):
    """A cgroup in every v1 hierarchy; paths maps each controller to its directory."""

    def _path(self, controller: str) -> Path | None:
        return self.paths.get(controller)

    def add(self, pid: int) -> None:
        for d in self.directories():
            cgroupfs.write(d / "cgroup.procs", str(pid))

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
            if cgroupfs.read(state).strip() == "FROZEN":
                return True
            cgroupfs.write(state, "FROZEN")
            return False

        cgroupfs.write(state, "FROZEN")
        if not cgroupfs.wait_for(settled):
            cgroupfs.write(state, "THAWED")
            raise CtrError(f"cannot freeze cgroup {self.name}: {state} did not reach FROZEN in {cgroupfs.TIMEOUT:g}s")

    def thaw(self) -> None:
        state = self._freezer("unpause")
        cgroupfs.write(state, "THAWED")
        if not cgroupfs.wait_for(lambda: cgroupfs.read(state).strip() == "THAWED"):
            raise CtrError(f"cannot thaw cgroup {self.name}: {state} did not reach THAWED in {cgroupfs.TIMEOUT:g}s")

    def frozen(self) -> bool:
        path = self._path("freezer")
        if path is None:
            return False
        return (cgroupfs.read_present(path / "freezer.state") or "").strip() == "FROZEN"

    def _file(self, controller: str, filename: str) -> Path | None:
        d = self._path(controller)
        return None if d is None else d / filename

    def _int(self, controller: str, filename: str) -> int | None:
        path = self._file(controller, filename)
        return None if path is None else cgroupfs.read_int(path)

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
        return path is not None and (cgroupfs.read_keyed(path, "oom_kill") or 0) > 0

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
        text = read_mountinfo() if mountinfo is None else mountinfo
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
        check_limits(limits)
        cg = V1Cgroup(name, self._paths(name))
        for controller, flag, value in (
            ("memory", "--memory", limits.memory),
            ("cpu", "--cpus", limits.cpus),
            ("pids", "--pids-limit", limits.pids),
        ):
            if value is not None and controller not in cg.paths:
                raise Unsupported("native", flag, f"the {controller} cgroup hierarchy is not mounted under {self.root}")
        existing = [str(d) for d in cg.directories() if d.exists()]
        if existing:
            raise Conflict(f"cgroup {name} already exists: {', '.join(existing)}")
        made: list[Path] = []
        try:
            for d in cg.directories():
                try:
                    cgroupfs.mkdir(d)
                except FileExistsError:
                    raise Conflict(f"cgroup {name} already exists: {d}") from None
                made.append(d)
            self._setup(cg, limits, device_policy() if devices is None else devices)
        except BaseException:
            for d in reversed(made):
                try:
                    cgroupfs.remove_tree(d)
                except OSError:
                    pass  # the original error matters more; nothing ran in it, so this is rare
            raise
        return cg

    def _setup(self, cg: V1Cgroup, limits: Limits, devices: Sequence[DeviceRule]) -> None:
        p = cg.paths
        if "cpuset" in p:
            # A new cpuset is empty, and a task cannot join an empty cpuset: inherit the parent's.
            for f in ("cpuset.cpus", "cpuset.mems"):
                cgroupfs.write(p["cpuset"] / f, cgroupfs.read(p["cpuset"].parent / f).strip())
        if "devices" in p:
            for filename, rule in v1_writes(devices):
                cgroupfs.write(p["devices"] / filename, rule)
        if limits.memory is not None:
            cgroupfs.write(p["memory"] / "memory.limit_in_bytes", str(limits.memory))
        if limits.cpus is not None:
            cgroupfs.write(p["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            cgroupfs.write(p["cpu"] / "cpu.cfs_quota_us", str(cpu_quota(limits.cpus)))
        if limits.pids is not None:
            cgroupfs.write(p["pids"] / "pids.max", "max" if limits.pids == -1 else str(limits.pids))

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
