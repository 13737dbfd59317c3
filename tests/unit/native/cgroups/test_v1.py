"""The cgroup v1 driver against the fake cgroupfs: one directory per hierarchy, exact writes."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ctr.errors import Conflict, Unsupported
from ctr.native.cgroups.base import CgroupMount
from ctr.native.cgroups.limits import Limits
from ctr.native.cgroups.v1 import CgroupV1
from tests.unit.native.cgroups.fake_cgroupfs import SAMPLE_MOUNTINFO, FakeCgroupfs, v1_tree


def test_v1_extra_device_rules_are_written_after_the_default(tmp_path: Path, fake: FakeCgroupfs) -> None:
    from ctr.native.devices import device_policy, parse_rule

    root, mountinfo = v1_tree(tmp_path)
    CgroupV1(root, mountinfo).create("ctr-abc", Limits(), devices=device_policy([parse_rule("b 8:0 rw")]))
    devices = fake.written("v1/devices/ctr-abc")
    assert devices[0] == ("v1/devices/ctr-abc/devices.deny", "a")
    assert devices[-1] == ("v1/devices/ctr-abc/devices.allow", "b 8:0 rw")


def test_v1_container_mounts() -> None:
    driver = CgroupV1(Path("/sys/fs/cgroup"), SAMPLE_MOUNTINFO)
    assert driver.describe() == "cgroup v1 (hybrid)"
    assert driver.container_mounts() == [
        CgroupMount("cpu,cpuacct", "cgroup", "cpu,cpuacct", ("cpu", "cpuacct")),
        CgroupMount("cpuset", "cgroup", "cpuset"),
        CgroupMount("memory", "cgroup", "memory"),
        CgroupMount("net_cls,net_prio", "cgroup", "net_cls,net_prio", ("net_cls", "net_prio")),
        CgroupMount("pids", "cgroup", "pids"),
        CgroupMount("systemd", "cgroup", "name=systemd"),
    ]


def test_v1_create_writes_exact_values(tmp_path: Path, fake: FakeCgroupfs) -> None:
    root, mountinfo = v1_tree(tmp_path)
    driver = CgroupV1(root, mountinfo)
    assert driver.describe() == "cgroup v1"
    cg = driver.create("ctr-abc", Limits(memory=64 << 20, cpus=0.25, pids=-1))
    assert set(cg.paths) == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids", "name=systemd"}
    assert cg.paths["cpu"] == cg.paths["cpuacct"] == root / "cpu,cpuacct" / "ctr-abc"
    assert fake.writes == [
        ("v1/cpuset/ctr-abc/cpuset.cpus", "0-3"),
        ("v1/cpuset/ctr-abc/cpuset.mems", "0"),
        ("v1/devices/ctr-abc/devices.deny", "a"),
        *[
            ("v1/devices/ctr-abc/devices.allow", rule)
            for rule in (
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:1 rwm",
                "c 5:2 rwm",
                "c 136:* rwm",
                "c 10:200 rwm",
            )
        ],
        ("v1/memory/ctr-abc/memory.limit_in_bytes", "67108864"),
        ("v1/cpu,cpuacct/ctr-abc/cpu.cfs_period_us", "100000"),
        ("v1/cpu,cpuacct/ctr-abc/cpu.cfs_quota_us", "25000"),
        ("v1/pids/ctr-abc/pids.max", "max"),
    ]
    assert cg.limits() == Limits(memory=64 << 20, cpus=0.25, pids=None)
    assert cg.stats() == {
        "memory_usage": 0,
        "memory_limit": 64 << 20,
        "cpu_usage_ns": 0,
        "pids_current": 0,
        "pids_limit": None,
    }
    with pytest.raises(Conflict):
        driver.create("ctr-abc", Limits())
    cg.freeze()
    assert cg.frozen()
    cg.thaw()
    assert not cg.frozen()
    cg.destroy()
    cg.destroy()
    assert not list(root.glob("*/ctr-abc"))


def test_v1_failure_removes_every_directory(tmp_path: Path, fake: FakeCgroupfs) -> None:
    root, mountinfo = v1_tree(tmp_path)
    fake.fail["memory.limit_in_bytes"] = errno.EINVAL
    with pytest.raises(OSError) as exc:
        CgroupV1(root, mountinfo).create("ctr-abc", Limits(memory=1))
    assert exc.value.filename.endswith("memory/ctr-abc/memory.limit_in_bytes")
    assert not list(root.glob("*/ctr-abc"))


def test_v1_missing_hierarchy_is_unsupported(tmp_path: Path, fake: FakeCgroupfs) -> None:
    root, mountinfo = v1_tree(tmp_path)
    mountinfo = "\n".join(line for line in mountinfo.splitlines() if "rw,pids" not in line)
    with pytest.raises(Unsupported, match="pids cgroup hierarchy is not mounted"):
        CgroupV1(root, mountinfo).create("ctr-abc", Limits(pids=10))
    assert not list(root.glob("*/ctr-abc"))
