"""Choosing the cgroup driver: detection from mountinfo, CTR_CGROUP_DRIVER."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctr.errors import BackendUnavailable, InvalidSpec
from ctr.native.cgroups.base import CgroupMount
from ctr.native.cgroups.driver import cgroup_driver
from ctr.native.cgroups.v2 import CgroupV2
from tests.unit.native.cgroups.fake_cgroupfs import SAMPLE_MOUNTINFO, fill

PURE_V2 = "30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_driver_detection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CTR_CGROUP_DRIVER", raising=False)
    v2 = tmp_path / "cg2"
    fill(v2, {"cgroup.controllers": "memory\n"})
    info_v2 = PURE_V2.replace("/sys/fs/cgroup", str(v2))
    assert cgroup_driver(v2, info_v2).version == 2
    assert cgroup_driver(Path("/sys/fs/cgroup"), SAMPLE_MOUNTINFO).version == 1
    with pytest.raises(BackendUnavailable, match="no cgroup filesystem is mounted at /nowhere"):
        cgroup_driver(Path("/nowhere"), SAMPLE_MOUNTINFO)


def test_driver_choice_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    fill(root / "unified", {"cgroup.controllers": "\n"})
    hybrid = SAMPLE_MOUNTINFO.replace("/sys/fs/cgroup", str(root))
    monkeypatch.setenv("CTR_CGROUP_DRIVER", "v2")
    driver = cgroup_driver(root, hybrid)
    assert isinstance(driver, CgroupV2) and driver.root == root / "unified"
    assert driver.container_mounts() == [CgroupMount("", "cgroup2", "")]
    monkeypatch.setenv("CTR_CGROUP_DRIVER", "v1")
    assert cgroup_driver(root, hybrid).version == 1
    with pytest.raises(BackendUnavailable, match="CTR_CGROUP_DRIVER=v1"):
        cgroup_driver(Path("/sys/fs/cgroup"), PURE_V2)
    monkeypatch.setenv("CTR_CGROUP_DRIVER", "v3")
    with pytest.raises(InvalidSpec):
        cgroup_driver(root, hybrid)
