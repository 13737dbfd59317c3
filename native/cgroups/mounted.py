"""Which cgroup hierarchies this host has mounted, and where each controller lives.

Read once per process from /proc/self/mountinfo: liblxc's config keys (lxc.cgroup.* or
lxc.cgroup2.*) and the lxc converter both ask which version holds a controller."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ctr.native import mountinfo


@dataclass(frozen=True)
class MountedHierarchy:
    mountpoint: Path
    version: int
    controllers: frozenset[str]


@functools.lru_cache(maxsize=1)
def mounted_hierarchies() -> tuple[MountedHierarchy, ...]:
    """The cgroup hierarchies mounted here, from /proc/self/mountinfo; read once per process,
    as the native backend's cgroup driver does: a run asks a dozen times."""
    out = []
    for entry in mountinfo.parse(Path("/proc/self/mountinfo").read_text()):
        mountpoint = Path(entry.mount_point)
        if entry.fstype == "cgroup":
            out.append(MountedHierarchy(mountpoint, 1, frozenset(o for o in entry.super_options if o not in ("rw", "ro"))))
        elif entry.fstype == "cgroup2":
            try:
                controllers = frozenset((mountpoint / "cgroup.controllers").read_text().split())
            except OSError:
                controllers = frozenset()
            out.append(MountedHierarchy(mountpoint, 2, controllers))
    return tuple(out)


def controller_version(controller: str) -> int | None:
    """1 when the controller is on a v1 hierarchy, 2 when on the unified one, None if absent."""
    found = [h.version for h in mounted_hierarchies() if controller in h.controllers]
    if 1 in found:
        return 1
    if found or (controller == "devices" and any(h.version == 2 for h in mounted_hierarchies())):
        return 2  # cgroup2 has no devices controller: liblxc filters devices with bpf
    return None


def v1_mount(controller: str) -> Path:
    for h in mounted_hierarchies():
        if h.version == 1 and controller in h.controllers:
            return h.mountpoint
    raise KeyError(controller)
