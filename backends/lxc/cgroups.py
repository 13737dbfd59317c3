"""The lxc backend's cgroups, named after the container id (ctr-lxc-<id>, its .monitor and
.pivot), never liblxc's lxc.payload.<name>: finding PID 1 in them, the OOM counters the
stop hook copies, and removing them when liblxc could not.

An OOM kill is read by liblxc's stop hook (`cat memory.oom_control`), which
liblxc runs after PID 1 has ended but before it removes the cgroup.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from pathlib import Path

from ctr.native.cgroups.mounted import controller_version, mounted_hierarchies, v1_mount

OOM_FILE = "memory-events"  # what the stop hook copied from the memory cgroup


def cgroup_names(cid: str) -> tuple[str, str, str]:
    """Payload, monitor and monitor-pivot cgroups of a container, at each hierarchy's root."""
    base = f"ctr-lxc-{cid}"
    return base, f"{base}.monitor", f"{base}.pivot"


def memory_events_file(payload: str) -> Path | None:
    """Where the kernel counts OOM kills of cgroup `payload`: memory.oom_control (v1), memory.events (v2)."""
    version = controller_version("memory")
    if version == 1:
        return v1_mount("memory") / payload / "memory.oom_control"
    if version == 2:
        unified = next(h.mountpoint for h in mounted_hierarchies() if h.version == 2)
        return unified / payload / "memory.events"
    return None


def read_oom(rundir: Path) -> bool:
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
def driver():
    """ctr's cgroup driver, for reading and freezing the payload cgroup by name (stats, and the
    freezer when no liblxc monitor is left to ask)."""
    from ctr.native.cgroups.driver import cgroup_driver

    return cgroup_driver()


def remove_cgroup(name: str) -> None:
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


def leave_cgroups() -> None:
    """Move this process back to each hierarchy's root, out of the pivot cgroup it is in."""
    for h in mounted_hierarchies():
        try:
            (h.mountpoint / "cgroup.procs").write_text("0")
        except OSError:
            pass


def find_init(cid: str) -> int | None:
    """The host pid of the container's PID 1: the task in its payload cgroup whose innermost pid is 1."""
    payload = cgroup_names(cid)[0]
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
