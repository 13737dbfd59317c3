"""The lxc backend end to end: real liblxc, real containers, checked from the host and from inside.

Most tests call the backend directly (`backend.run(spec)`, output through capfd);
those that need ctr's own stdin, a terminal or signals run the CLI. Every test
ends with nothing of the container left: no LXC container under ctr's lxcpath,
no cgroup, no mount, no runtime directory, no liblxc lock file (the autouse
fixture checks). The lifecycle verbs every backend shares are tested in
test_lifecycle.py and test_conformance.py; here is what is particular to liblxc:
this file has output, exit codes, the process and what the host sees of it; the
rest is in test_lxc_filesystems.py, test_lxc_terminal.py and test_lxc_detached.py
(its monitor killed, exec through attach, a foreground run driven from outside).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ctr.errors import CommandNotExecutable, CommandNotFound, InvalidSpec, Unsupported
from ctr.spec import ContainerSpec

from .helpers import DEFAULT_CAPEFF, NAMESPACES, ns_inode, status_field
from .lxc_helpers import (
    CGROUP,
    LONG,
    lxc_cli,
    nothing_left,  # noqa: F401 (autouse: nothing of a container is left)
    record,
    run,
    running,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lxc backend needs root"),
    pytest.mark.parametrize("backend", ["lxc"], indirect=True),
]


# -- output and exit codes ---------------------------------------------------------------


def test_echo(backend, capfd):
    assert run(backend, capfd, "echo", "hello") == (0, "hello\n", "")


@pytest.mark.parametrize("code", [3, 7])
def test_exit_code_is_the_commands(backend, capfd, code):
    assert run(backend, capfd, "sh", "-c", f"exit {code}")[0] == code


def test_stdout_and_stderr_are_kept_apart(backend, capfd):
    assert run(backend, capfd, "sh", "-c", "echo out; echo err >&2") == (0, "out\n", "err\n")


def test_missing_command_is_127(backend, capfd, ctr):
    with pytest.raises(CommandNotFound, match=r'exec "nosuchcmd": executable file not found in \$PATH') as exc:
        run(backend, capfd, "nosuchcmd")
    assert exc.value.exit_code == 127
    with pytest.raises(CommandNotFound, match='exec "/no/such": no such file or directory'):
        run(backend, capfd, "/no/such")
    r = lxc_cli(ctr, "run", "--rm", "busybox", "nosuchcmd")
    assert r.returncode == 127
    assert r.stderr.strip().splitlines() == ['ctr: exec "nosuchcmd": executable file not found in $PATH']


def test_not_executable_is_126(backend, capfd, ctr):
    with pytest.raises(CommandNotExecutable, match='exec "/etc/passwd": permission denied'):
        run(backend, capfd, "/etc/passwd")
    assert lxc_cli(ctr, "run", "--rm", "busybox", "/etc").returncode == 126


def test_killed_by_signal_is_128_plus_n(backend, ctr, paths):
    with running(ctr, paths, "lxc-kill", "--rm", "busybox", *LONG) as (proc, pid):
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 137


# -- what the process is -----------------------------------------------------------------


def test_command_is_pid1_and_ps_shows_only_the_container(backend, capfd):
    code, out, err = run(backend, capfd, "sh", "-c", "echo $$; ps -o pid,comm; true")
    lines = out.splitlines()
    assert lines[0] == "1", err
    procs = [line.split() for line in lines[2:] if line.strip()]
    # sh is PID 1 (no lxc-init) and the only other process is ps itself, nothing of the host.
    # (ps's pid is not 2: liblxc's mount hook ran as a process in the namespace before exec.)
    assert procs[0] == ["1", "sh"] and [p[1] for p in procs] == ["sh", "ps"], out


def test_env_workdir_user_hostname(backend, capfd):
    code, out, err = run(
        backend,
        capfd,
        "sh",
        "-c",
        "echo $A $B $(pwd) $(id -u):$(id -g) $(hostname) $HOSTNAME $HOME",
        env=("A=1", "B=two words"),
        workdir="/tmp/new/dir",
        user="65534:65534",
        hostname="box",
    )
    assert out.split() == ["1", "two", "words", "/tmp/new/dir", "65534:65534", "box", "box", "/home"], err
    code, out, _ = run(backend, capfd, "sh", "-c", "id; grep -E 'CapEff|Groups' /proc/self/status", user="nobody")
    assert "uid=65534(nobody) gid=65534(nobody)" in out
    assert "CapEff:\t0000000000000000" in out  # a non-root user keeps no effective capabilities
    code, out, _ = run(backend, capfd, "sh", "-c", "echo $(id -u):$(id -g) $HOME", user="1000:1000")
    assert out.split() == ["1000:1000", "/"]  # numeric ids need no passwd entry
    with pytest.raises(InvalidSpec, match="nosuchuser"):
        run(backend, capfd, "true", user="nosuchuser")


def test_default_hostname_is_the_short_id(backend, ctr, paths):
    r = lxc_cli(ctr, "run", "--name", "lxc-host", "busybox", "hostname")
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == record(paths, "lxc-host")["id"][:12]
        assert record(paths, "lxc-host")["status"] == "exited"  # kept without --rm, as Docker does
    finally:
        backend.remove("lxc-host")  # its liblxc config stays with it until rm, as Docker keeps its own


def test_capabilities_are_dockers(backend, capfd):
    code, out, _ = run(backend, capfd, "grep", "-E", "CapEff|CapBnd|NoNewPrivs", "/proc/self/status")
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields == {"CapEff": DEFAULT_CAPEFF, "CapBnd": DEFAULT_CAPEFF, "NoNewPrivs": "1"}
    code, out, _ = run(
        backend, capfd, "grep", "CapEff", "/proc/self/status", cap_drop=("NET_RAW",), cap_add=("SYS_ADMIN",)
    )
    mask = int(out.split()[1], 16)
    assert not mask & (1 << 13) and mask & (1 << 21)
    code, out, _ = run(backend, capfd, "grep", "CapEff", "/proc/self/status", cap_drop=("ALL",))
    assert out.split()[1] == "0000000000000000"


def test_config_maps_the_spec(backend):
    """The liblxc keys a spec turns into (the runs above show the kernel agrees)."""
    from ctr.backends.lxc.config import lxc_config

    spec = ContainerSpec(
        image="busybox",
        cap_drop=("ALL",),
        cap_add=("NET_ADMIN", "kill"),
        network="host",
        read_only=True,
        memory=64 << 20,
        pids_limit=-1,
        tty=True,
    )
    user = {"uid": 0, "gid": 0, "groups": [], "home": "/root", "targets": []}
    items = lxc_config(spec, "a" * 64, "h", ["/l/bottom", "/l/top"], "/c/upper", "/r", "/log", ["A=1"], "/", user)
    config = {}
    for k, v in items:
        config.setdefault(k, []).append(v)
    assert config["lxc.cap.keep"] == ["kill net_admin"]
    assert config["lxc.rootfs.path"] == ["overlay:/l/top:/l/bottom:/c/upper"]
    assert config["lxc.rootfs.options"] == ["ro"]
    assert config["lxc.net.0.type"] == ["none"]
    assert config["lxc.no_new_privs"] == ["1"]
    assert config["lxc.cgroup.pids.max"] == ["max"]
    assert config["lxc.cgroup.dir.container"] == ["ctr-lxc-" + "a" * 64]
    assert "lxc.console.path" not in config  # -t: liblxc's console
    none = dict(
        lxc_config(
            spec.with_changes(cap_drop=("ALL",), cap_add=(), network="none", tty=False),
            "b" * 64,
            "h",
            ["/l"],
            "/u",
            "/r",
            "/log",
            [],
            "/",
            user,
        )
    )
    assert (none["lxc.cap.keep"], none["lxc.net.0.type"], none["lxc.console.path"]) == ("none", "empty", "none")


# -- seen from the host while it runs ----------------------------------------------------


def test_namespaces_cgroups_and_caps_from_the_host(backend, ctr, paths):
    args = ["--memory", "64m", "--pids-limit", "20", "--cpus", "0.5", "busybox", *LONG]
    with running(ctr, paths, "lxc-host-view", "--rm", *args) as (proc, pid):
        for ns in NAMESPACES:
            assert ns_inode(pid, ns) != ns_inode("self", ns), f"{ns} namespace is the host's"
        assert ns_inode(pid, "user") == ns_inode("self", "user")
        assert status_field(pid, "CapEff") == DEFAULT_CAPEFF
        assert status_field(pid, "NoNewPrivs") == "1"
        assert status_field(pid, "NSpid").split()[-1] == "1"
        cgroup = record(paths, "lxc-host-view")["cgroup"]
        assert cgroup == "ctr-lxc-" + record(paths, "lxc-host-view")["id"]
        own = {line.split(":")[1]: line.split(":")[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()}
        assert own["memory"] == own["pids"] == own["cpu"] == f"/{cgroup}"
        assert (CGROUP / "memory" / cgroup / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert (CGROUP / "pids" / cgroup / "pids.max").read_text().strip() == "20"
        assert (CGROUP / "cpu" / cgroup / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (CGROUP / "cpu" / cgroup / "cpu.cfs_period_us").read_text().strip() == "100000"
        root = [line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"]
        assert " - overlay " in root[0] and str(paths.data) in root[0]
        # liblxc mounted the root in the container's mount namespace only.
        assert str(paths.data) not in Path("/proc/self/mountinfo").read_text()
        # The container lives under ctr's lxcpath, not the system's.
        assert (paths.data / "lxc" / "lxc-host-view" / "config").is_file()
        assert not Path("/var/lib/lxc/lxc-host-view").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # SIGTERM to ctr reached the container's trap
    assert not (CGROUP / "memory" / cgroup).exists()


def test_limits_as_the_container_sees_them(backend, capfd):
    code, out, err = run(
        backend,
        capfd,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us; touch /sys/fs/cgroup/x 2>/dev/null || echo ro; "
        "echo 1 > /sys/fs/cgroup/pids/pids.max 2>/dev/null || echo ro",
        memory=64 << 20,
        pids_limit=20,
        cpus=0.25,
    )
    assert out.split() == [str(64 << 20), "20", "25000", "ro", "ro"], err


def test_pids_limit_is_enforced(backend, capfd):
    code, out, err = run(backend, capfd, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait", pids_limit=5)
    assert "can't fork" in err, err


# -- network -----------------------------------------------------------------------------


def test_network_none_has_only_lo_up(backend, capfd):
    code, out, err = run(
        backend,
        capfd,
        "sh",
        "-c",
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate; "
        "ping -c1 -W1 127.0.0.1 >/dev/null && echo ping",
    )
    assert out.split() == ["lo", "unknown", "ping"], err


def test_network_host_shares_the_hosts(backend, capfd):
    code, out, _ = run(backend, capfd, "readlink", "/proc/self/ns/net", network="host")
    assert out.strip() == ns_inode("self", "net")


def test_network_bridge_is_unsupported(backend, capfd, paths):
    with pytest.raises(Unsupported, match="bridge"):
        run(backend, capfd, "true", network="bridge")
