"""Helpers of the lxc backend's integration tests (test_lxc_*.py): running containers
through the backend and the CLI, on a pty, detached, and what a container could leave behind
(the autouse nothing_left fixture, which each test module imports)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ctr.spec import ContainerSpec

LONG = ["sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 60 & wait"]
CGROUP = Path("/sys/fs/cgroup")
LXC_LOCKS = Path("/run/lxc/lock")


def run(backend, capfd, *command: str, image: str = "busybox", **fields) -> tuple[int, str, str]:
    """backend.run() on a --rm container; returns (exit code, stdout, stderr)."""
    capfd.readouterr()
    code = backend.run(ContainerSpec(image=image, command=command, auto_remove=True, **fields))
    out, err = capfd.readouterr()
    return code, out, err


def lxc_cli(ctr, *args: str, **kw):
    return ctr("--backend", "lxc", *args, **kw)


def record(paths, name: str) -> dict:
    return json.loads((paths.containers / name / "record.json").read_text())


def lxc_cgroups() -> list[Path]:
    """The lxc backend's cgroups (ctr-lxc-<id>[.monitor|.pivot]) in every hierarchy."""
    found: list[Path] = []
    for hierarchy in [CGROUP, *CGROUP.iterdir()]:
        if hierarchy.is_dir():
            found += [p for p in hierarchy.glob("ctr-lxc-*") if p.is_dir()]
    return found


def foreign(cgroup: Path, paths) -> bool:
    """Whether a ctr-lxc-* cgroup is another ctr's (a test run beside ours on this host): it
    has processes, and none of them is ours: neither PID 1 (whose mount table shows our layers)
    nor a liblxc monitor (which keeps our lxcpath's log open)."""
    base = cgroup.name.split(".")[0]
    pids = set()
    for d in cgroup.parent.glob(f"{base}*"):
        with contextlib.suppress(OSError):
            pids.update((d / "cgroup.procs").read_text().split())
    for pid in pids:
        with contextlib.suppress(OSError):
            if str(paths.data) in Path(f"/proc/{pid}/mountinfo").read_text():
                return False
            if any(str(paths.data) in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")):
                return False
    return bool(pids)


def leftovers(paths) -> list[str]:
    """What a finished container could leave behind: LXC dirs, cgroups, mounts, runtime dirs."""
    found = []
    lxcpath = paths.data / "lxc"
    if lxcpath.exists():
        found += [f"lxc container {p}" for p in lxcpath.iterdir()]
    found += [f"cgroup {p}" for p in lxc_cgroups() if not foreign(p, paths)]
    found += [
        f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(paths.data) in line
    ]
    if paths.runtime.exists():
        found += [f"runtime dir {p}" for p in paths.runtime.iterdir()]
    lock_dir = LXC_LOCKS / str(lxcpath).lstrip("/")  # liblxc's lock files of ctr's lxcpath
    if lock_dir.is_dir():
        found += [f"liblxc lock {p}" for p in lock_dir.iterdir()]
    return found


@pytest.fixture(autouse=True)
def nothing_left(paths):
    # cgroups are the host's: another test run on this machine may have its own ctr-lxc-* ones
    # (see foreign()), and what was left before this test is not its doing.
    before = set(leftovers(paths))

    def new() -> list[str]:
        return [item for item in leftovers(paths) if item not in before]

    yield new
    deadline = time.monotonic() + 10  # a monitor killed by a test may still be tidying up
    while new() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert new() == []


@contextmanager
def running(ctr, paths, name: str, *args: str, timeout: float = 30):
    """`ctr --backend lxc run --name NAME ARGS` in the background; yields (proc, pid of PID 1)
    once the container printed "ready" and ctr recorded PID 1."""
    proc = subprocess.Popen(
        [*ctr.args_prefix, "--backend", "lxc", "run", "--name", name, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = None
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", (
            f"container did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        )
        deadline = time.monotonic() + timeout
        while pid is None and time.monotonic() < deadline:
            try:
                pid = record(paths, name)["pid"]
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.02)
        assert pid, "ctr never recorded PID 1"
        yield proc, pid
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            if pid:  # PID 1 ignored SIGTERM: end it, and ctr with it
                os.kill(pid, signal.SIGKILL)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pty_run(ctr, *args: str, **kw) -> tuple[int, bytes]:
    """`ctr run --rm ARGS` on a fresh pseudo-terminal (see pty_cli)."""
    return pty_cli(ctr, "run", "--rm", *args, **kw)


def pty_cli(
    ctr, *args: str, rows: int = 33, cols: int = 101, send: bytes = b"", when: bytes = b"ready"
) -> tuple[int, bytes]:
    """Run the CLI on a fresh pseudo-terminal, type `send` once it printed `when`;
    returns (exit code, everything it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        [*ctr.args_prefix, "--backend", "lxc", *args], stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    out = b""
    while True:
        if send and when in out:
            os.write(master, send)
            send = b""
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=60), out


def detached(ctr, paths, name: str, *args: str) -> dict:
    """`ctr --backend lxc run -d --name NAME ARGS`; returns the record as `run -d` left it."""
    r = lxc_cli(ctr, "run", "-d", "--name", name, *args)
    assert r.returncode == 0, r.stderr
    return record(paths, name)


def ps(ctr, name: str) -> dict | None:
    rows = json.loads(lxc_cli(ctr, "ps", "-a", "--format", "json").stdout)
    return next((r for r in rows if r["name"] == name), None)


def wait_until(check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def traces(paths, name: str, cid: str) -> list[str]:
    """Everything of container `name` (id `cid`) that could outlive it."""
    found = [
        str(p)
        for p in (
            paths.containers / name,
            paths.data / "lxc" / name,
            paths.runtime / name,
            LXC_LOCKS / str(paths.data / "lxc").lstrip("/") / f".{name}",
        )
        if p.exists()
    ]
    return found + [str(p) for p in lxc_cgroups() if cid in p.name]
