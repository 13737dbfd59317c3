"""The cgroup v2 driver: one directory in the unified hierarchy, controllers enabled from the parent.

v2 has no devices controller: the device policy is a BPF program attached to the cgroup
(ctr.native.bpf_devices), through _attach_devices, which the unit tests replace.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ctr.errors import BackendUnavailable, Conflict, CtrError, NotFound, Unsupported
from ctr.native.cgroups import cgroupfs
from ctr.native.cgroups.base import Cgroup, CgroupDriver, CgroupMount, validate_name
from ctr.native.cgroups.cgroupfs import DEFAULT_ROOT
from ctr.native.cgroups.limits import CPU_PERIOD_US, Limits, check_limits, cpu_quota
from ctr.native.devices import DeviceRule, device_policy


def _attach_devices(path: Path, rules: Sequence[DeviceRule]) -> None:
    """cgroup v2: compile `rules` into a BPF device program and attach it to the cgroup."""
    from ctr.native import bpf_devices

    bpf_devices.apply(rules, path)


# controller -> the flag a user typed to need it, for the Unsupported message.
V2_CONTROLLERS = {"cpu": "--cpus", "memory": "--memory", "pids": "--pids-limit"}


class V2Cgroup(Cgroup):
    """A cgroup in the unified hierarchy; paths == {"unified": directory}."""

    @property
    def path(self) -> Path:
        return self.paths["unified"]

    def add(self, pid: int) -> None:
        cgroupfs.write(self.path / "cgroup.procs", str(pid))

    def _kill_switch(self) -> bool:
        kill = self.path / "cgroup.kill"  # Linux 5.14+; kills the whole subtree atomically
        if not kill.exists():
            return False
        cgroupfs.write(kill, "1")
        return True

    def _set_frozen(self, value: str, verb: str) -> None:
        cgroupfs.write(self.path / "cgroup.freeze", value)
        if not cgroupfs.wait_for(lambda: cgroupfs.read_keyed(self.path / "cgroup.events", "frozen") == int(value)):
            if value == "1":
                cgroupfs.write(self.path / "cgroup.freeze", "0")  # do not leave it half frozen
            raise CtrError(
                f"cannot {verb} cgroup {self.name}: {self.path / 'cgroup.events'} "
                f"did not report frozen {value} in {cgroupfs.TIMEOUT:g}s"
            )

    def freeze(self) -> None:
        self._set_frozen("1", "freeze")

    def thaw(self) -> None:
        self._set_frozen("0", "thaw")

    def frozen(self) -> bool:
        return cgroupfs.read_keyed(self.path / "cgroup.events", "frozen") == 1

    def stats(self) -> dict[str, int | None]:
        usage_usec = cgroupfs.read_keyed(self.path / "cpu.stat", "usage_usec")  # core file, no controller needed
        return {
            "memory_usage": cgroupfs.read_int(self.path / "memory.current"),
            "memory_limit": cgroupfs.read_int(self.path / "memory.max"),
            "cpu_usage_ns": None if usage_usec is None else usage_usec * 1000,
            "pids_current": cgroupfs.read_int(self.path / "pids.current"),
            "pids_limit": cgroupfs.read_int(self.path / "pids.max"),
        }

    def oom_killed(self) -> bool:
        return (cgroupfs.read_keyed(self.path / "memory.events", "oom_kill") or 0) > 0

    def limits(self) -> Limits:
        cpus = None
        quota, _, period = (cgroupfs.read_present(self.path / "cpu.max") or "max").strip().partition(" ")
        if quota != "max":
            cpus = int(quota) / int(period)
        return Limits(
            memory=cgroupfs.read_int(self.path / "memory.max"),
            cpus=cpus,
            pids=cgroupfs.read_int(self.path / "pids.max"),
        )


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
        enabled = set(cgroupfs.read(control).split())
        for controller in V2_CONTROLLERS:
            if controller not in available or controller in enabled:
                continue
            try:
                cgroupfs.write(control, f"+{controller}")
            except OSError:
                if controller in needed:
                    raise

    def create(self, name: str, limits: Limits, devices: Sequence[DeviceRule] | None = None) -> V2Cgroup:
        validate_name(name)
        check_limits(limits)
        path = self.root / name
        if path.exists():
            raise Conflict(f"cgroup {name} already exists: {path}")
        available = set(cgroupfs.read(self.root / "cgroup.controllers").split())
        needed = self._needed(limits)
        for controller in needed:
            if controller not in available:
                raise Unsupported(
                    "native",
                    V2_CONTROLLERS[controller],
                    f"the {controller} controller is not enabled in {self.root} "
                    f"(cgroup.controllers lists: {' '.join(sorted(available)) or 'nothing'})",
                )
        self._enable_controllers(available, needed)
        try:
            cgroupfs.mkdir(path)
        except FileExistsError:
            raise Conflict(f"cgroup {name} already exists: {path}") from None
        try:
            if limits.memory is not None:
                cgroupfs.write(path / "memory.max", str(limits.memory))
            if limits.cpus is not None:
                cgroupfs.write(path / "cpu.max", f"{cpu_quota(limits.cpus)} {CPU_PERIOD_US}")
            if "pids" in needed or (limits.pids == -1 and "pids" in available):
                cgroupfs.write(path / "pids.max", "max" if limits.pids == -1 else str(limits.pids))
            # v2 has no devices controller: the policy is a BPF program on the cgroup
            _attach_devices(path, device_policy() if devices is None else devices)
        except BaseException:
            try:
                cgroupfs.remove_tree(path)
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
