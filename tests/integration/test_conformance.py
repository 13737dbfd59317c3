"""One behaviour, three backends: every case runs on native, lxc and docker (issue 3).

Each case looks from inside the container (what the process sees) and, where the
kernel can tell, from the host (/proc/PID/*, the cgroup files), never trusting a
backend's own report.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import uuid

import pytest

from tests.conftest import backends_param

from .helpers import (
    DEFAULT_CAPEFF,
    cgroup_dir,
    leftover_cgroups,
    mounts_under,
    ns_inode,
    read_until_closed,
    status_field,
)


def _name() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run(ctr, backend):
    """`ctr --backend B run --rm ...`, returning CompletedProcess."""

    def _run(*args, **kw):
        return ctr("--backend", backend.name, "run", "--rm", *args, **kw)

    _run.backend = backend.name
    return _run


@pytest.fixture
def detached(ctr, backend):
    """Start `ctr run -d` containers; yields (name, host pid); removes them afterwards."""
    made = []

    def _start(*args):
        name = _name()
        r = ctr("--backend", backend.name, "run", "-d", "--name", name, *args)
        assert r.returncode == 0, r.stderr
        made.append(name)
        doc = json.loads(ctr("inspect", name).stdout)[0]
        return name, doc["state"]["pid"]

    yield _start
    for name in made:
        ctr("rm", "-f", name)


@backends_param()
def test_output_and_exit_codes(run):
    r = run("busybox", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    assert run("busybox", "sh", "-c", "exit 3").returncode == 3
    r = run("busybox", "nosuchcmd")
    assert r.returncode == 127
    assert len(r.stderr.strip().splitlines()) == 1 and "nosuchcmd" in r.stderr


@backends_param()
def test_killed_by_signal_is_128_plus_n(ctr, backend):
    name = _name()
    proc = subprocess.Popen(
        [
            *ctr.args_prefix,
            "--backend",
            backend.name,
            "run",
            "--rm",
            "--name",
            name,
            "busybox",
            "sh",
            "-c",
            "echo ready; sleep 60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        pid = json.loads(ctr("inspect", name).stdout)[0]["state"]["pid"]
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == 137
    finally:
        proc.kill()
        proc.wait()


@backends_param()
def test_stdout_and_stderr_apart(run):
    r = run("busybox", "sh", "-c", "echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")


@backends_param()
def test_env_workdir_user_hostname(run):
    r = run(
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "65534:65534",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u):$(id -g) $(hostname)",
    )
    assert r.stdout.split() == ["1", "/tmp", "65534:65534", "box"], r.stderr


@backends_param()
def test_volumes_rw_and_ro(run, tmp_path):
    (tmp_path / "in").write_text("host\n")
    r = run("-v", f"{tmp_path}:/data", "busybox", "sh", "-c", "cat /data/in; echo c > /data/out")
    assert r.stdout == "host\n" and (tmp_path / "out").read_text() == "c\n", r.stderr
    r = run("-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c", "echo x > /data/out2")
    assert r.returncode != 0 and not (tmp_path / "out2").exists()


@backends_param()
def test_read_only_root(run):
    r = run("--read-only", "busybox", "sh", "-c", "touch /x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr


@backends_param()
def test_limits_inside_and_from_the_host(run, detached):
    r = run(
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us",
    )
    assert r.stdout.split() == [str(64 << 20), "20", "50000", "100000"], r.stderr
    _, pid = detached("--memory", "64m", "--pids-limit", "20", "--cpus", "0.5", "busybox", "sleep", "60")
    assert (cgroup_dir(pid, "memory") / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert (cgroup_dir(pid, "pids") / "pids.max").read_text().strip() == "20"
    assert (cgroup_dir(pid, "cpu") / "cpu.cfs_quota_us").read_text().strip() == "50000"


@backends_param()
def test_capabilities_and_no_new_privs(run, detached):
    r = run("busybox", "grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/self/status")
    assert r.stdout.split() == ["CapEff:", DEFAULT_CAPEFF, "NoNewPrivs:", "1"], r.stdout
    r = run("--cap-drop", "NET_RAW", "busybox", "grep", "CapEff", "/proc/self/status")
    assert int(r.stdout.split()[1], 16) == int(DEFAULT_CAPEFF, 16) & ~(1 << 13)
    _, pid = detached("busybox", "sleep", "60")
    assert status_field(pid, "CapEff") == DEFAULT_CAPEFF
    assert status_field(pid, "CapBnd") == DEFAULT_CAPEFF


@backends_param()
def test_stdin_with_i(run):
    assert run("-i", "busybox", "cat", input="hi\n").stdout == "hi\n"


@backends_param()
def test_tty(ctr, backend):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(
        [
            *ctr.args_prefix,
            "--backend",
            backend.name,
            "run",
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "tty; sleep 1; stty size",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = read_until_closed(master)
    assert proc.wait(timeout=60) == 0
    lines = [line for line in out.replace(b"\r", b"").split(b"\n") if line]
    assert lines[:2] == [b"/dev/pts/0", b"33 101"], out


@backends_param()
def test_pid1_and_only_its_processes(run, detached):
    r = run("busybox", "sh", "-c", "echo $$; ps -o pid,comm; true")
    lines = r.stdout.splitlines()
    assert lines[0] == "1"
    assert sorted(line.split()[1] for line in lines[2:]) == ["ps", "sh"], r.stdout  # nothing of the host
    _, pid = detached("busybox", "sleep", "60")
    for ns in ("pid", "mnt", "uts", "ipc", "net"):
        assert ns_inode(pid, ns) != ns_inode("self", ns), ns


@backends_param()
def test_network_none_leaves_only_lo(run):
    r = run("--network", "none", "busybox", "ls", "/sys/class/net")
    assert r.stdout.split() == ["lo"], r.stderr


@backends_param()
def test_rm_leaves_nothing_in_the_backend(ctr, backend, paths, ctr_root):
    name = _name()
    assert ctr("--backend", backend.name, "run", "--rm", "--name", name, "busybox", "true").returncode == 0
    assert name not in ctr("ps", "-a").stdout
    assert not (paths.containers / name).exists()
    if backend.name == "docker":
        out = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"name={name}", "-q"], capture_output=True, text=True
        ).stdout
        assert out.strip() == ""
    if backend.name == "lxc":
        assert not (paths.data / "lxc" / name).exists()
    assert not [p for p in leftover_cgroups() if name in p]
    assert not mounts_under(ctr_root / "containers" / name)


@backends_param()
def test_unsupported_is_said_not_ignored(run):
    r = run("--network", "bridge", "busybox", "true")
    if run.backend == "docker":
        assert r.returncode == 0
    else:
        assert r.returncode == 125 and "does not support" in r.stderr
