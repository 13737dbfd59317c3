"""The docker backend end to end, what any `ctr run` must do: real containers on a real Docker
Engine, checked from the host.

Engine tests take the `backend` fixture parametrized with "docker": skipped when the
engine or the SDK is missing, failed instead under --require-backends. Every
container gets a name from the `name` fixture and is force-removed afterwards
(`ctr rm -f`, then by its ctr.name label), so a failing test leaves nothing in ctr's
state or the engine.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.docker_backend.support import docker_only, leftovers, running
from tests.integration.helpers import DEFAULT_CAPEFF, cgroup_dir, read_until_closed, status_field


@docker_only
def test_probe_reports_versions(backend):
    info = type(backend).probe()
    assert info.usable and info.name == "docker"
    assert info.versions["engine"] and info.versions["api"]


@docker_only
def test_echo_and_exit_codes(dctr, name):
    r = dctr("run", "--rm", "--name", name, "busybox", "echo", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "")
    assert dctr("run", "--rm", "--name", name, "busybox", "sh", "-c", "exit 3").returncode == 3


@docker_only
def test_missing_command_is_127_with_one_line(dctr, engine, name):
    r = dctr("run", "--rm", "--name", name, "busybox", "nosuchcmd")
    assert r.returncode == 127
    assert r.stderr.strip().splitlines() == ['ctr: exec "nosuchcmd": executable file not found in $PATH']
    assert leftovers(engine, name) == []


@docker_only
def test_not_executable_is_126(dctr, name):
    r = dctr("run", "--rm", "--name", name, "busybox", "/etc/passwd")
    assert r.returncode == 126
    assert r.stderr.strip().splitlines() == ['ctr: exec "/etc/passwd": permission denied']


@docker_only
def test_failed_start_leaves_nothing_even_without_rm(dctr, engine, name):
    assert dctr("run", "--name", name, "busybox", "nosuchcmd").returncode == 127
    assert leftovers(engine, name) == []
    r = dctr("run", "--name", name, "-u", "nosuchuser", "busybox", "true")
    assert r.returncode == 125 and "nosuchuser" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert leftovers(engine, name) == []


@docker_only
def test_stdout_and_stderr_are_kept_apart(dctr, name):
    r = dctr("run", "--rm", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    # Many small frames, interleaved by the engine, split wherever recv cuts them.
    script = "i=0; while [ $i -lt 3000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
    r = dctr("run", "--rm", "--name", name, "busybox", "sh", "-c", script)
    assert r.stdout.split() == [f"out{i}" for i in range(3000)]
    assert r.stderr.split() == [f"err{i}" for i in range(3000)]


@docker_only
def test_env_workdir_user_hostname(dctr, name):
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
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
    assert dctr("run", "--rm", "--name", name, "-u", "nobody", "busybox", "sh", "-c", "id -un").stdout == "nobody\n"


@docker_only
def test_environment_is_ctrs_merge_only(dctr, name):
    """No proxy variables from ~/.docker/config.json, nothing but the image's, the spec's and
    what Docker itself always sets (HOSTNAME, HOME)."""
    r = dctr("run", "--rm", "--name", name, "--hostname", "h", "-e", "A=1", "busybox", "sh", "-c", "env")
    keys = {line.split("=", 1)[0] for line in r.stdout.splitlines()}
    assert keys <= {"PATH", "HOSTNAME", "HOME", "A", "PWD", "SHLVL"}, r.stdout
    assert "A=1" in r.stdout.splitlines() and "HOSTNAME=h" in r.stdout.splitlines()


@docker_only
def test_limits_in_the_engines_cgroup_seen_from_the_host(dctr, engine, name):
    with running(dctr, engine, name, "--memory", "64m", "--pids-limit", "20", "--cpus", "0.5") as (proc, pid, cid):
        if Path("/sys/fs/cgroup/memory").is_dir():  # cgroup v1, as on the reference machine
            memory = cgroup_dir(pid, "memory")
            assert memory.name == cid, memory  # the engine's own cgroup: .../docker/<id>
            assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
            memsw = memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # swap accounting on: memory+swap equals memory, i.e. no swap
                assert memsw.read_text().strip() == str(64 << 20)
            assert (cgroup_dir(pid, "pids") / "pids.max").read_text().strip() == "20"
            cpu = cgroup_dir(pid, "cpu")
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        else:
            group = cgroup_dir(pid, "")
            assert cid in group.name
            assert (group / "memory.max").read_text().strip() == str(64 << 20)
            assert (group / "memory.swap.max").read_text().strip() == "0"
            assert (group / "pids.max").read_text().strip() == "20"
            assert (group / "cpu.max").read_text().split() == ["50000", "100000"]
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM reached the container's trap
    assert leftovers(engine, name) == []


@docker_only
def test_limits_as_the_container_sees_them(dctr, name):
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("cgroup v1 paths")
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max",
    )
    assert r.stdout.split() == [str(64 << 20), "20"], r.stderr


@docker_only
def test_pids_limit_is_enforced(dctr, name):
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait",
    )
    assert "can't fork" in r.stderr, r.stderr


@docker_only
def test_capabilities_and_no_new_privs(dctr, engine, name):
    with running(dctr, engine, name) as (proc, pid, cid):
        assert status_field(pid, "CapEff") == DEFAULT_CAPEFF
        assert status_field(pid, "CapBnd") == DEFAULT_CAPEFF
        assert status_field(pid, "NoNewPrivs") == "1"
    r = dctr("run", "--rm", "--name", name, "busybox", "sh", "-c", "grep CapEff /proc/self/status")
    assert r.stdout.split() == ["CapEff:", DEFAULT_CAPEFF]


@docker_only
def test_cap_drop_and_add(dctr, name):
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
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
    assert mask == int(DEFAULT_CAPEFF, 16) & ~(1 << 13) | (1 << 21)
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    )
    assert int(r.stdout.split()[1], 16) == 1


@docker_only
def test_network_none_has_only_lo(dctr, engine, name):
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping",
    )
    assert r.stdout.split() == ["lo", "ping"], r.stderr
    with running(dctr, engine, name) as (proc, pid, cid):
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


@docker_only
def test_network_bridge_and_host(dctr, name):
    host_net = os.readlink("/proc/self/ns/net")
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "bridge",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; readlink /proc/self/ns/net",
    )
    *links, net = r.stdout.split()
    assert links == ["eth0", "lo"] and net != host_net, r.stderr
    r = dctr("run", "--rm", "--name", name, "--network", "host", "busybox", "readlink", "/proc/self/ns/net")
    assert r.stdout.strip() == host_net, r.stderr


@docker_only
def test_volumes_rw_and_ro(dctr, name, tmp_path):
    (tmp_path / "in").write_text("from host\n")
    r = dctr(
        "run",
        "--rm",
        "--name",
        name,
        "-v",
        f"{tmp_path}:/data",
        "busybox",
        "sh",
        "-c",
        "cat /data/in; echo from container > /data/out",
    )
    assert r.stdout == "from host\n", r.stderr
    assert (tmp_path / "out").read_text() == "from container\n"
    r = dctr("run", "--rm", "--name", name, "-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c", "echo x > /data/out2")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (tmp_path / "out2").exists()


@docker_only
def test_read_only_root(dctr, name):
    r = dctr("run", "--rm", "--name", name, "--read-only", "busybox", "sh", "-c", "touch /x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr


@docker_only
def test_entrypoint(dctr, name):
    assert dctr("run", "--rm", "--name", name, "--entrypoint", "echo", "busybox", "a", "b").stdout == "a b\n"


@docker_only
def test_stdin_with_i(dctr, name):
    assert dctr("run", "--rm", "--name", name, "-i", "busybox", "cat", input="hi\n").stdout == "hi\n"
    assert dctr("run", "--rm", "--name", name, "busybox", "cat", input="hi\n").stdout == ""  # no -i: no stdin
    data = os.urandom(4 << 20)  # both directions at volume, and EOF must still end `cat`
    r = dctr("run", "--rm", "--name", name, "-i", "busybox", "cat", input=data, timeout=120)
    assert r.returncode == 0 and r.stdout == data


@docker_only
def test_tty(dctr, name):
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    # Engines before API 1.42 cannot set the size at create; the resize right after start
    # races with the command, so the script waits (bounded) for the size to arrive.
    script = (
        'tty; i=0; while [ "$(stty size 2>/dev/null)" != "33 101" ] && [ $i -lt 250 ]; do usleep 20000; '
        "i=$((i+1)); done; stty size; echo err >&2"
    )
    proc = subprocess.Popen(
        [*dctr.args_prefix, "run", "--rm", "--name", name, "-t", "busybox", "sh", "-c", script],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = read_until_closed(master)
    assert proc.wait(timeout=30) == 0
    assert out.replace(b"\r", b"").split(b"\n")[:3] == [b"/dev/pts/0", b"33 101", b"err"]


@docker_only
def test_tty_with_piped_stdin_ends(dctr, name):
    """-it with stdin not a terminal: EOF becomes ^D for the container's tty, so cat ends."""
    r = dctr("run", "--rm", "--name", name, "-i", "-t", "busybox", "cat", input="hi\n", timeout=60)
    assert r.returncode == 0
    assert "hi" in r.stdout and r.stderr == ""


@docker_only
def test_signals_are_forwarded(dctr, engine, name):
    with running(dctr, engine, name) as (proc, pid, cid):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 7  # the container's INT trap ran
    with running(dctr, engine, name) as (proc, pid, cid):
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert leftovers(engine, name) == []


@docker_only
def test_killed_by_signal_is_128_plus_n(dctr, engine, name):
    with running(dctr, engine, name) as (proc, pid, cid):
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 137


@docker_only
def test_rm_leaves_nothing_and_no_rm_keeps_the_container(dctr, engine, name):
    assert dctr("run", "--rm", "--name", name, "busybox", "true").returncode == 0
    assert leftovers(engine, name) == []
    assert dctr("run", "--name", name, "busybox", "sh", "-c", "exit 4").returncode == 4
    (kept,) = engine.containers.list(all=True, filters={"label": f"ctr.name={name}"})
    assert kept.name == name and kept.attrs["State"]["ExitCode"] == 4
    assert kept.labels["ctr.backend"] == "docker"
    host = kept.attrs["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]


@docker_only
def test_name_in_use_is_a_conflict(dctr, engine, name, paths):
    assert dctr("run", "--name", name, "busybox", "true").returncode == 0
    r = dctr("run", "--rm", "--name", name, "busybox", "true")
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [f'ctr: container name "{name}" is already in use']
    assert dctr("rm", name).returncode == 0
    # A name the engine has and ctr does not (another state root's, or docker's own container).
    engine.containers.create("ctr.local/busybox:latest", ["true"], name=name, labels={"ctr.name": name})
    r = dctr("run", "--rm", "--name", name, "busybox", "true")
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [f"ctr: container name {name} is already in use in the docker engine"]
    assert not (paths.containers / name).exists()  # the record reserved for it was given up


@docker_only
def test_generated_names_are_removed_too(dctr, engine):
    r = dctr("run", "--rm", "busybox", "hostname")  # Docker's default hostname: the short id
    short_id = r.stdout.strip()
    assert r.returncode == 0 and len(short_id) == 12, r.stderr
    assert not engine.containers.list(all=True, filters={"id": short_id})
