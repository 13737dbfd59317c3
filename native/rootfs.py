"""The container's filesystem view, built inside its own mount namespace.

Everything here runs in the container's first process after unshare(CLONE_NEWNS),
so every mount vanishes with the namespace: nothing can leak into the host's
mount table, even if ctr is killed. The layout follows runc's defaults (and so
Docker's): overlay root, fresh /proc, minimal /dev, read-only /sys, the
container's own cgroups read-only at /sys/fs/cgroup, masked /proc paths.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ctr.native import syscalls as sc
from ctr.native.cgroups.base import CgroupMount
from ctr.native.devices import HostDevice
from ctr.native.fspath import resolve_in_root
from ctr.spec import Mount

NOSUID_NODEV_NOEXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC

# (name, major, minor): runc's default devices.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))

# Docker's default masked and read-only paths (moby oci/defaults.go).
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True)
class RootfsPlan:
    """What to build; computed by the parent, executed by the container's process."""

    rootfs: str  # empty directory that becomes the root
    lower: tuple[str, ...]  # image layer dirs, bottom first
    upper: str
    work: str
    mounts: tuple[Mount, ...] = ()
    read_only: bool = False
    cgroup_mounts: tuple[CgroupMount, ...] = field(default=())
    # --privileged, as runc runs Docker's: /sys and the cgroups writable, nothing masked or
    # read-only under /proc, and `devices` (the host's) made in /dev beside the usual ones.
    privileged: bool = False
    devices: tuple[HostDevice, ...] = field(default=())


def _mkdir_in(root: str, path: str, mode: int = 0o755) -> str:
    target = resolve_in_root(root, path)
    os.makedirs(target, mode=mode, exist_ok=True)
    return target


def mount_overlay(plan: RootfsPlan) -> None:
    # overlayfs wants the topmost lower layer first.
    lowerdir = ":".join(reversed(plan.lower))
    sc.mount("overlay", plan.rootfs, "overlay", 0, f"lowerdir={lowerdir},upperdir={plan.upper},workdir={plan.work}")


def bind_volume(root: str, m: Mount) -> None:
    """Bind a host path into the root; the target is resolved inside the root, created if absent."""
    target = resolve_in_root(root, m.target)
    if os.path.isdir(m.source):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    sc.mount(m.source, target, None, sc.MS_BIND | sc.MS_REC)
    if m.read_only:
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)


def mount_dev(root: str, host_devices: tuple[HostDevice, ...] = ()) -> None:
    dev = _mkdir_in(root, "/dev")
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    old = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(f"{dev}/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        for d in host_devices:
            # runc's createDevices: the host's node, mode and owner; one that exists stays.
            target = os.path.join(dev, d.path)
            os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
            if not os.path.lexists(target):
                kind = stat.S_IFBLK if d.type == "b" else stat.S_IFCHR
                os.mknod(target, d.mode | kind, os.makedev(d.major, d.minor))
                os.chown(target, d.uid, d.gid)
        os.mkdir(f"{dev}/pts", 0o755)
        sc.mount(
            "devpts", f"{dev}/pts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"
        )
        os.symlink("pts/ptmx", f"{dev}/ptmx")
        os.mkdir(f"{dev}/shm", 0o1777)
        sc.mount("shm", f"{dev}/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
        os.mkdir(f"{dev}/mqueue", 0o755)
        sc.mount("mqueue", f"{dev}/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)
    finally:
        os.umask(old)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{dev}/{name}")
    os.symlink("/proc/self/fd", f"{dev}/fd")  # no /dev/core -> /proc/kcore: Docker's /dev has none


def mount_sys(root: str, cgroup_mounts: tuple[CgroupMount, ...], host_net: bool, writable: bool = False) -> None:
    """/sys and the container's cgroups at /sys/fs/cgroup, read-only unless `writable`
    (--privileged: Docker then clears the read-only flag of both mounts)."""
    ro = 0 if writable else sc.MS_RDONLY
    sys_dir = _mkdir_in(root, "/sys")
    if host_net:
        # sysfs may only be mounted fresh from a net namespace we own; bind the host's instead.
        sc.mount("/sys", sys_dir, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, sys_dir, None, sc.MS_BIND | sc.MS_REMOUNT | ro | NOSUID_NODEV_NOEXEC)
    else:
        sc.mount("sysfs", sys_dir, "sysfs", NOSUID_NODEV_NOEXEC | ro)
    cg = f"{sys_dir}/fs/cgroup"
    sc.mount("tmpfs", cg, "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755")
    for m in cgroup_mounts:
        target = os.path.join(cg, m.target) if m.target else cg
        os.makedirs(target, exist_ok=True)
        sc.mount("cgroup", target, m.fstype, NOSUID_NODEV_NOEXEC | ro, m.options or None)
        for link in m.symlinks:
            os.symlink(m.target, os.path.join(cg, link))
    if cgroup_mounts and cgroup_mounts[0].target and not writable:
        sc.mount(None, cg, None, sc.MS_REMOUNT | sc.MS_RDONLY | NOSUID_NODEV_NOEXEC, "mode=755")


def mask_paths(root: str) -> None:
    for path in MASKED_PATHS:
        target = os.path.join(root, path.lstrip("/"))
        if os.path.isdir(target) and not os.path.islink(target):
            sc.mount("tmpfs", target, "tmpfs", sc.MS_RDONLY)
        elif os.path.exists(target):
            sc.mount(os.path.join(root, "dev/null"), target, None, sc.MS_BIND)
    for path in READONLY_PATHS:
        target = os.path.join(root, path.lstrip("/"))
        if os.path.exists(target):
            sc.mount(target, target, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)


def build(plan: RootfsPlan, host_net: bool) -> None:
    """Make the root at plan.rootfs and switch to it with pivot_root (never chroot)."""
    # Nothing we mount may propagate back to the host.
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    mount_overlay(plan)
    root = plan.rootfs
    proc = _mkdir_in(root, "/proc")
    sc.mount("proc", proc, "proc", NOSUID_NODEV_NOEXEC)
    mount_dev(root, plan.devices)
    mount_sys(root, plan.cgroup_mounts, host_net, writable=plan.privileged)
    for m in plan.mounts:
        bind_volume(root, m)
    if not plan.privileged:  # Docker's privileged containers have no masked or read-only paths
        mask_paths(root)
    pivot(root)
    if plan.read_only:
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def pivot(root: str) -> None:
    """runc's trick: pivot_root(".", ".") stacks the old root under the new one; detach it."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount(".", sc.MNT_DETACH)
    os.chdir("/")
