"""A fake /proc and cgroupfs for explain_pid: plain files and symlinks in a temporary directory.

FakeHost writes what the kernel would show for a few processes: a host init (1), a
keeper outside the container (90), the container's init (100) and its child (101), in a
v1 hybrid layout or a pure v2 one. Namespace links are dangling symlinks, as readlink is
all explain does with them. The fixtures using it (v1, v2) are in conftest.py.
"""

from __future__ import annotations

from pathlib import Path

from ctr.native.explain import explain_pid

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


def explain_fake(host: FakeHost, pid: int = 100) -> dict:
    return explain_pid(pid, proc=host.proc, cgroup_root=host.cgroup_root)
