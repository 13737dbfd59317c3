"""Priming the kernel's cgroup lock: which cgroup.procs, bounded, best effort."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from ctr.native.cgroups import cgroupfs, prime


def _procs_file(root: Path, *parts: str) -> Path:
    d = root.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    (d / "cgroup.procs").write_text("")
    return d / "cgroup.procs"


def test_own_procs_takes_the_first_mounted_v1_hierarchy_and_skips_named_ones(tmp_path: Path) -> None:
    procs = _procs_file(tmp_path, "pids", "user.slice")
    _procs_file(tmp_path, "unified", "user.slice")
    text = "13:name=systemd:/user.slice\n12:misc:/\n11:pids:/user.slice\n0::/user.slice\n"
    # misc is not mounted here: the next hierarchy that is serves as well.
    assert prime._own_procs(text, tmp_path) == procs


def test_own_procs_on_v2_and_on_hybrid(tmp_path: Path) -> None:
    v2 = _procs_file(tmp_path / "v2", "a", "b")
    assert prime._own_procs("0::/a/b\n", tmp_path / "v2") == v2
    hybrid = _procs_file(tmp_path / "hy", "unified", "a")
    assert prime._own_procs("0::/a\n", tmp_path / "hy") == hybrid
    assert prime._own_procs("0::/elsewhere\n", tmp_path / "hy") is None


def test_prime_attach_rewrites_our_pid_until_stopped_then_ends(tmp_path: Path, monkeypatch) -> None:
    procs = _procs_file(tmp_path, "a")
    monkeypatch.setattr(cgroupfs, "read", lambda path: "0::/a\n")
    writes: list[str] = []
    monkeypatch.setattr(cgroupfs, "write", lambda path, value: writes.append((path, value)))
    prime.prime_attach(tmp_path)
    deadline = time.monotonic() + 2
    while len(writes) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    prime.stop_priming()
    while prime._prime["running"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not prime._prime["running"]
    assert len(writes) >= 3 and set(writes) == {(procs, str(os.getpid()))}


def test_prime_attach_is_bounded_without_a_stop(tmp_path: Path, monkeypatch) -> None:
    _procs_file(tmp_path, "a")
    monkeypatch.setattr(cgroupfs, "read", lambda path: "0::/a\n")
    monkeypatch.setattr(cgroupfs, "write", lambda path, value: None)
    monkeypatch.setattr(prime, "PRIME_SECONDS", 0.05)
    started = time.monotonic()
    prime.prime_attach(tmp_path)
    while prime._prime["running"] and time.monotonic() - started < 2:
        time.sleep(0.005)
    assert not prime._prime["running"]


def test_prime_attach_ignores_an_unwritable_cgroup(tmp_path: Path, monkeypatch) -> None:
    _procs_file(tmp_path, "a")
    monkeypatch.setattr(cgroupfs, "read", lambda path: "0::/a\n")

    def refuse(path, value):
        raise OSError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(cgroupfs, "write", refuse)
    prime.prime_attach(tmp_path)  # nothing raised here, and the thread ends at once
    deadline = time.monotonic() + 2
    while prime._prime["running"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not prime._prime["running"]
