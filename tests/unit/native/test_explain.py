"""explain_pid against a fake /proc and a fake cgroupfs (explain_fakes.FakeHost).

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
from ctr.native.explain import NAMESPACES, SCHEMA_VERSION
from ctr.native.explain_mounts import parse_mountinfo
from ctr.native.explain_table import render_table
from ctr.native.rootfs import MASKED_PATHS, READONLY_PATHS
from tests.unit.native.explain_fakes import (
    HOST_NS,
    NO_NET_RAW,
    OVERLAY_MOUNTINFO,
    explain_fake,
    stat_line,
)

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
