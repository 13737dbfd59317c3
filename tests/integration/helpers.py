"""What integration tests share: reading the kernel's view of a container from the host."""

from __future__ import annotations

import os
import re
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")
DEFAULT_CAPEFF = "00000000a80425fb"  # Docker's 14 capabilities


def ns_inode(pid: int | str, ns: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{ns}")


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def cgroup_dir(pid: int, controller: str) -> Path:
    """The host directory of pid's cgroup for a v1 controller (or v2 when controller is '')."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            base = Path("/sys/fs/cgroup") / (controller or "unified" if Path("/sys/fs/cgroup/memory").is_dir() else "")
            return base / path.lstrip("/")
    raise KeyError(controller)


def children(pid: int) -> list[int]:
    """pid's children, over all its threads; a thread or the process may end during the walk."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return out
    for task in tasks:
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread ended between the listing and the read
    return out


def leftover_cgroups() -> list[str]:
    found = []
    root = Path("/sys/fs/cgroup")
    for hierarchy in root.iterdir():
        if hierarchy.is_dir():
            found += [str(p) for p in hierarchy.glob("ctr-*") if not p.name.startswith("ctr-test-")]
    found += [str(p) for p in root.glob("ctr-*")]
    return found


def mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line]


@contextmanager
def foreground(cmd: list[str], ready: str = "ready", timeout: float = 30, env: dict[str, str] | None = None):
    """Start `ctr run` in the background of the test; yield (proc, container pid) once it printed `ready`."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == ready, (
            f"container did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        )
        deadline = time.monotonic() + timeout
        kids: list[int] = []
        while not kids and time.monotonic() < deadline:
            kids = children(proc.pid)
        yield proc, kids[0] if kids else None
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hex_mask(text: str) -> str:
    return re.sub(r"\s", "", text)


def read_until_closed(master: int, timeout: float = 60) -> bytes:
    """Everything written to a pty until its last slave fd closes (EIO); closes `master`."""
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return out
