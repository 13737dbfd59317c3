"""The backstop at the end of a run: whatever a hung or missing cleanup command left tied to
the run's temp dir (processes, mounts, native cgroups) is removed, then the dir itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

from harness import Bench


def remove_tree(b: Bench, path: Path) -> None:
    """The last cleanup step: whatever is still tied to the temp dir goes, then the dir.

    By then every container was asked to go (`ctr rm -f`, `docker rm -f`, `lxc-stop`,
    `runc delete`); this catches what a hung or missing command left behind, so a
    keeper or a container never outlives the run and no cgroup or mount is left.
    """
    sweep_processes(b, path)
    destroy_native_cgroups(b, path / "ctr-root")
    mounted = [p for p in mount_points() if p.startswith(f"{path}/")]
    for point in sorted(mounted, key=len, reverse=True):
        b.quiet(["umount", "-l", point])
    if any(p.startswith(f"{path}/") for p in mount_points()):
        b.say(f"left {path} in place: mounts under it could not be removed")
        return
    shutil.rmtree(path, ignore_errors=True)


def mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def tied_to(pid: int, path: str, my_mnt_ns: str) -> bool:
    """Whether process `pid` belongs to this run: its command line, an open file or a
    mount of its own namespace names the run's (uniquely named) temp dir."""
    proc = Path(f"/proc/{pid}")
    if path in (proc / "cmdline").read_bytes().decode(errors="replace"):
        return True
    for link in [proc / "cwd", proc / "root", *(proc / "fd").iterdir()]:
        try:
            if os.readlink(link).startswith(path):
                return True
        except OSError:
            continue
    # A container's own mounts (the overlay on the run's layers) show only in its namespace;
    # in ours, every process would list any mount we have, so only other namespaces count.
    return os.readlink(proc / "ns/mnt") != my_mnt_ns and path in (proc / "mountinfo").read_text()


def sweep_processes(b: Bench, path: Path) -> None:
    """SIGKILL every process still tied to the run's temp dir, then wait (bounded) for them."""
    spared = {0, 1, os.getpid()}
    pid = os.getpid()
    while pid > 1:  # never ourselves or whoever started us
        pid = parent_of(pid)
        spared.add(pid)
    my_mnt_ns = os.readlink("/proc/self/ns/mnt")
    victims = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in spared:
            try:
                if tied_to(int(entry.name), str(path), my_mnt_ns):
                    victims[int(entry.name)] = start_time(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or a kernel thread
    for pid, started in victims.items():
        if start_time(pid) == started:  # the same process, not a reused pid
            b.say(f"cleanup: killing leftover pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(start_time(pid) == s for pid, s in victims.items()):
        time.sleep(0.1)


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, to tell a process from a later one with the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def destroy_native_cgroups(b: Bench, root: Path) -> None:
    """Remove the cgroups of native and lxc containers whose records are still there (their rm failed)."""
    records = list((root / "containers").glob("*/record.json"))
    names = set()
    for record in records:
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("backend") in ("native", "lxc") and doc.get("cgroup"):
            names.add(doc["cgroup"])
    if not names:
        return
    try:
        from ctr.errors import NotFound
        from ctr.native.cgroups.driver import cgroup_driver

        driver = cgroup_driver()
    except Exception as exc:
        b.say(f"cleanup: cannot load ctr's cgroup driver to remove {', '.join(sorted(names))}: {exc}")
        return
    for name in sorted(names):
        try:
            driver.open(name).destroy()
            b.say(f"cleanup: removed leftover cgroup {name}")
        except NotFound:
            pass
        except Exception as exc:
            b.say(f"cleanup: cannot remove cgroup {name}: {exc}")
