"""The cgroup drivers against a fake cgroupfs: plain files in a temp directory.

FakeCgroupfs stands in for the kernel behind cgroups._mkdir/_rmdir/_write and keeps its
rules that plain files lack: mkdir fills a cgroup with its interface files, writes never
create files, "+memory" adds to subtree_control, cgroup.freeze shows in cgroup.events,
rmdir removes a cgroup with its files. Every write is logged, so tests check exact values.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ctr.errors import BackendUnavailable, Conflict, CtrError, InvalidSpec, NotFound, Unsupported
from ctr.native import cgroups
from ctr.native.cgroups import (
    CgroupMount, CgroupV1, CgroupV2, Hierarchy, Limits, cgroup_driver, is_cgroup2_mount, v1_hierarchies,
)

V2_CORE = {
    "cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.freeze": "0\n", "cgroup.kill": "",
    "cgroup.events": "populated 0\nfrozen 0\n", "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V2_CONTROLLER_FILES = {
    "cpu": {"cpu.max": "max 100000\n"},
    "memory": {"memory.max": "max\n", "memory.current": "0\n", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"},
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
}
V1_CHILD_DEFAULTS = {
    "cgroup.procs": "", "tasks": "", "cpuset.cpus": "\n", "cpuset.mems": "\n", "freezer.state": "THAWED\n",
    "memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "0\n",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    "cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n", "cpuacct.usage": "0\n",
    "pids.max": "max\n", "pids.current": "0\n", "devices.list": "a *:* rwm\n",
}


DOCKER_DEVICES = ("a; c *:* m; b *:* m; c 1:3 rwm; c 1:5 rwm; c 1:7 rwm; c 1:8 rwm; c 1:9 rwm; c 5:0 rwm; "
                  "c 5:1 rwm; c 5:2 rwm; c 136:* rwm; c 10:200 rwm")


def fill(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content)


class FakeCgroupfs:
    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.base = base
        self.writes: list[tuple[str, str]] = []  # (path relative to base, value)
        self.fail: dict[str, int] = {}  # file name -> errno the "kernel" returns on write
        monkeypatch.setattr(cgroups, "_mkdir", self.mkdir)
        monkeypatch.setattr(cgroups, "_rmdir", self.rmdir)
        monkeypatch.setattr(cgroups, "_write", self.write)
        monkeypatch.setattr(cgroups, "_attach_devices", self.attach_devices)

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)
        parent = path.parent
        if (parent / "cgroup.subtree_control").exists():  # v2: files of the controllers the parent enabled
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            files = dict(V2_CORE, **{"cgroup.controllers": " ".join(enabled) + "\n"})
            for controller in enabled:
                files.update(V2_CONTROLLER_FILES.get(controller, {}))
        else:  # v1: the parent's interface files and the child-only ones (pids.max), with a new cgroup's values
            controllers = parent.name.split(",")
            names = {f.name for f in parent.iterdir() if f.is_file()}
            names |= {n for n in V1_CHILD_DEFAULTS if n.partition(".")[0] in controllers}
            files = {n: V1_CHILD_DEFAULTS.get(n, "") for n in names}
        fill(path, files)

    def rmdir(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        if any(p.is_dir() for p in path.iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        shutil.rmtree(path)

    def write(self, path: Path, value: str) -> None:
        self.writes.append((str(path.relative_to(self.base)), value))
        if path.name in self.fail:
            code = self.fail[path.name]
            raise OSError(code, os.strerror(code), str(path))
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        if path.name == "cgroup.subtree_control":
            enabled = path.read_text().split()
            available = (path.parent / "cgroup.controllers").read_text().split()
            controller = value.lstrip("+")
            if controller not in available:
                raise OSError(errno.ENOENT, "No such file or directory", str(path))
            path.write_text(" ".join(enabled + [controller]) + "\n")
        elif path.name == "cgroup.freeze":
            path.write_text(value + "\n")
            (path.parent / "cgroup.events").write_text(f"populated 0\nfrozen {value}\n")
        else:
            path.write_text(value + "\n")

    def attach_devices(self, path: Path, rules) -> None:
        """The BPF device program, logged as the rules it was made from."""
        self.writes.append((str(path.relative_to(self.base)) + "/<bpf device program>", "; ".join(map(str, rules))))

    def written(self, under: str) -> list[tuple[str, str]]:
        return [(p, v) for p, v in self.writes if p.startswith(under)]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
    return FakeCgroupfs(tmp_path, monkeypatch)


def v2_root(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    root = tmp_path / "cg2"
    fill(root, {"cgroup.controllers": controllers + "\n", "cgroup.subtree_control": "\n", "cgroup.procs": "1\n"})
    return root


# --- v2 -----------------------------------------------------------------------------------


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
    assert fake.written("cg2/ctr-abc") == [("cg2/ctr-abc/cpu.max", "150000 100000"), ("cg2/ctr-abc/pids.max", "max"),
                                           ("cg2/ctr-abc/<bpf device program>", DOCKER_DEVICES)]


def test_v2_enables_only_listed_controllers_not_yet_enabled(tmp_path: Path, fake: FakeCgroupfs) -> None:
    root = v2_root(tmp_path, controllers="memory pids io")
    (root / "cgroup.subtree_control").write_text("pids\n")
    CgroupV2(root).create("ctr-abc", Limits())
    assert fake.writes == [("cg2/cgroup.subtree_control", "+memory"),
                           ("cg2/ctr-abc/<bpf device program>", DOCKER_DEVICES)]


@pytest.mark.parametrize(
    "limits, flag, controller",
    [(Limits(memory=64 << 20), "--memory", "memory"), (Limits(cpus=1.0), "--cpus", "cpu"),
     (Limits(pids=10), "--pids-limit", "pids")],
)
def test_v2_missing_controller_is_unsupported(tmp_path: Path, fake: FakeCgroupfs, limits: Limits, flag: str,
                                              controller: str) -> None:
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


def test_v2_device_program_refused_removes_the_cgroup(tmp_path: Path, fake: FakeCgroupfs,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, rules) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(cgroups, "_attach_devices", refuse)
    root = v2_root(tmp_path)
    with pytest.raises(OSError):
        CgroupV2(root).create("ctr-abc", Limits())
    assert not (root / "ctr-abc").exists()


def test_v1_extra_device_rules_are_written_after_the_default(tmp_path: Path, fake: FakeCgroupfs) -> None:
    from ctr.native.devices import device_policy, parse_rule

    root, mountinfo = v1_tree(tmp_path)
    CgroupV1(root, mountinfo).create("ctr-abc", Limits(), devices=device_policy([parse_rule("b 8:0 rw")]))
    devices = fake.written("v1/devices/ctr-abc")
    assert devices[0] == ("v1/devices/ctr-abc/devices.deny", "a")
    assert devices[-1] == ("v1/devices/ctr-abc/devices.allow", "b 8:0 rw")


def test_v2_failed_limit_removes_the_cgroup(tmp_path: Path, fake: FakeCgroupfs) -> None:
    root = v2_root(tmp_path)
    fake.fail["cpu.max"] = errno.EINVAL
    with pytest.raises(OSError) as exc:
        CgroupV2(root).create("ctr-abc", Limits(memory=64 << 20, cpus=0.001))
    assert exc.value.errno == errno.EINVAL and exc.value.filename.endswith("ctr-abc/cpu.max")
    assert not (root / "ctr-abc").exists()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../etc", "/abs", ".hidden", "x" * 256, "a b"])
def test_name_validation(tmp_path: Path, fake: FakeCgroupfs, name: str) -> None:
    driver = CgroupV2(v2_root(tmp_path))
    with pytest.raises(InvalidSpec):
        driver.create(name, Limits())
    with pytest.raises(InvalidSpec):
        driver.open(name)
    assert [p.name for p in (tmp_path / "cg2").iterdir() if p.is_dir()] == []


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
    assert cg.stats() == {"memory_usage": 4096, "memory_limit": 64 << 20, "cpu_usage_ns": 1_500_000,
                          "pids_current": 2, "pids_limit": 5}
    assert not cg.oom_killed()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed()


def test_v2_stats_without_controllers(tmp_path: Path, fake: FakeCgroupfs) -> None:
    cg = CgroupV2(v2_root(tmp_path, controllers="")).create("ctr-abc", Limits())
    assert cg.stats() == {"memory_usage": None, "memory_limit": None, "cpu_usage_ns": 0,
                          "pids_current": None, "pids_limit": None}
    assert not cg.oom_killed()


def test_kill_all_is_bounded(tmp_path: Path, fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid that never leaves cgroup.procs (the fake does not update it) ends in an error, not a hang."""
    monkeypatch.setattr(cgroups, "TIMEOUT", 0.2)
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


def test_write_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        cgroups._write(tmp_path / "memory.max", "1")  # never creates a missing interface file
    assert exc.value.filename == str(tmp_path / "memory.max")
    with pytest.raises(IsADirectoryError) as exc2:
        cgroups._write(tmp_path, "1")
    assert exc2.value.filename == str(tmp_path) and "writing '1'" in str(exc2.value)


# --- v1 -----------------------------------------------------------------------------------

SAMPLE_MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,net_cls,net_prio
37 31 0:34 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpuset,clone_children
38 31 0:35 /docker/abc /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids,release_agent=/x
39 1 0:32 / /mnt/other\040place rw,relatime shared:17 - cgroup cgroup rw,memory
40 31 0:36 / /sys/fs/cgroup/freezer rw,relatime shared:18 - cgroup cgroup rw,freezer
41 31 0:37 / /sys/fs/cgroup/freezer rw,relatime shared:19 - tmpfs tmpfs rw
"""


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


def v1_tree(tmp_path: Path) -> tuple[Path, str]:
    """A v1 layout under tmp/v1 and the mountinfo text that describes it."""
    root = tmp_path / "v1"
    common = {"cgroup.procs": "1\n", "tasks": "1\n"}
    roots = {
        "cpu,cpuacct": {"cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n", "cpuacct.usage": "5\n"},
        "cpuset": {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n"},
        "memory": {"memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "1\n",
                   "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
        "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
        "freezer": {},
        "pids": {},
        "systemd": {},
    }
    lines = []
    for i, (name, files) in enumerate(roots.items()):
        fill(root / name, dict(common, **files))
        options = "name=systemd" if name == "systemd" else name
        lines.append(f"{40 + i} 31 0:{60 + i} / {root / name} rw,relatime - cgroup cgroup rw,{options}")
    return root, "\n".join(lines) + "\n"


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
        *[("v1/devices/ctr-abc/devices.allow", rule) for rule in (
            "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
            "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm")],
        ("v1/memory/ctr-abc/memory.limit_in_bytes", "67108864"),
        ("v1/cpu,cpuacct/ctr-abc/cpu.cfs_period_us", "100000"),
        ("v1/cpu,cpuacct/ctr-abc/cpu.cfs_quota_us", "25000"),
        ("v1/pids/ctr-abc/pids.max", "max"),
    ]
    assert cg.limits() == Limits(memory=64 << 20, cpus=0.25, pids=None)
    assert cg.stats() == {"memory_usage": 0, "memory_limit": 64 << 20, "cpu_usage_ns": 0,
                          "pids_current": 0, "pids_limit": None}
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


# --- choosing -----------------------------------------------------------------------------

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


def test_v2_driver_refuses_a_non_cgroup2_directory(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="is not a cgroup2 mount"):
        CgroupV2(tmp_path)


# --- priming the cgroup lock -------------------------------------------------------------


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
    assert cgroups._own_procs(text, tmp_path) == procs


def test_own_procs_on_v2_and_on_hybrid(tmp_path: Path) -> None:
    v2 = _procs_file(tmp_path / "v2", "a", "b")
    assert cgroups._own_procs("0::/a/b\n", tmp_path / "v2") == v2
    hybrid = _procs_file(tmp_path / "hy", "unified", "a")
    assert cgroups._own_procs("0::/a\n", tmp_path / "hy") == hybrid
    assert cgroups._own_procs("0::/elsewhere\n", tmp_path / "hy") is None


def test_prime_attach_rewrites_our_pid_until_stopped_then_ends(tmp_path: Path, monkeypatch) -> None:
    procs = _procs_file(tmp_path, "a")
    monkeypatch.setattr(cgroups, "_read", lambda path: "0::/a\n")
    writes: list[str] = []
    monkeypatch.setattr(cgroups, "_write", lambda path, value: writes.append((path, value)))
    cgroups.prime_attach(tmp_path)
    deadline = time.monotonic() + 2
    while len(writes) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    cgroups.stop_priming()
    while cgroups._prime["running"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not cgroups._prime["running"]
    assert len(writes) >= 3 and set(writes) == {(procs, str(os.getpid()))}


def test_prime_attach_is_bounded_without_a_stop(tmp_path: Path, monkeypatch) -> None:
    _procs_file(tmp_path, "a")
    monkeypatch.setattr(cgroups, "_read", lambda path: "0::/a\n")
    monkeypatch.setattr(cgroups, "_write", lambda path, value: None)
    monkeypatch.setattr(cgroups, "PRIME_SECONDS", 0.05)
    started = time.monotonic()
    cgroups.prime_attach(tmp_path)
    while cgroups._prime["running"] and time.monotonic() - started < 2:
        time.sleep(0.005)
    assert not cgroups._prime["running"]


def test_prime_attach_ignores_an_unwritable_cgroup(tmp_path: Path, monkeypatch) -> None:
    _procs_file(tmp_path, "a")
    monkeypatch.setattr(cgroups, "_read", lambda path: "0::/a\n")

    def refuse(path, value):
        raise OSError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(cgroups, "_write", refuse)
    cgroups.prime_attach(tmp_path)  # nothing raised here, and the thread ends at once
    deadline = time.monotonic() + 2
    while cgroups._prime["running"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not cgroups._prime["running"]
