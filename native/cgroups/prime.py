"""Warming the kernel's cgroup lock in the background while ctr prepares a container.

A startup-latency trick, separate from the drivers: see prime_attach. It writes through
cgroupfs, so the unit tests' fake cgroupfs sees (and can refuse) its writes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ctr.native.cgroups import cgroupfs
from ctr.native.cgroups.cgroupfs import DEFAULT_ROOT

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
        procs = _own_procs(cgroupfs.read(Path("/proc/self/cgroup")), Path(root))
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
            cgroupfs.write(procs, pid)
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
