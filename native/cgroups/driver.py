"""Choosing the cgroup driver for this host, as runc's `manager.New` and youki's
`create_cgroup_manager` do: v2 on a cgroup2 mount, v1 when v1 hierarchies are mounted,
or the one CTR_CGROUP_DRIVER forces."""

from __future__ import annotations

import os
from pathlib import Path

from ctr.errors import BackendUnavailable, InvalidSpec
from ctr.native.cgroups.base import CgroupDriver
from ctr.native.cgroups.cgroupfs import DEFAULT_ROOT
from ctr.native.cgroups.mounted import is_cgroup2_mount, read_mountinfo, v1_hierarchies
from ctr.native.cgroups.v1 import CgroupV1
from ctr.native.cgroups.v2 import CgroupV2

ENV_DRIVER = "CTR_CGROUP_DRIVER"


def cgroup_driver(root: Path = DEFAULT_ROOT, mountinfo: str | None = None) -> CgroupDriver:
    """Detect and pick the driver: v2 when `root` is a cgroup2 mount, v1 when v1 hierarchies
    are mounted under it. CTR_CGROUP_DRIVER=v1|v2 forces one; forced v2 on a hybrid host
    uses the cgroup2 mount at root/unified. `mountinfo` (text) replaces /proc/self/mountinfo.
    """
    root = Path(root)
    text = read_mountinfo() if mountinfo is None else mountinfo
    choice = os.environ.get(ENV_DRIVER, "")
    if choice not in ("", "v1", "v2"):
        raise InvalidSpec(f"{ENV_DRIVER}={choice!r}: must be v1 or v2")
    if choice == "v2":
        for candidate in (root, root / "unified"):
            if is_cgroup2_mount(candidate, text):
                return CgroupV2(candidate)
        raise BackendUnavailable(
            f"{ENV_DRIVER}=v2 but no cgroup2 filesystem is mounted at {root} or {root / 'unified'}: "
            f"mount it with `mount -t cgroup2 none {root}`"
        )
    if choice == "" and is_cgroup2_mount(root, text):
        return CgroupV2(root)
    if v1_hierarchies(text, root):
        return CgroupV1(root, text)
    if choice == "v1":
        raise BackendUnavailable(f"{ENV_DRIVER}=v1 but no cgroup v1 hierarchy is mounted under {root}")
    raise BackendUnavailable(
        f"no cgroup filesystem is mounted at {root}: mount cgroup2 there "
        f"(`mount -t cgroup2 none {root}`) or the cgroup v1 hierarchies under it"
    )
