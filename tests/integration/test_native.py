"""The native backend end to end: real namespaces, cgroups, overlayfs, checked from the host."""

from __future__ import annotations

import hashlib
import os
import pty
import signal
import subprocess
from pathlib import Path

import pytest

from .helpers import (
    DEFAULT_CAPEFF,
    NAMESPACES,
    cgroup_dir,
    foreground,
    leftover_cgroups,
    mounts_under,
    ns_inode,
    read_until_closed,
    status_field,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native backend needs root")

LONG = ["sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 60 & wait"]


def test_echo_and_exit_codes(ctr):
    r = ctr("run", "--rm", "busybox", "echo", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "")
    assert ctr("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3


def test_missing_command_is_127_with_one_line(ctr):
    r = ctr("run", "--rm", "busybox", "nosuchcmd")
    assert r.returncode == 127
    assert r.stderr.strip().splitlines() == ['ctr: exec "nosuchcmd": executable file not found in $PATH']


def test_not_executable_is_126(ctr):
    assert ctr("run", "--rm", "busybox", "/etc/passwd").returncode == 126


def test_stdout_and_stderr_are_kept_apart(ctr):
    r = ctr("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")


def test_command_is_pid1_and_sees_only_its_processes(ctr):
    r = ctr("run", "--rm", "busybox", "sh", "-c", "echo $$; ps -o pid,comm; true")
    lines = r.stdout.split("\n")
    assert lines[0] == "1"
    pids = [line.split()[0] for line in lines[2:] if line.strip()]
    assert pids[0] == "1" and len(pids) == 2, r.stdout  # sh and ps, nothing of the host


def test_namespaces_cgroup_and_caps_seen_from_the_host(ctr, ctr_root):
    cmd = [*ctr.args_prefix, "run", "--rm", "--memory", "64m", "--pids-limit", "20", "--cpus", "0.5", "busybox", *LONG]
    with foreground(cmd) as (proc, pid):
        for ns in NAMESPACES:
            assert ns_inode(pid, ns) != ns_inode("self", ns), f"{ns} namespace is the host's"
        assert ns_inode(pid, "user") == ns_inode("self", "user")
        assert status_field(pid, "CapEff") == DEFAULT_CAPEFF
        assert status_field(pid, "CapBnd") == DEFAULT_CAPEFF
        assert status_field(pid, "NoNewPrivs") == "1"
        memory = cgroup_dir(pid, "memory")
        assert memory.name.startswith("ctr-")
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert (cgroup_dir(pid, "pids") / "pids.max").read_text().strip() == "20"
        cpu = cgroup_dir(pid, "cpu")
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        root_mount = [
            line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"
        ]
        assert " - overlay " in root_mount[0]
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM reached the container's trap
    assert not memory.exists()


def test_limits_as_the_container_sees_them(ctr):
    r = ctr(
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; touch /sys/fs/cgroup/x 2>/dev/null || echo ro",
    )
    assert r.stdout.split() == [str(64 << 20), "20", "ro"], r.stderr


def test_pids_limit_is_enforced(ctr):
    r = ctr(
        "run", "--rm", "--pids-limit", "5", "busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait"
    )
    assert "can't fork" in r.stderr, r.stderr


def test_network_none_has_only_lo_up(ctr):
    r = ctr(
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; cat /sys/class/net/lo/operstate; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping",
    )
    assert r.stdout.split() == ["lo", "unknown", "ping"], r.stderr


def test_env_workdir_user_hostname(ctr):
    r = ctr(
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp/new",
        "-u",
        "65534:65534",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u):$(id -g) $(hostname) $HOSTNAME; grep CapEff /proc/self/status",
    )
    assert r.stdout.split()[:5] == ["1", "/tmp/new", "65534:65534", "box", "box"], r.stderr
    assert r.stdout.split()[-1] == "0000000000000000"  # a non-root user gets no effective capabilities
    assert ctr("run", "--rm", "-u", "nobody", "busybox", "id", "-un").stdout == "nobody\n"
    r = ctr("run", "--rm", "-u", "nosuchuser", "busybox", "true")
    assert r.returncode == 125 and "nosuchuser" in r.stderr


def test_volumes_rw_and_ro(ctr, tmp_path):
    (tmp_path / "in").write_text("from host\n")
    r = ctr(
        "run", "--rm", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c", "cat /data/in; echo from container > /data/out"
    )
    assert r.stdout == "from host\n"
    assert (tmp_path / "out").read_text() == "from container\n"
    r = ctr("run", "--rm", "-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c", "echo x > /data/out2")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (tmp_path / "out2").exists()


def test_read_only_root(ctr):
    r = ctr("run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert (
        ctr("run", "--rm", "--read-only", "busybox", "sh", "-c", "echo ok > /dev/shm/x && cat /dev/shm/x").stdout
        == "ok\n"
    )


def test_entrypoint(ctr):
    assert ctr("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b").stdout == "a b\n"


def test_cap_drop_and_add(ctr):
    r = ctr(
        "run",
        "--rm",
        "--cap-drop",
        "NET_RAW",
        "--cap-add",
        "SYS_ADMIN",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    )
    mask = int(r.stdout.split()[1], 16)
    assert not mask & (1 << 13) and mask & (1 << 21)


def test_stdin_with_i(ctr):
    assert ctr("run", "--rm", "-i", "busybox", "cat", input="hi\n").stdout == "hi\n"
    assert ctr("run", "--rm", "busybox", "cat", input="hi\n").stdout == ""  # without -i, stdin is /dev/null


def test_tty(ctr):
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(
        [*ctr.args_prefix, "run", "--rm", "-t", "busybox", "sh", "-c", "tty; stty size"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = read_until_closed(master)
    assert proc.wait(timeout=30) == 0
    assert out.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"33 101"]


def test_killed_by_signal_is_128_plus_n(ctr):
    with foreground([*ctr.args_prefix, "run", "--rm", "busybox", *LONG]) as (proc, pid):
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 137


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            p = Path(dirpath, name)
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_size}".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


def test_image_is_never_modified(ctr, paths):
    ctr("run", "--rm", "busybox", "true")
    layers = sorted(paths.layers.iterdir())
    before = [tree_digest(p) for p in layers]
    r = ctr("run", "--rm", "busybox", "sh", "-c", "echo hacked > /etc/passwd; rm /bin/ls; touch /new; mkdir -p /usr/x")
    assert r.returncode == 0, r.stderr
    assert [tree_digest(p) for p in layers] == before
    assert (
        ctr("run", "--rm", "busybox", "sh", "-c", "head -1 /etc/passwd; ls /new 2>&1 >/dev/null | wc -l")
        .stdout.split("\n")[0]
        .startswith("root:")
    )


@pytest.mark.parametrize(
    "args,culprit,code",
    [
        (["nosuchimage"], "nosuchimage", 125),
        (["--name", "bad/name", "busybox"], "bad/name", 125),
        (["--memory", "12q", "busybox"], "12q", 125),
        (["--cpus", "-1", "busybox"], "-1", 125),
        (["-v", "/nonexistent-ctr-volume:/x", "busybox"], "/nonexistent-ctr-volume", 125),
        (["busybox", "nosuchcmd"], "nosuchcmd", 127),
        (["--network", "bridge", "busybox"], "bridge", 125),
    ],
)
def test_bad_input_one_line_and_nothing_left(ctr, paths, args, culprit, code):
    before_records = set(os.listdir(paths.containers)) if paths.containers.exists() else set()
    before_cgroups = set(leftover_cgroups())
    r = ctr("run", "--rm", *args)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], r.stderr
    after_records = set(os.listdir(paths.containers)) if paths.containers.exists() else set()
    assert after_records == before_records
    assert set(leftover_cgroups()) <= before_cgroups


def test_rm_leaves_nothing(ctr, paths, ctr_root):
    before = set(leftover_cgroups())
    assert (
        ctr("run", "--rm", "--name", "gone", "--memory", "32m", "busybox", "sh", "-c", "echo x > /file").returncode == 0
    )
    assert not (paths.containers / "gone").exists()
    assert not (paths.runtime / "gone").exists()
    assert set(leftover_cgroups()) <= before
    assert not mounts_under(ctr_root)
