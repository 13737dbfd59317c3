"""The cgroup v2 driver against the fake cgroupfs: exact writes, controllers, devices, cleanup."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ctr.errors import BackendUnavailable, Conflict, NotFound, Unsupported
from ctr.native.cgroups import v2
from ctr.native.cgroups.limits import Limits
from ctr.native.cgroups.v2 import CgroupV2
from tests.unit.native.cgroups.fake_cgroupfs import DOCKER_DEVICES, FakeCgroupfs, v2_root


def test_v2_create_writes_exact_values(tmp_path: Path, fake: FakeCgroupfs) -> None:
    driver = CgroupV2(v2_root(tmp_path))
    cg = driver.create("ctr-abc", Limits(memory=256 * 1024 * 1024, cpus=0.5, pids=100))
    assert fake.writes == [
        ("cg2/cgroup.subtree_control", "+cpu"),
        ("cg2/cgroup.subtree_control", "+memory"),
        ("cg2/cgroup.subtree_control", "+pids"),
        ("cg2/ctr-abc/memory.max", "268435456"),
        ("cg2/ctr-abc/cpu.max", "50000 100000"),
        ("cg2/ctr-abc/pids.max", "100"),
        ("cg2/ctr-abc/<bpf device program>", DOCKER_DEVICES),
    ]
    assert cg.paths == {"unified": tmp_path / "cg2" / "ctr-abc"}
    assert cg.limits() == Limits(memory=268435456, cpus=0.5, pids=100)


def test_v2_unlimited_pids_and_fractional_cpus(tmp_path: Path, fake: FakeCgroupfs) -> None:
    CgroupV2(v2_root(tmp_path)).create("ctr-abc", Limits(cpus=1.5, pids=-1))
    assert fake.written("cg2/ctr-abc") == [
        ("cg2/ctr-abc/cpu.max", "150000 100000"),
        ("cg2/ctr-abc/pids.max", "max"),
        ("cg2/ctr-abc/<bpf device program>", DOCKER_DEVICES),
    ]


def test_v2_enables_only_listed_controllers_not_yet_enabled(tmp_path: Path, fake: FakeCgroupfs) -> None:
    root = v2_root(tmp_path, controllers="memory pids io")
    (root / "cgroup.subtree_control").write_text("pids\n")
    CgroupV2(root).create("ctr-abc", Limits())
    assert fake.writes == [
        ("cg2/cgroup.subtree_control", "+memory"),
        ("cg2/ctr-abc/<bpf device program>", DOCKER_DEVICES),
    ]


@pytest.mark.parametrize(
    "limits, flag, controller",
    [
        (Limits(memory=64 << 20), "--memory", "memory"),
        (Limits(cpus=1.0), "--cpus", "cpu"),
        (Limits(pids=10), "--pids-limit", "pids"),
    ],
)
def test_v2_missing_controller_is_unsupported(
    tmp_path: Path, fake: FakeCgroupfs, limits: Limits, flag: str, controller: str
) -> None:
    root = v2_root(tmp_path, controllers="io hugetlb")
    with pytest.raises(Unsupported) as exc:
        CgroupV2(root).create("ctr-abc", limits)
    assert exc.value.feature == flag
    assert f"the {controller} controller is not enabled in {root}" in str(exc.value)
    assert not (root / "ctr-abc").exists()
    assert fake.writes == []


def test_v2_unlimited_pids_needs_no_controller(tmp_path: Path, fake: FakeCgroupfs) -> None:
    cg = CgroupV2(v2_root(tmp_path, controllers="")).create("ctr-abc", Limits(pids=-1))
    assert fake.writes == [("cg2/ctr-abc/<bpf device program>", DOCKER_DEVICES)]
    assert cg.limits() == Limits()


def test_v2_extra_device_rules_follow_the_default(tmp_path: Path, fake: FakeCgroupfs) -> None:
    from ctr.native.devices import device_policy, parse_rule

    CgroupV2(v2_root(tmp_path)).create("ctr-abc", Limits(), devices=device_policy([parse_rule("b 8:0 rw")]))
    assert fake.written("cg2/ctr-abc") == [("cg2/ctr-abc/<bpf device program>", DOCKER_DEVICES + "; b 8:0 rw")]


def test_v2_device_program_refused_removes_the_cgroup(
    tmp_path: Path, fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, rules) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(v2, "_attach_devices", refuse)
    root = v2_root(tmp_path)
    with pytest.raises(OSError):
        CgroupV2(root).create("ctr-abc", Limits())
    assert not (root / "ctr-abc").exists()


def test_v2_failed_limit_removes_the_cgroup(tmp_path: Path, fake: FakeCgroupfs) -> None:
    root = v2_root(tmp_path)
    fake.fail["cpu.max"] = errno.EINVAL
    with pytest.raises(OSError) as exc:
        CgroupV2(root).create("ctr-abc", Limits(memory=64 << 20, cpus=0.001))
    assert exc.value.errno == errno.EINVAL and exc.value.filename.endswith("ctr-abc/cpu.max")
    assert not (root / "ctr-abc").exists()


def test_v2_conflict_and_open(tmp_path: Path, fake: FakeCgroupfs) -> None:
    driver = CgroupV2(v2_root(tmp_path))
    with pytest.raises(NotFound):
        driver.open("ctr-abc")
    cg = driver.create("ctr-abc", Limits())
    with pytest.raises(Conflict):
        driver.create("ctr-abc", Limits())
    assert driver.open("ctr-abc").paths == cg.paths


def test_v2_destroy_is_idempotent(tmp_path: Path, fake: FakeCgroupfs) -> None:
    driver = CgroupV2(v2_root(tmp_path))
    cg = driver.create("ctr-abc", Limits(memory=64 << 20))
    fake.mkdir(cg.paths["unified"] / "inner")  # a cgroup the container made inside its own
    cg.destroy()
    assert ("cg2/ctr-abc/cgroup.kill", "1") in fake.writes
    assert not (tmp_path / "cg2" / "ctr-abc").exists()
    cg.destroy()
    with pytest.raises(NotFound):
        driver.open("ctr-abc")


def test_v2_freeze_stats_oom(tmp_path: Path, fake: FakeCgroupfs) -> None:
    cg = CgroupV2(v2_root(tmp_path)).create("ctr-abc", Limits(memory=64 << 20, pids=5))
    d = cg.paths["unified"]
    assert not cg.frozen()
    cg.freeze()
    assert cg.frozen() and (d / "cgroup.freeze").read_text() == "1\n"
    cg.thaw()
    assert not cg.frozen() and (d / "cgroup.freeze").read_text() == "0\n"
    (d / "memory.current").write_text("4096\n")
    (d / "pids.current").write_text("2\n")
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    assert cg.stats() == {
        "memory_usage": 4096,
        "memory_limit": 64 << 20,
        "cpu_usage_ns": 1_500_000,
        "pids_current": 2,
        "pids_limit": 5,
    }
    assert not cg.oom_killed()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed()


def test_v2_stats_without_controllers(tmp_path: Path, fake: FakeCgroupfs) -> None:
    cg = CgroupV2(v2_root(tmp_path, controllers="")).create("ctr-abc", Limits())
    assert cg.stats() == {
        "memory_usage": None,
        "memory_limit": None,
        "cpu_usage_ns": 0,
        "pids_current": None,
        "pids_limit": None,
    }
    assert not cg.oom_killed()


def test_v2_driver_refuses_a_non_cgroup2_directory(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="is not a cgroup2 mount"):
        CgroupV2(tmp_path)
