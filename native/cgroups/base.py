"""The interface both cgroup drivers implement: a container's Cgroup and the CgroupDriver.

A container's cgroup is a directory named exactly as the runtime asks (`ctr-<id>`)
directly under each hierarchy root, so `ctr` commands run later find it again by name
alone, without state. What does not depend on the version (finding pids, killing
everything, removing the directories, the name check) is written once here.
"""

from __future__ import annotations

import os
import re
import signal
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ctr.errors import CtrError, InvalidSpec
from ctr.native.cgroups import cgroupfs
from ctr.native.cgroups.limits import Limits
from ctr.native.devices import DeviceRule

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


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


def validate_name(name: str) -> None:
    """A cgroup name is one directory level: no "/", no "." or "..", nothing hidden."""
    if not NAME_RE.fullmatch(name):
        raise InvalidSpec(f"cgroup name {name!r}: must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 255 characters)")


class Cgroup(ABC):
    """One container's cgroup, in whichever hierarchies the driver uses."""

    def __init__(self, name: str, paths: dict[str, Path]) -> None:
        self.name = name
        self.paths = paths  # controller (or "name=X", or "unified") -> directory

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def directories(self) -> list[Path]:
        """Each directory once (a combined v1 hierarchy appears under several controllers)."""
        return list(dict.fromkeys(self.paths.values()))

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the cgroup."""

    def pids(self) -> list[int]:
        """Every process in the cgroup and in any cgroup the container made below it."""
        found: set[int] = set()
        for top in self.directories():
            for dirpath, _, _ in os.walk(top):
                # a cgroup the container removed while we walked has no processes left
                found.update(int(p) for p in (cgroupfs.read_present(Path(dirpath) / "cgroup.procs") or "").split())
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
        if not cgroupfs.wait_for(lambda: not self._signal_all()):
            raise CtrError(
                f"cannot empty cgroup {self.name}: pids {self.pids()} still alive after {cgroupfs.TIMEOUT:g}s"
            )

    def destroy(self) -> None:
        """Kill what is left and remove every directory; missing ones are fine, so it is idempotent."""
        self.kill_all()
        for top in self.directories():
            cgroupfs.remove_tree(top)

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
