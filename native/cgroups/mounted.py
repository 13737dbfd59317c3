"""Which cgroup hierarchies this host has mounted, and where each controller lives.

Two views of /proc/self/mountinfo. mounted_hierarchies() is read once per process: liblxc's
config keys (lxc.cgroup.* or lxc.cgroup2.*) and the lxc converter both ask which version
holds a controller. v1_hierarchies() and is_cgroup2_mount() read the text they are given,
for the native cgroup drivers (and the docker backend's reading of a container's cgroup):
which v1 hierarchies sit under a root, and whether a path is a cgroup2 mount."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ctr.native import mountinfo
from ctr.native.cgroups import cgroupfs
from ctr.native.cgroups.cgroupfs import DEFAULT_ROOT

MOUNTINFO = Path("/proc/self/mountinfo")


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
            out.append(
                MountedHierarchy(mountpoint, 1, frozenset(o for o in entry.super_options if o not in ("rw", "ro")))
            )
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


# Super options of a v1 cgroup mount that are flags, not controllers.
V1_MOUNT_FLAGS = frozenset(
    {
        "rw",
        "ro",
        "xattr",
        "noprefix",
        "clone_children",
        "cpuset_v2_mode",
        "favordynmods",
        "all",
        "none",
        "sane_behavior",
    }
)


@dataclass(frozen=True)
class Hierarchy:
    """One mounted v1 hierarchy: its mount point and the controllers (or name=X) it carries."""

    mountpoint: Path
    controllers: tuple[str, ...]  # ("cpu", "cpuacct"), ("memory",), ("name=systemd",)


def visible_mounts(text: str) -> dict[Path, mountinfo.MountEntry]:
    """Mount point -> the mount visible there; a later mount on the same point hides earlier ones."""
    return {Path(point): entry for point, entry in mountinfo.visible(mountinfo.parse(text)).items()}


def read_mountinfo() -> str:
    return cgroupfs.read(MOUNTINFO)


def v1_hierarchies(mountinfo: str, root: Path = DEFAULT_ROOT) -> list[Hierarchy]:
    """The v1 hierarchies mounted directly under `root`, one entry per hierarchy, by mount point.

    Controllers come from the super options (the last mountinfo field), so a combined mount
    "cpu,cpuacct" and a named one "name=systemd" are recognised whatever the directory is called.
    """
    found: dict[str, Hierarchy] = {}
    for m in sorted(visible_mounts(mountinfo).values(), key=lambda m: m.mount_point):
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
    m = visible_mounts(mountinfo).get(path)
    return m is not None and m.fstype == "cgroup2"
