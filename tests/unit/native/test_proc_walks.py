"""Walks over /proc and cgroupfs meet entries that vanish mid-walk: a thread that ends, a
cgroup the container removes, a process that exits. That is ordinary and must never raise."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctr.native.cgroups import cgroupfs
from ctr.native.cgroups.limits import Limits
from ctr.native.cgroups.v2 import CgroupV2
from tests.integration.helpers import children
from tests.unit.native.cgroups.fake_cgroupfs import FakeCgroupfs, fill, v2_root


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
    return FakeCgroupfs(tmp_path, monkeypatch)


def vanishing_reads(monkeypatch: pytest.MonkeyPatch, gone: set[str], code: int) -> None:
    """Reads of the named files fail as the kernel fails them for a cgroup removed between
    open and read (ENODEV) or before the open (ENOENT)."""
    real = cgroupfs.read

    def read(path: Path) -> str:
        if str(path) in gone:
            raise OSError(code, os.strerror(code), str(path))
        return real(path)

    monkeypatch.setattr(cgroupfs, "read", read)


@pytest.mark.parametrize("code", [errno.ENODEV, errno.ENOENT])
def test_pids_skip_a_child_cgroup_removed_mid_walk(tmp_path, fake, monkeypatch, code) -> None:
    cg = CgroupV2(v2_root(tmp_path)).create("ctr-walk", Limits())
    top = cg.paths["unified"]
    (top / "cgroup.procs").write_text("10\n11\n")
    fill(top / "sub", {"cgroup.procs": "12\n"})
    fill(top / "gone", {"cgroup.procs": "13\n"})
    vanishing_reads(monkeypatch, {str(top / "gone" / "cgroup.procs")}, code)
    assert cg.pids() == [10, 11, 12]


@pytest.mark.parametrize("code", [errno.ENODEV, errno.ENOENT])
def test_stats_and_freezer_of_a_removed_cgroup_are_empty_not_errors(tmp_path, fake, monkeypatch, code) -> None:
    cg = CgroupV2(v2_root(tmp_path)).create("ctr-walk", Limits(memory=64 << 20))
    top = cg.paths["unified"]
    vanishing_reads(monkeypatch, {str(p) for p in top.iterdir()}, code)
    assert cg.stats() == {
        "memory_usage": None,
        "memory_limit": None,
        "cpu_usage_ns": None,
        "pids_current": None,
        "pids_limit": None,
    }
    assert not cg.frozen() and not cg.oom_killed()
    assert cg.pids() == []


def test_other_read_errors_still_raise(tmp_path, fake, monkeypatch) -> None:
    cg = CgroupV2(v2_root(tmp_path)).create("ctr-walk", Limits())
    vanishing_reads(monkeypatch, {str(cg.paths["unified"] / "memory.current")}, errno.EACCES)
    with pytest.raises(PermissionError):
        cg.stats()


def test_children_of_a_process_whose_threads_come_and_go() -> None:
    """The race issue 13 saw: a thread ends between listing /proc/PID/task and reading its
    children. A real process churns short threads for at most 3 s while we walk it."""
    churn = (
        "import threading, time\n"
        "end = time.monotonic() + 3\n"
        "while time.monotonic() < end:\n"
        "    ts = [threading.Thread(target=lambda: None) for _ in range(8)]\n"
        "    [t.start() for t in ts]; [t.join() for t in ts]\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", churn])
    try:
        deadline = time.monotonic() + 2
        walks = 0
        while time.monotonic() < deadline and walks < 20000:
            assert children(proc.pid) == []
            walks += 1
    finally:
        proc.kill()
        proc.wait()
    assert children(proc.pid) == []  # reaped: no /proc entry at all
