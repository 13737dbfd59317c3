"""explain_pid against the real kernel: the test's own process, then a native container.

Every figure explain reports is compared with the test's own read of the same kernel
file (readlink of /proc/PID/ns/*, /proc/PID/status, the cgroup files), never with
what ctr claims to have set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctr.errors import NotFound
from ctr.native.devices import DEFAULT_ALLOW
from ctr.native.explain import NAMESPACES, explain_pid

from .helpers import DEFAULT_CAPEFF, cgroup_dir, children, foreground, ns_inode, status_field

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="reading a container's /proc entries needs root")

LONG = ["sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 60 & wait"]
NET_RAW = 13
PURE_V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()


def inode(pid: int | str, ns: str) -> int:
    return int(ns_inode(pid, ns).split("[", 1)[1].rstrip("]"))


def cgroup_file(pid: int, v1_controller: str, v1_name: str, v2_name: str) -> Path:
    """The host file holding one figure, found from /proc/PID/cgroup by the test itself."""
    if PURE_V2:
        return cgroup_dir(pid, "") / v2_name
    return cgroup_dir(pid, v1_controller) / v1_name


def test_own_process_is_host_everywhere():
    pid = os.getpid()
    doc = explain_pid(pid)
    for ns in NAMESPACES:
        info = doc["namespaces"][ns]
        assert info["shared_with_host"] is True, ns
        assert info["inode"] == inode("self", ns), ns
    for key in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert doc["capabilities"][key]["hex"] == status_field(pid, key)
    assert doc["security"]["no_new_privs"] == (status_field(pid, "NoNewPrivs") == "1")
    assert doc["security"]["seccomp_mode"] == int(status_field(pid, "Seccomp"))
    assert doc["security"]["uid"]["effective"] == os.geteuid()
    assert doc["security"]["uid_map_identity"] is True
    assert doc["process"]["comm"] == Path("/proc/self/comm").read_text().strip()
    assert doc["process"]["cmdline"] == Path("/proc/self/cmdline").read_text().split("\0")[:-1]
    assert doc["process"]["ppid"] == os.getppid()
    assert doc["process"]["keeper"]["pid"] is None  # no ancestor outside our pid namespace
    assert doc["process"]["keeper"]["chain"][0]["pid"] == os.getppid()
    assert doc["rootfs"]["fstype"]


def test_cli_says_host_for_the_calling_shell():
    """`ctr explain --pid $$`: the caller of ctr is on the host, in every namespace."""
    cmd = [
        sys.executable,
        "-c",
        "from ctr.cli.explain import explain; explain.main(prog_name='ctr explain')",
        "--format",
        "json",
        "--pid",
        str(os.getpid()),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {ns: info["shared_with_host"] for ns, info in doc["namespaces"].items()} == dict.fromkeys(NAMESPACES, True)
    table = subprocess.run(cmd[:3] + ["--pid", str(os.getpid())], capture_output=True, text=True, timeout=60)
    assert f"  pid     {inode('self', 'pid')}  host" in table.stdout.splitlines()


def test_cli_missing_pid_is_one_line():
    cmd = [
        sys.executable,
        "-c",
        "from ctr.cli.explain import explain; explain.main(prog_name='ctr explain')",
        "--pid",
        "999999999",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (125, "", "ctr: no such process: 999999999\n")


def test_native_container_as_the_kernel_sees_it(ctr, ctr_root):
    cmd = [
        *ctr.args_prefix,
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cap-drop",
        "NET_RAW",
        "busybox",
        *LONG,
    ]
    assert cmd[:5] == [sys.executable, "-m", "ctr.cli.main", "--root", str(ctr_root)]
    with foreground(cmd) as (proc, pid):
        # "ready" comes before the shell forks sleep: wait for it, so pids.current holds still
        deadline = time.monotonic() + 10
        while not children(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        sleeper = children(pid)[0]
        doc = explain_pid(pid)

        ns = doc["namespaces"]
        for name in ("pid", "net", "mnt", "uts", "ipc", "cgroup"):
            assert ns[name]["inode"] == inode(pid, name) and ns[name]["shared_with_host"] is False, name
        for name in ("user", "time"):
            assert ns[name]["inode"] == inode(pid, name) == inode("self", name), name
            assert ns[name]["shared_with_host"] is True, name

        limits, sources = doc["cgroups"]["limits"], doc["cgroups"]["sources"]
        memory = cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max")
        assert limits["memory"] == int(memory.read_text()) == 64 << 20
        assert sources["memory"] == str(memory)
        pids = cgroup_file(pid, "pids", "pids.max", "pids.max")
        assert limits["pids"] == int(pids.read_text()) == 50
        current = cgroup_file(pid, "pids", "pids.current", "pids.current")
        assert limits["pids_current"] == int(current.read_text()) == 2  # sh and sleep
        assert doc["cgroups"]["mode"] in (("v2",) if PURE_V2 else ("v1", "hybrid"))

        devices = doc["cgroups"]["devices"]  # Docker's default, as the kernel holds it
        assert (devices["default"], sorted(devices["rules"])) == ("deny", sorted(DEFAULT_ALLOW))
        if not PURE_V2:
            listed = (cgroup_dir(pid, "devices") / "devices.list").read_text().split()
            assert devices["enforced_by"] == "devices.list" and " ".join(devices["rules"]).split() == listed

        caps = doc["capabilities"]
        assert caps["CapEff"]["hex"] == status_field(pid, "CapEff")
        assert int(caps["CapEff"]["hex"], 16) == int(DEFAULT_CAPEFF, 16) & ~(1 << NET_RAW)
        assert "CAP_NET_RAW" not in caps["CapEff"]["names"] and "CAP_CHOWN" in caps["CapEff"]["names"]
        assert caps["CapBnd"]["hex"] == status_field(pid, "CapBnd")
        assert doc["security"]["no_new_privs"] == (status_field(pid, "NoNewPrivs") == "1")

        assert doc["process"]["ns_pid"] == 1
        assert doc["process"]["comm"] == "sh"
        assert doc["rootfs"]["fstype"] == "overlay"
        root_line = [line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"]
        assert " - overlay " in root_line[-1]
        assert doc["rootfs"]["overlay"]["upperdir"] in root_line[-1]

        keeper = doc["process"]["keeper"]
        chain = [a["pid"] for a in keeper["chain"]]
        assert proc.pid in chain  # the ctr python process that ran the container
        assert keeper["pid"] == int(status_field(pid, "PPid"))  # its parent is outside its pid namespace
        assert keeper["chain"][0]["keeper"] and not keeper["chain"][0]["in_pid_namespace"]
        assert keeper["chain"][0]["vm_rss_kb"] > 0

        # a process deeper in the container has its init inside the namespace, the keeper above it
        deeper = explain_pid(sleeper)["process"]["keeper"]
        assert deeper["chain"][0]["pid"] == pid and deeper["chain"][0]["in_pid_namespace"] is True
        assert deeper["pid"] == keeper["pid"]

        proc.terminate()
        assert proc.wait(timeout=30) == 0
    with pytest.raises(NotFound, match=f"^no such process: {pid}$"):
        explain_pid(pid)


UNIFIED = Path("/sys/fs/cgroup") if PURE_V2 else Path("/sys/fs/cgroup/unified")


@pytest.mark.skipif(not (UNIFIED / "cgroup.controllers").exists(), reason="no cgroup2 mount here")
def test_native_v2_driver_device_program_as_the_kernel_holds_it(ctr, ctr_root):
    """The v2 driver (forced on a hybrid host): explain decodes the BPF program the kernel runs
    for the container's cgroup, and the kernel refuses nodes outside Docker's default."""
    probe = (
        "mknod /blk b 7 0; mknod /mem c 1 1; { cat /blk; cat /mem; echo x > /dev/null && echo null-ok; } "
        "> /probe 2>&1; trap 'exit 0' TERM; echo ready; sleep 60 & wait"
    )
    cmd = [*ctr.args_prefix, "run", "--rm", "busybox", "sh", "-c", probe]
    with foreground(cmd, env={**os.environ, "CTR_CGROUP_DRIVER": "v2"}) as (proc, pid):
        line = [x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if x.startswith("0::")][0]
        cgroup = UNIFIED / line[3:].lstrip("/")
        devices = explain_pid(pid)["cgroups"]["devices"]
        assert (devices["enforced_by"], devices["source"]) == ("bpf", str(cgroup))
        assert devices["default"] == "deny" and sorted(devices["rules"]) == sorted(DEFAULT_ALLOW)
        assert [p["name"] for p in devices["programs"]] == ["ctr_devices"]
        assert Path(f"/proc/{pid}/root/probe").read_text().splitlines() == [
            "cat: can't open '/blk': Operation not permitted",
            "cat: can't open '/mem': Operation not permitted",
            "null-ok",
        ]
        proc.terminate()
        assert proc.wait(timeout=30) == 0
