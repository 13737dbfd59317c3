"""What both drivers share (base.Cgroup): the name check, the bounded kill, against the fake cgroupfs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ctr.errors import CtrError, InvalidSpec
from ctr.native.cgroups import cgroupfs
from ctr.native.cgroups.limits import Limits
from ctr.native.cgroups.v2 import CgroupV2
from tests.unit.native.cgroups.fake_cgroupfs import FakeCgroupfs, v2_root


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../etc", "/abs", ".hidden", "x" * 256, "a b"])
def test_name_validation(tmp_path: Path, fake: FakeCgroupfs, name: str) -> None:
    driver = CgroupV2(v2_root(tmp_path))
    with pytest.raises(InvalidSpec):
        driver.create(name, Limits())
    with pytest.raises(InvalidSpec):
        driver.open(name)
    assert [p.name for p in (tmp_path / "cg2").iterdir() if p.is_dir()] == []


def test_kill_all_is_bounded(tmp_path: Path, fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid that never leaves cgroup.procs (the fake does not update it) ends in an error, not a hang."""
    monkeypatch.setattr(cgroupfs, "TIMEOUT", 0.2)
    cg = CgroupV2(v2_root(tmp_path)).create("ctr-abc", Limits())
    proc = subprocess.Popen(["sleep", "60"])
    try:
        (cg.paths["unified"] / "cgroup.procs").write_text(f"{proc.pid}\n")
        with pytest.raises(CtrError, match="cannot empty cgroup ctr-abc"):
            cg.kill_all()
        assert proc.wait(timeout=5) == -9  # it was still sent SIGKILL
    finally:
        proc.kill()
        proc.wait()
