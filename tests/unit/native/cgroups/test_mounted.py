"""Which v1 hierarchies and cgroup2 mounts a mountinfo text shows."""

from __future__ import annotations

from pathlib import Path

from ctr.native.cgroups.mounted import Hierarchy, is_cgroup2_mount, v1_hierarchies
from tests.unit.native.cgroups.fake_cgroupfs import SAMPLE_MOUNTINFO


def test_v1_mountinfo_parsing() -> None:
    root = Path("/sys/fs/cgroup")
    assert v1_hierarchies(SAMPLE_MOUNTINFO, root) == [
        Hierarchy(root / "cpu,cpuacct", ("cpu", "cpuacct")),
        Hierarchy(root / "cpuset", ("cpuset",)),
        Hierarchy(root / "memory", ("memory",)),  # not twice: /mnt/other place is the same hierarchy
        Hierarchy(root / "net_cls,net_prio", ("net_cls", "net_prio")),
        Hierarchy(root / "pids", ("pids",)),
        Hierarchy(root / "systemd", ("name=systemd",)),
        # freezer is hidden by the tmpfs mounted over it
    ]
    assert is_cgroup2_mount(root / "unified", SAMPLE_MOUNTINFO)
    assert not is_cgroup2_mount(root, SAMPLE_MOUNTINFO)
    assert v1_hierarchies(SAMPLE_MOUNTINFO, Path("/elsewhere")) == []
