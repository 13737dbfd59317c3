"""Fixtures of the native unit tests: fake hosts for explain (tests/unit/native/explain_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.native.explain_fakes import FakeHost


@pytest.fixture
def v1(tmp_path: Path) -> FakeHost:
    host = FakeHost(tmp_path, "hybrid")
    host.container()
    host.cgroup_files(
        {
            "memory/memory.limit_in_bytes": "67108864\n",
            "memory/memory.usage_in_bytes": "1048576\n",
            "cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
            "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "cpu,cpuacct/cpu.shares": "1024\n",
            "pids/pids.max": "50\n",
            "pids/pids.current": "2\n",
            "freezer/freezer.state": "THAWED\n",
            "systemd/cgroup.procs": "",
        }
    )
    (host.cgroup_root / "unified" / "ctr-abc").mkdir()
    return host


@pytest.fixture
def v2(tmp_path: Path) -> FakeHost:
    host = FakeHost(tmp_path, "v2")
    host.container()
    host.cgroup_files(
        {
            "memory.max": "max\n",
            "memory.current": "2097152\n",
            "cpu.max": "150000 100000\n",
            "cpu.weight": "100\n",
            "pids.max": "50\n",
            "pids.current": "2\n",
            "cgroup.freeze": "1\n",
            "cgroup.events": "populated 1\nfrozen 1\n",
        }
    )
    return host
