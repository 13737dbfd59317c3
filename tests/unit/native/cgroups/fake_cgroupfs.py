"""A fake cgroupfs for the cgroup drivers' unit tests: plain files in a temp directory.

FakeCgroupfs stands in for the kernel behind cgroupfs.mkdir/rmdir/write (and v2's
_attach_devices) and keeps its rules that plain files lack: mkdir fills a cgroup with its
interface files, writes never create files, "+memory" adds to subtree_control,
cgroup.freeze shows in cgroup.events, rmdir removes a cgroup with its files. Every write
is logged, so tests check exact values.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from ctr.native.cgroups import cgroupfs, v2

V2_CORE = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "",
    "cgroup.freeze": "0\n",
    "cgroup.kill": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V2_CONTROLLER_FILES = {
    "cpu": {"cpu.max": "max 100000\n"},
    "memory": {
        "memory.max": "max\n",
        "memory.current": "0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
}
V1_CHILD_DEFAULTS = {
    "cgroup.procs": "",
    "tasks": "",
    "cpuset.cpus": "\n",
    "cpuset.mems": "\n",
    "freezer.state": "THAWED\n",
    "memory.limit_in_bytes": "9223372036854771712\n",
    "memory.usage_in_bytes": "0\n",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    "cpu.cfs_period_us": "100000\n",
    "cpu.cfs_quota_us": "-1\n",
    "cpuacct.usage": "0\n",
    "pids.max": "max\n",
    "pids.current": "0\n",
    "devices.list": "a *:* rwm\n",
}
DOCKER_DEVICES = (
    "a; c *:* m; b *:* m; c 1:3 rwm; c 1:5 rwm; c 1:7 rwm; c 1:8 rwm; c 1:9 rwm; c 5:0 rwm; "
    "c 5:1 rwm; c 5:2 rwm; c 136:* rwm; c 10:200 rwm"
)


def fill(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content)


class FakeCgroupfs:
    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.base = base
        self.writes: list[tuple[str, str]] = []  # (path relative to base, value)
        self.fail: dict[str, int] = {}  # file name -> errno the "kernel" returns on write
        monkeypatch.setattr(cgroupfs, "mkdir", self.mkdir)
        monkeypatch.setattr(cgroupfs, "rmdir", self.rmdir)
        monkeypatch.setattr(cgroupfs, "write", self.write)
        monkeypatch.setattr(v2, "_attach_devices", self.attach_devices)

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


def v2_root(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    root = tmp_path / "cg2"
    fill(root, {"cgroup.controllers": controllers + "\n", "cgroup.subtree_control": "\n", "cgroup.procs": "1\n"})
    return root


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


def v1_tree(tmp_path: Path) -> tuple[Path, str]:
    """A v1 layout under tmp/v1 and the mountinfo text that describes it."""
    root = tmp_path / "v1"
    common = {"cgroup.procs": "1\n", "tasks": "1\n"}
    roots = {
        "cpu,cpuacct": {"cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n", "cpuacct.usage": "5\n"},
        "cpuset": {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n"},
        "memory": {
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.usage_in_bytes": "1\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        },
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
