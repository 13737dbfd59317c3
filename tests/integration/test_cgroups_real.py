"""The cgroup drivers against this machine's kernel, checked from outside.

v1 on the real hierarchies under /sys/fs/cgroup; v2 on the cgroup2 mount at
/sys/fs/cgroup/unified (hybrid hosts: a real cgroup2 without the useful controllers).
What the driver did is read back from the kernel files and /proc/PID/cgroup, not from
the driver. Every cgroup is named ctr-test-<random> and scrubbed by the fixture, even
when the driver under test is broken.
"""

from __future__ import annotations

import errno
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctr.errors import BackendUnavailable, Conflict, Unsupported
from ctr.native.cgroups import cgroupfs, prime
from ctr.native.cgroups.base import Cgroup
from ctr.native.cgroups.driver import cgroup_driver
from ctr.native.cgroups.limits import Limits
from ctr.native.cgroups.v1 import CgroupV1
from ctr.native.cgroups.v2 import CgroupV2

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root"),
]

ROOT = Path("/sys/fs/cgroup")
UNIFIED = ROOT / "unified"


def scrub(name: str) -> list[Path]:
    """Remove every trace of cgroup `name` without the driver; returns what was there."""
    found = sorted(ROOT.glob(f"*/{name}")) + ([ROOT / name] if (ROOT / name).is_dir() else [])
    for d in found:
        for f, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0"), ("cgroup.kill", "1")):
            if (d / f).exists():
                (d / f).write_text(value)
        for pid in (d / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        for _ in range(200):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.01)
    return found


@pytest.fixture
def name() -> Iterator[str]:
    n = f"ctr-test-{secrets.token_hex(4)}"
    yield n
    left = scrub(n)
    assert not left, f"the test left cgroups behind: {left}"


@pytest.fixture
def waiting() -> Iterator[subprocess.Popen]:
    """A shell that waits for a line on stdin, then execs sleep: new memory and CPU time are
    charged only after it joined the cgroup."""
    proc = subprocess.Popen(["sh", "-c", "read x; exec sleep 60"], stdin=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.wait()


def release(proc: subprocess.Popen) -> None:
    """Let the waiting shell exec sleep, and wait until it did."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    for _ in range(500):
        if Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep":
            return
        time.sleep(0.01)
    raise AssertionError("the shell did not exec sleep")


def proc_cgroups(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup as {controllers: path}; the v2 line has controllers ""."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {ctl: path for _, ctl, path in (line.split(":", 2) for line in lines)}


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def v1() -> CgroupV1:
    try:
        return CgroupV1()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def v2() -> CgroupV2:
    try:
        return CgroupV2(UNIFIED)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


# --- v1 -----------------------------------------------------------------------------------


def test_this_machine_is_v1_hybrid() -> None:
    driver = cgroup_driver()
    if driver.version != 1:
        pytest.skip(f"this machine uses {driver.describe()}")
    assert driver.describe() == ("cgroup v1 (hybrid)" if UNIFIED.is_dir() else "cgroup v1")
    options = {m.options for m in driver.container_mounts()}
    assert {"memory", "pids", "freezer", "name=systemd"} <= options


def test_prime_attach_moves_nothing_and_warms_the_next_move(v1: CgroupV1, name: str, waiting: subprocess.Popen) -> None:
    """The priming writes leave ctr where it was, end by themselves, and a move made while
    they run goes through (its time is printed, not asserted: timing belongs in bench/)."""
    before = Path("/proc/self/cgroup").read_text()
    cg = v1.create(name, Limits())
    try:
        prime.prime_attach()
        time.sleep(0.05)  # long after the first priming write, which paid the wait
        started = time.monotonic()
        cg.add(waiting.pid)
        took = time.monotonic() - started
        prime.stop_priming()
        deadline = time.monotonic() + 2
        while prime._prime["running"] and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not prime._prime["running"]
        assert Path("/proc/self/cgroup").read_text() == before
        assert str(waiting.pid) in (ROOT / "pids" / name / "cgroup.procs").read_text().split()
        print(f"move while primed: {took * 1000:.2f} ms")
    finally:
        waiting.kill()
        waiting.wait()
        cg.destroy()


def test_v1_lifecycle(v1: CgroupV1, name: str, waiting: subprocess.Popen) -> None:
    cg = v1.create(name, Limits(memory=64 << 20, cpus=0.5, pids=50))
    mem, cpu, pids = ROOT / "memory" / name, cg.paths["cpu"], ROOT / "pids" / name
    assert (mem / "memory.limit_in_bytes").read_text() == f"{64 << 20}\n"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (pids / "pids.max").read_text() == "50\n"
    if "cpuset" in cg.paths:
        assert (ROOT / "cpuset" / name / "cpuset.cpus").read_text() == (ROOT / "cpuset" / "cpuset.cpus").read_text()
    if "devices" in cg.paths:
        rules = (ROOT / "devices" / name / "devices.list").read_text().splitlines()
        assert "a *:* rwm" not in rules and "c 1:3 rwm" in rules and "c 136:* rwm" in rules
    with pytest.raises(Conflict):
        v1.create(name, Limits())

    cg.add(waiting.pid)
    release(waiting)
    seen = proc_cgroups(waiting.pid)
    for h in v1.hierarchies:
        assert seen[",".join(h.controllers)] == f"/{name}"
    assert cg.pids() == [waiting.pid]
    assert v1.open(name).pids() == [waiting.pid]
    assert cg.limits() == Limits(memory=64 << 20, cpus=0.5, pids=50)

    stats = cg.stats()
    assert stats["memory_usage"] > 0 and stats["memory_limit"] == 64 << 20
    assert stats["cpu_usage_ns"] > 0
    assert stats["pids_current"] == 1 and stats["pids_limit"] == 50

    cg.freeze()
    assert (ROOT / "freezer" / name / "freezer.state").read_text() == "FROZEN\n"
    assert state(waiting.pid) == "D"  # v1 frozen tasks sleep uninterruptibly in the refrigerator
    assert cg.frozen()
    cg.thaw()
    assert (ROOT / "freezer" / name / "freezer.state").read_text() == "THAWED\n"
    assert state(waiting.pid) == "S" and not cg.frozen()

    cg.kill_all()
    assert waiting.wait(timeout=5) == -9
    assert cg.pids() == []
    cg.destroy()
    assert list(ROOT.glob(f"*/{name}")) == []
    cg.destroy()


def test_v1_kill_all_while_frozen_and_many_processes(v1: CgroupV1, name: str, waiting: subprocess.Popen) -> None:
    cg = v1.create(name, Limits(pids=100))
    cg.add(waiting.pid)
    waiting.stdin.write(b"go\n")  # type: ignore[union-attr]
    waiting.stdin.flush()  # type: ignore[union-attr]
    forker = subprocess.Popen(
        ["sh", "-c", "read x; for i in 1 2 3 4 5; do sleep 60 & done; wait"], stdin=subprocess.PIPE
    )
    try:
        cg.add(forker.pid)
        forker.stdin.write(b"go\n")  # type: ignore[union-attr]
        forker.stdin.flush()  # type: ignore[union-attr]
        for _ in range(500):
            if len(cg.pids()) >= 7:
                break
            time.sleep(0.01)
        assert len(cg.pids()) == 7
        cg.freeze()
        cg.destroy()  # kills while frozen, thaws, waits, removes
        assert forker.wait(timeout=5) == -9 and waiting.wait(timeout=5) == -9
        assert list(ROOT.glob(f"*/{name}")) == []
    finally:
        forker.kill()
        forker.wait()


def test_v1_oom_kill_is_reported(v1: CgroupV1, name: str) -> None:
    cg = v1.create(name, Limits(memory=32 << 20))
    hog = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read(1); b = b'x' * (256 << 20)"], stdin=subprocess.PIPE
    )
    try:
        assert not cg.oom_killed()
        cg.add(hog.pid)
        hog.stdin.write(b"x")  # type: ignore[union-attr]
        hog.stdin.close()  # type: ignore[union-attr]
        assert hog.wait(timeout=30) == -9
        assert cg.oom_killed()
    finally:
        hog.kill()
        hog.wait()
    cg.destroy()


# --- v2 (the hybrid host's unified mount) ----------------------------------------------------


def test_v2_lifecycle(v2: CgroupV2, name: str, waiting: subprocess.Popen, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[str, str]] = []
    real_write = cgroupfs.write

    def recording_write(path: Path, value: str) -> None:
        writes.append((path.name, value))
        real_write(path, value)

    monkeypatch.setattr(cgroupfs, "write", recording_write)
    cg = v2.create(name, Limits())
    assert cg.paths == {"unified": UNIFIED / name}
    cg.add(waiting.pid)
    release(waiting)
    assert proc_cgroups(waiting.pid)[""] == f"/{name}"
    assert cg.pids() == [waiting.pid]

    cg.freeze()
    assert "frozen 1" in (UNIFIED / name / "cgroup.events").read_text() and cg.frozen()
    cg.thaw()
    assert "frozen 0" in (UNIFIED / name / "cgroup.events").read_text() and not cg.frozen()

    assert cg.stats()["cpu_usage_ns"] > 0  # cpu.stat is a core file, no controller needed
    cg.freeze()  # stopping a paused container: cgroup.kill reaches frozen tasks too
    cg.kill_all()
    assert ("cgroup.kill", "1") in writes
    assert waiting.wait(timeout=5) == -9
    cg.destroy()
    assert not (UNIFIED / name).exists()
    cg.destroy()


@pytest.mark.parametrize(
    "limits, controller",
    [(Limits(memory=64 << 20), "memory"), (Limits(cpus=0.5), "cpu"), (Limits(pids=10), "pids")],
)
def test_v2_limit_without_controller_is_unsupported(v2: CgroupV2, name: str, limits: Limits, controller: str) -> None:
    if controller in (UNIFIED / "cgroup.controllers").read_text().split():
        pytest.skip(f"the {controller} controller is available in {UNIFIED} here")
    before = (UNIFIED / "cgroup.subtree_control").read_text()
    with pytest.raises(Unsupported, match=f"the {controller} controller is not enabled in {UNIFIED}"):
        v2.create(name, limits)
    assert not (UNIFIED / name).exists()
    assert (UNIFIED / "cgroup.subtree_control").read_text() == before


# --- device policy, enforced by the kernel ----------------------------------------------------

OPEN_PROBE = """
import os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDONLY))
        print(path, "ok")
    except OSError as exc:
        print(path, exc.errno)
"""


def _nodes(tmp_path: Path) -> list[str]:
    """A block device node (loop0) and /dev/mem's node, made outside /dev."""
    blk, mem = tmp_path / "blk", tmp_path / "mem"
    os.mknod(blk, 0o600 | 0o060000, os.makedev(7, 0))
    os.mknod(mem, 0o600 | 0o020000, os.makedev(1, 1))
    return ["/dev/null", str(blk), str(mem)]


def _probe_in(cg: Cgroup, paths: list[str]) -> dict[str, str]:
    """Run OPEN_PROBE as a process that joined `cg` before it exec'd; {path: 'ok' or errno}."""
    proc = subprocess.Popen(
        ["sh", "-c", 'read x; exec "$0" "$@"', sys.executable, "-c", OPEN_PROBE, *paths],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        cg.add(proc.pid)
        out, _ = proc.communicate("go\n", timeout=10)
    finally:
        proc.kill()
        proc.wait()
    return dict(line.split() for line in out.splitlines() if line)


def test_v2_device_program_is_enforced_and_reads_back(v2: CgroupV2, name: str, tmp_path: Path) -> None:
    from ctr.native import bpf_devices
    from ctr.native.devices import device_policy, effective

    paths = _nodes(tmp_path)
    cg = v2.create(name, Limits())
    ids = bpf_devices.query(UNIFIED / name)
    assert len(ids) == 1
    info = bpf_devices.info(ids[0])
    assert info.name == bpf_devices.PROG_NAME
    assert bpf_devices.decode(info.code) == effective(device_policy())
    assert _probe_in(cg, paths) == {paths[0]: "ok", paths[1]: str(errno.EPERM), paths[2]: str(errno.EPERM)}
    cg.destroy()


def test_v1_devices_list_is_dockers_default(v1: CgroupV1, name: str, tmp_path: Path) -> None:
    if "devices" not in {c for h in v1.hierarchies for c in h.controllers}:
        pytest.skip("no v1 devices hierarchy here")
    paths = _nodes(tmp_path)
    cg = v1.create(name, Limits())
    listed = (cg.paths["devices"] / "devices.list").read_text().split("\n")
    assert "c 1:3 rwm" in listed and "b *:* m" in listed and not any(r.startswith("a") for r in listed)
    assert _probe_in(cg, paths) == {paths[0]: "ok", paths[1]: str(errno.EPERM), paths[2]: str(errno.EPERM)}
    cg.destroy()
