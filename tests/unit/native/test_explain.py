"""explain_pid against a fake /proc and a fake cgroupfs: plain files and symlinks in tmp_path.

FakeHost writes what the kernel would show for a few processes: a host init (1), a
keeper outside the container (90), the container's init (100) and its child (101), in a
v1 hybrid layout or a pure v2 one. Namespace links are dangling symlinks, as readlink is
all explain does with them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctr.cli.explain import explain
from ctr.errors import CtrError, NotFound
from ctr.native import explain as explain_mod
from ctr.native.explain import NAMESPACES, SCHEMA_VERSION, explain_pid
from ctr.native.explain_mounts import MASKED_PATHS, READONLY_PATHS, parse_mountinfo
from ctr.native.explain_table import render_table

HOST_NS = {
    "pid": 4026531836,
    "net": 4026531833,
    "mnt": 4026531832,
    "uts": 4026531838,
    "ipc": 4026531839,
    "user": 4026531837,
    "cgroup": 4026531835,
    "time": 4026531834,
}
CONTAINER_NS = {
    **HOST_NS,
    "pid": 4026532711,
    "net": 4026532714,
    "mnt": 4026532709,
    "uts": 4026532710,
    "ipc": 4026532712,
    "cgroup": 4026532713,
}
DOCKER_CAPS = 0xA80425FB
NO_NET_RAW = DOCKER_CAPS & ~(1 << 13)

OVERLAY_MOUNTINFO = """\
87 50 0:42 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/ctr/layers/a:/var/lib/ctr/layers/b,upperdir=/var/lib/ctr/c\\040d/upper,workdir=/var/lib/ctr/c\\040d/work
88 87 0:44 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
89 87 0:45 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
93 87 0:57 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
125 88 0:59 / /proc/acpi ro,relatime - tmpfs tmpfs ro
126 88 0:45 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
127 88 0:6 /null /proc/kcore rw,nosuid shared:2 - devtmpfs udev rw,size=4k
128 93 0:60 / /sys/firmware ro,relatime - tmpfs tmpfs ro
129 88 0:44 /bus /proc/bus ro,relatime - proc proc rw
132 88 0:44 /sys /proc/sys ro,relatime - proc proc rw
"""
HOST_MOUNTINFO = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n22 27 0:21 / /proc rw,relatime shared:5 - proc proc rw\n"


def stat_line(pid: int, comm: str, state: str, ppid: int, start: int) -> str:
    # fields 3..22 after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt
    # majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
    rest = [state, str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 30
    return f"{pid} ({comm}) {' '.join(rest)}\n"


class FakeHost:
    def __init__(self, root: Path, cgroup_mode: str) -> None:
        self.proc = root / "proc"
        self.cgroup_root = root / "cgroup"
        self.mode = cgroup_mode
        (self.proc / "sys" / "kernel").mkdir(parents=True)
        (self.proc / "sys" / "kernel" / "cap_last_cap").write_text("40\n")
        self.cgroup_root.mkdir()
        if cgroup_mode == "v2":
            (self.cgroup_root / "cgroup.controllers").write_text("cpu memory pids\n")
        else:
            for d in ("memory", "cpu,cpuacct", "pids", "freezer", "systemd", "unified"):
                (self.cgroup_root / d).mkdir()
            (self.cgroup_root / "cpu").symlink_to("cpu,cpuacct")
            (self.cgroup_root / "unified" / "cgroup.controllers").write_text("")
        self.add(1, "init", ["/sbin/init"], ppid=0, nspid=[1], ns=HOST_NS, rss=9000, cgroup="/")
        self.links("self", HOST_NS)

    def links(self, name: str, ns: dict[str, int]) -> None:
        d = self.proc / name / "ns"
        d.mkdir(parents=True, exist_ok=True)
        for kind, inode in ns.items():
            (d / kind).symlink_to(f"{kind}:[{inode}]")

    def add(
        self,
        pid: int,
        comm: str,
        args: list[str],
        *,
        ppid: int,
        nspid: list[int],
        ns: dict[str, int],
        rss: int | None = 1000,
        cgroup: str,
        caps: int = (1 << 41) - 1,
        extra_status: str = "",
        mountinfo: str = HOST_MOUNTINFO,
        uid_map: str = "         0          0 4294967295\n",
        start: int = 100,
        state: str = "S",
    ) -> Path:
        d = self.proc / str(pid)
        d.mkdir()
        self.links(str(pid), ns)
        (d / "stat").write_text(stat_line(pid, comm, state, ppid, start))
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_text("".join(a + "\0" for a in args))
        status = [
            f"Name:\t{comm}",
            f"State:\t{state} (sleeping)",
            f"Pid:\t{pid}",
            f"PPid:\t{ppid}",
            "Uid:\t0\t0\t0\t0",
            "Gid:\t0\t0\t0\t0",
            f"NSpid:\t{chr(9).join(map(str, nspid))}",
        ]
        if rss is not None:
            status.append(f"VmRSS:\t    {rss} kB")
        status += [
            f"CapInh:\t{0:016x}",
            f"CapPrm:\t{caps:016x}",
            f"CapEff:\t{caps:016x}",
            f"CapBnd:\t{caps:016x}",
            f"CapAmb:\t{0:016x}",
        ]
        (d / "status").write_text("\n".join(status) + "\n" + extra_status)
        (d / "cgroup").write_text(self.cgroup_lines(cgroup))
        (d / "mountinfo").write_text(mountinfo)
        (d / "uid_map").write_text(uid_map)
        (d / "gid_map").write_text(uid_map)
        (d / "root").mkdir()
        return d

    def cgroup_lines(self, path: str) -> str:
        if self.mode == "v2":
            return f"0::{path}\n"
        return (
            f"5:name=systemd:{path}\n4:pids:{path}\n3:freezer:{path}\n"
            f"2:cpu,cpuacct:{path}\n1:memory:{path}\n0::{path}\n"
        )

    def container(self, *, mountinfo: str = OVERLAY_MOUNTINFO) -> Path:
        """Keeper 90 (host pid ns) -> container init 100 (pid 1 inside) -> its child 101."""
        self.add(
            90,
            "ctr",
            ["/usr/bin/python3", "-m", "ctr.cli.main", "run"],
            ppid=1,
            nspid=[90],
            ns=HOST_NS,
            rss=30000,
            cgroup="/",
        )
        seccomp = "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"
        d = self.add(
            100,
            "sh",
            ["sh", "-c", "sleep 60"],
            ppid=90,
            nspid=[100, 1],
            ns=CONTAINER_NS,
            cgroup="/ctr-abc",
            caps=NO_NET_RAW,
            extra_status=seccomp,
            mountinfo=mountinfo,
        )
        self.add(
            101,
            "sleep",
            ["sleep", "60"],
            ppid=100,
            nspid=[101, 2],
            ns=CONTAINER_NS,
            cgroup="/ctr-abc",
            caps=NO_NET_RAW,
            extra_status=seccomp,
            mountinfo=mountinfo,
        )
        for path in ("proc/keys", "proc/kcore", "proc/acpi", "proc/sys", "proc/bus", "sys/firmware"):
            (d / "root" / path).parent.mkdir(parents=True, exist_ok=True)
            (d / "root" / path).touch()
        return d

    def cgroup_files(self, files: dict[str, str], path: str = "ctr-abc") -> None:
        """`files` are 'hierarchy/name' for v1 ('memory/memory.limit_in_bytes'), 'name' for v2."""
        for name, text in files.items():
            if self.mode == "v2":
                f = self.cgroup_root / path / name
            else:
                hierarchy, name = name.split("/")
                f = self.cgroup_root / hierarchy / path / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)


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


def explain_fake(host: FakeHost, pid: int = 100) -> dict:
    return explain_pid(pid, proc=host.proc, cgroup_root=host.cgroup_root)


# -- namespaces ----------------------------------------------------------------------------


def test_namespaces_compare_with_pid_1(v1):
    doc = explain_fake(v1)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["host_reference"] == {"path": str(v1.proc / "1"), "fallback_reason": None}
    assert list(doc["namespaces"]) == list(NAMESPACES)
    own = {ns for ns, info in doc["namespaces"].items() if not info["shared_with_host"]}
    assert own == {"pid", "net", "mnt", "uts", "ipc", "cgroup"}
    assert doc["namespaces"]["pid"] == {"inode": 4026532711, "host_inode": 4026531836, "shared_with_host": False}
    assert doc["namespaces"]["user"] == {"inode": 4026531837, "host_inode": 4026531837, "shared_with_host": True}


def test_unreadable_pid_1_falls_back_to_the_reader(v1, monkeypatch):
    real = os.readlink

    def readlink(path):
        if Path(path).parent == v1.proc / "1" / "ns":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(explain_mod.os, "readlink", readlink)
    doc = explain_fake(v1)
    assert doc["host_reference"]["path"] == str(v1.proc / "self")
    assert doc["host_reference"]["fallback_reason"] == f"{v1.proc}/1/ns/pid: permission denied"
    assert doc["namespaces"]["net"]["shared_with_host"] is False
    assert doc["namespaces"]["time"]["shared_with_host"] is True
    # PID 1 itself: its links stay unreadable, and the document says so instead of failing
    doc = explain_fake(v1, 1)
    assert all(info["inode"] is None and info["shared_with_host"] is None for info in doc["namespaces"].values())
    assert f"{v1.proc}/1/ns/mnt: permission denied" in doc["unreadable"]
    assert "unreadable" in render_table(doc)


def test_kernel_without_time_namespace(v1):
    for name in ("1", "self", "100"):
        (v1.proc / name / "ns" / "time").unlink()
    doc = explain_fake(v1)
    assert doc["namespaces"]["time"] == {"inode": None, "host_inode": None, "shared_with_host": None}
    assert "not supported by this kernel" in render_table(doc)


# -- cgroups -------------------------------------------------------------------------------


def test_cgroup_v1_hybrid(v1):
    cg = explain_fake(v1)["cgroups"]
    assert cg["mode"] == "hybrid"
    assert cg["unified_path"] == "/ctr-abc"
    dirs = {",".join(h["controllers"]) or "unified": h["host_dir"] for h in cg["hierarchies"]}
    root = v1.cgroup_root
    assert dirs == {
        "name=systemd": str(root / "systemd/ctr-abc"),
        "pids": str(root / "pids/ctr-abc"),
        "freezer": str(root / "freezer/ctr-abc"),
        "cpu,cpuacct": str(root / "cpu,cpuacct/ctr-abc"),
        "memory": str(root / "memory/ctr-abc"),
        "unified": str(root / "unified/ctr-abc"),
    }
    assert cg["limits"] == {
        "memory": 67108864,
        "memory_usage": 1048576,
        "cpus": 0.5,
        "cpu_quota_us": 50000,
        "cpu_period_us": 100000,
        "cpu_shares": 1024,
        "cpu_weight": None,
        "pids": 50,
        "pids_current": 2,
        "freezer": "thawed",
    }
    assert cg["sources"]["memory"] == str(root / "memory/ctr-abc/memory.limit_in_bytes")
    assert cg["sources"]["cpus"] == str(root / "cpu,cpuacct/ctr-abc/cpu.cfs_quota_us")


def test_cgroup_v1_defaults_mean_unlimited(v1):
    v1.cgroup_files(
        {
            "memory/memory.limit_in_bytes": "9223372036854771712\n",
            "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "pids/pids.max": "max\n",
            "freezer/freezer.state": "FROZEN\n",
        }
    )
    limits = explain_fake(v1)["cgroups"]["limits"]
    assert (limits["memory"], limits["cpus"], limits["cpu_quota_us"], limits["pids"], limits["freezer"]) == (
        "unlimited",
        None,
        None,
        "unlimited",
        "frozen",
    )


def test_cgroup_v2(v2):
    cg = explain_fake(v2)["cgroups"]
    assert cg["mode"] == "v2"
    assert cg["hierarchies"] == [
        {"id": 0, "controllers": [], "path": "/ctr-abc", "host_dir": str(v2.cgroup_root / "ctr-abc")}
    ]
    assert cg["limits"] == {
        "memory": "unlimited",
        "memory_usage": 2097152,
        "cpus": 1.5,
        "cpu_quota_us": 150000,
        "cpu_period_us": 100000,
        "cpu_shares": None,
        "cpu_weight": 100,
        "pids": 50,
        "pids_current": 2,
        "freezer": "frozen",
    }
    assert cg["sources"]["pids"] == str(v2.cgroup_root / "ctr-abc/pids.max")


def test_cgroup_v2_limits_and_freezing(v2):
    v2.cgroup_files({"memory.max": "67108864\n", "cpu.max": "max 100000\n", "cgroup.events": "frozen 0\n"})
    limits = explain_fake(v2)["cgroups"]["limits"]
    assert (limits["memory"], limits["cpus"], limits["cpu_period_us"], limits["freezer"]) == (
        67108864,
        None,
        100000,
        "freezing",
    )


def test_cgroup_missing_on_the_host(v1):
    """A path the reader cannot see (gone, or outside its cgroup namespace) has no directory."""
    (v1.proc / "100" / "cgroup").write_text("1:memory:/../outside\n0::/gone\n")
    cg = explain_fake(v1)["cgroups"]
    assert [h["host_dir"] for h in cg["hierarchies"]] == [None, None]
    assert set(cg["limits"].values()) == {None} and cg["sources"] == {}
    assert "no directory on this host" in render_table(explain_fake(v1))


# -- capabilities and security -------------------------------------------------------------


def test_capabilities_decoded(v1):
    caps = explain_fake(v1)["capabilities"]
    assert caps["CapEff"]["hex"] == f"{NO_NET_RAW:016x}"
    assert "CAP_NET_RAW" not in caps["CapEff"]["names"]
    assert caps["CapEff"]["names"][:2] == ["CAP_CHOWN", "CAP_DAC_OVERRIDE"]
    assert len(caps["CapBnd"]["names"]) == 13
    assert caps["CapAmb"] == {"hex": "0000000000000000", "names": []}
    assert caps["last_cap"] == 40


def test_old_kernel_without_ambient_capabilities(v1):
    status = v1.proc / "100" / "status"
    status.write_text("".join(line for line in status.read_text().splitlines(True) if not line.startswith("CapAmb")))
    doc = explain_fake(v1)
    assert doc["capabilities"]["CapAmb"] is None
    render_table(doc)


def test_security_fields(v1):
    sec = explain_fake(v1)["security"]
    assert sec == {
        "seccomp_mode": 2,
        "seccomp": "filter",
        "seccomp_filters": 1,
        "no_new_privs": True,
        "uid": {"real": 0, "effective": 0, "saved": 0, "filesystem": 0},
        "gid": {"real": 0, "effective": 0, "saved": 0, "filesystem": 0},
        "uid_map": [[0, 0, 4294967295]],
        "uid_map_identity": True,
        "gid_map": [[0, 0, 4294967295]],
        "gid_map_identity": True,
    }


def test_user_namespace_map_is_not_identity(v1):
    (v1.proc / "100" / "uid_map").write_text("         0     100000      65536\n")
    sec = explain_fake(v1)["security"]
    assert sec["uid_map"] == [[0, 100000, 65536]] and sec["uid_map_identity"] is False
    assert sec["gid_map_identity"] is True


# -- mounts --------------------------------------------------------------------------------


def test_rootfs_overlay(v1):
    rootfs = explain_fake(v1)["rootfs"]
    assert rootfs["fstype"] == "overlay" and rootfs["source"] == "overlay"
    assert rootfs["read_only"] is False
    assert rootfs["mount_options"] == ["rw", "relatime"]
    assert rootfs["overlay"] == {
        "lowerdir": ["/var/lib/ctr/layers/a", "/var/lib/ctr/layers/b"],
        "upperdir": "/var/lib/ctr/c d/upper",  # \040 unescaped
        "workdir": "/var/lib/ctr/c d/work",
    }


def test_rootfs_read_only_and_stacked(v1):
    extra = "200 87 0:42 / / ro,relatime - overlay overlay ro,lowerdir=/l\n"
    (v1.proc / "100" / "mountinfo").write_text(OVERLAY_MOUNTINFO + extra)
    rootfs = explain_fake(v1)["rootfs"]
    assert rootfs["read_only"] is True and rootfs["overlay"]["lowerdir"] == ["/l"]


def test_masked_and_readonly_paths(v1):
    doc = explain_fake(v1)
    masked = {m["path"]: m for m in doc["masked_paths"]}
    assert list(masked) == list(MASKED_PATHS)
    assert masked["/proc/kcore"] == {"path": "/proc/kcore", "present": True, "masked": True, "by": "/dev/null"}
    assert masked["/proc/keys"]["by"] == "/dev/null"
    assert masked["/proc/acpi"]["by"] == "tmpfs" and masked["/sys/firmware"]["masked"]
    assert masked["/proc/timer_list"] == {"path": "/proc/timer_list", "present": False, "masked": False, "by": None}
    ro = {r["path"]: r for r in doc["readonly_paths"]}
    assert list(ro) == list(READONLY_PATHS)
    assert ro["/proc/sys"] == {"path": "/proc/sys", "present": True, "read_only": True, "mount_point": "/proc/sys"}
    assert ro["/proc/bus"]["read_only"] is True
    assert ro["/proc/irq"]["read_only"] is False and ro["/proc/irq"]["mount_point"] == "/proc"


def test_parse_mountinfo_optional_fields():
    m = parse_mountinfo(
        "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n"
    )[0]
    assert (m["root"], m["mount_point"], m["fstype"], m["source"]) == ("/mnt1", "/mnt x", "ext3", "/dev/root")
    assert m["super_options"] == ["rw", "errors=continue"]


# -- process and keeper ----------------------------------------------------------------------


def test_process_and_keeper(v1):
    p = explain_fake(v1, 101)["process"]
    assert (p["pid"], p["comm"], p["cmdline"], p["ns_pid"], p["nspid"], p["ppid"]) == (
        101,
        "sleep",
        ["sleep", "60"],
        2,
        [101, 2],
        100,
    )
    chain = p["keeper"]["chain"]
    assert [a["pid"] for a in chain] == [100, 90, 1]
    assert [a["in_pid_namespace"] for a in chain] == [True, False, False]
    assert [a["keeper"] for a in chain] == [False, True, False]
    assert p["keeper"]["pid"] == 90
    assert chain[1]["cmdline"] == "/usr/bin/python3 -m ctr.cli.main run" and chain[1]["vm_rss_kb"] == 30000


def test_host_process_has_no_keeper(v1):
    p = explain_fake(v1, 90)["process"]
    assert p["keeper"] == {
        "pid": None,
        "chain": [
            {
                "pid": 1,
                "comm": "init",
                "cmdline": "/sbin/init",
                "vm_rss_kb": 9000,
                "in_pid_namespace": True,
                "keeper": False,
            }
        ],
    }


def test_keeper_chain_survives_a_vanished_ancestor(v1):
    shutil.rmtree(v1.proc / "90")
    p = explain_fake(v1, 101)["process"]
    assert [a["pid"] for a in p["keeper"]["chain"]] == [100] and p["keeper"]["pid"] is None


def test_kernel_thread_ancestor_shows_comm(v1):
    (v1.proc / "90" / "cmdline").write_text("")
    chain = explain_fake(v1)["process"]["keeper"]["chain"]
    assert chain[0]["cmdline"] == "[ctr]"


# -- missing and vanishing processes -----------------------------------------------------------


def test_no_such_process(v1):
    with pytest.raises(NotFound, match=r"^no such process: 4242$"):
        explain_fake(v1, 4242)


def test_zombie_is_no_such_process(v1):
    v1.add(300, "dead", [], ppid=1, nspid=[300], ns=HOST_NS, cgroup="/", state="Z")
    with pytest.raises(NotFound, match="no such process: 300"):
        explain_fake(v1, 300)


@pytest.mark.parametrize("where", ["parse_mountinfo", "cgroups_section"])
def test_process_exiting_mid_read(v1, monkeypatch, where):
    real = getattr(explain_mod, where)

    def vanish(*args):
        shutil.rmtree(v1.proc / "100")
        return real(*args)

    monkeypatch.setattr(explain_mod, where, vanish)
    with pytest.raises(NotFound, match="no such process: 100"):
        explain_fake(v1)


def test_pid_reused_mid_read(v1, monkeypatch):
    real = explain_mod.parse_mountinfo

    def reuse(text):
        (v1.proc / "100" / "stat").write_text(stat_line(100, "other", "S", 1, 999))
        return real(text)

    monkeypatch.setattr(explain_mod, "parse_mountinfo", reuse)
    with pytest.raises(NotFound):
        explain_fake(v1)


def test_other_unreadable_file_is_one_line_error(v1, monkeypatch):
    real = explain_mod.read_text

    def read(path):
        if path.name == "cgroup":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(explain_mod, "read_text", read)
    with pytest.raises(CtrError, match=r"^cannot read .*/proc/100/cgroup: permission denied$"):
        explain_fake(v1)


# -- output ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_document_is_json(layout, request):
    doc = explain_fake(request.getfixturevalue(layout))
    assert json.loads(json.dumps(doc)) == doc


def test_render_table(v1):
    text = render_table(explain_fake(v1, 101))
    lines = text.splitlines()
    for section in ("Namespaces", "Cgroups", "Capabilities", "Security", "Root filesystem", "Keeper"):
        assert any(line.startswith(section) for line in lines), section
    assert "  pid     4026532711  own" in lines
    assert "  user    4026531837  host" in lines
    assert "CAP_" not in text and "NET_RAW" not in text
    assert any(line.startswith("  effective       CHOWN DAC_OVERRIDE") for line in lines)
    assert "  permitted       same as effective" in lines
    assert "  seccomp         filter (1 filter)" in lines
    assert "  memory          1.0MiB used of 64.0MiB" in lines
    assert "  cpus            0.5  (quota 50000 / period 100000 us)" in lines
    assert "  pids            2 of 50" in lines
    absent = text.split("  absent", 1)[1].split("\n\n", 1)[0]
    assert "/proc/fs" in absent and "/proc/kcore" not in absent
    assert any(line.startswith("  90 ") and "keeper" in line for line in lines)
    assert max(len(line) for line in lines if not line.startswith("  90 ") and not line.startswith("  1 ")) <= 80


def test_render_table_all_capabilities_is_short(v1):
    text = render_table(explain_fake(v1, 90))
    assert "  effective       all (41)" in text.splitlines()
    assert "Keeper  (none: every ancestor shares its pid namespace)" in text


# -- the command ---------------------------------------------------------------------------


def test_command_needs_exactly_one_target():
    runner = CliRunner()
    assert runner.invoke(explain, []).exit_code == 2
    assert runner.invoke(explain, ["--pid", "1", "web"]).exit_code == 2


def test_command_name_is_not_resolvable_yet():
    result = CliRunner().invoke(explain, ["web"])
    assert result.exit_code == 125
    assert result.stderr == "ctr: no such container: web\n"


def test_command_missing_pid():
    result = CliRunner().invoke(explain, ["--pid", "999999999"])
    assert (result.exit_code, result.stderr) == (125, "ctr: no such process: 999999999\n")


def test_command_json_for_self():
    result = CliRunner().invoke(explain, ["--format", "json", "--pid", str(os.getpid())])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["pid"] == os.getpid() and doc["process"]["comm"]


def test_cmdline_keeps_empty_arguments_and_odd_bytes(v1):
    (v1.proc / "100" / "cmdline").write_bytes(b"sh\0-c\0\0caf\xe9\0")
    (v1.proc / "100" / "comm").write_bytes(b"caf\xe9\n")
    doc = explain_fake(v1)
    assert doc["process"]["cmdline"] == ["sh", "-c", "", "caf\ufffd"]
    assert doc["process"]["comm"] == "caf\ufffd"
    render_table(doc)


def test_cgroup_v1_only(v1):
    (v1.proc / "100" / "cgroup").write_text("1:memory:/ctr-abc\n")
    cg = explain_fake(v1)["cgroups"]
    assert (cg["mode"], cg["unified_path"], cg["limits"]["memory"]) == ("v1", None, 67108864)
