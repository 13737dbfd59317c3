"""The docker backend end to end: real containers on a real Docker Engine, checked from the host.

Engine tests take the `backend` fixture parametrized with "docker": skipped when the
engine or the SDK is missing, failed instead under --require-backends. Every
container gets a name from the `name` fixture and is force-removed afterwards
(`ctr rm -f`, then by its ctr.name label), so a failing test leaves nothing in ctr's
state or the engine.
The tests at the end need no engine: the attach framing, the archive retagging,
the start-error classification.
"""

from __future__ import annotations

import io
import json
import os
import pty
import secrets
import signal
import socket
import subprocess
import tarfile
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from .helpers import DEFAULT_CAPEFF, cgroup_dir, read_until_closed, status_field

docker_only = pytest.mark.parametrize("backend", ["docker"], indirect=True)

LONG = ["sh", "-c", "trap 'exit 0' TERM; trap 'exit 7' INT; echo ready; sleep 60 & wait"]


@pytest.fixture
def engine(backend):
    """A docker SDK client for looking at what the backend did (the backend fixture skips first)."""
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def name(engine, ctr):
    """A fresh container name; whatever still carries it afterwards (ctr's record, the
    engine's container) is removed."""
    value = f"ctr-test-{secrets.token_hex(4)}"
    yield value
    ctr("rm", "-f", value)
    from docker.errors import NotFound

    for c in engine.containers.list(all=True, filters={"label": f"ctr.name={value}"}, ignore_removed=True):
        with suppress(NotFound):  # removed by the engine meanwhile (--rm)
            c.remove(force=True)


@pytest.fixture
def dctr(ctr, backend):
    """The ctr CLI with --backend docker."""

    def run(*args: str, **kw):
        return ctr("--backend", "docker", *args, **kw)

    run.args_prefix = [*ctr.args_prefix, "--backend", "docker"]
    return run


def leftovers(engine, name: str) -> list[str]:
    # ignore_removed: the SDK lists ids, then inspects each; one the engine removes in
    # between (--rm) is gone, not an error.
    return [c.name for c in engine.containers.list(all=True, filters={"label": f"ctr.name={name}"},
                                                   ignore_removed=True)]


@contextmanager
def running(dctr, engine, name: str, *args: str, command=LONG, timeout: float = 30):
    """`ctr run --rm --name NAME ARGS busybox COMMAND` in the background; yields (proc, host pid
    of the container's process, container id) once it printed `ready`."""
    proc = subprocess.Popen([*dctr.args_prefix, "run", "--rm", "--name", name, *args, "busybox", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            pytest.fail(f"container did not start: {line!r} {proc.stderr.read()}")
        info = engine.api.inspect_container(name)
        yield proc, info["State"]["Pid"], info["Id"]
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- what any `ctr run` must do -----------------------------------------------------------


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
    r = dctr("run", "--rm", "--name", name, "-e", "A=1", "-w", "/tmp/new", "-u", "65534:65534", "--hostname", "box",
             "busybox", "sh", "-c", "echo $A $(pwd) $(id -u):$(id -g) $(hostname) $HOSTNAME; grep CapEff /proc/self/status")
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
    r = dctr("run", "--rm", "--name", name, "--memory", "64m", "--pids-limit", "20", "busybox", "sh", "-c",
             "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
    assert r.stdout.split() == [str(64 << 20), "20"], r.stderr


@docker_only
def test_pids_limit_is_enforced(dctr, name):
    r = dctr("run", "--rm", "--name", name, "--pids-limit", "5", "busybox", "sh", "-c",
             "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait")
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
    r = dctr("run", "--rm", "--name", name, "--cap-drop", "NET_RAW", "--cap-add", "SYS_ADMIN", "busybox",
             "grep", "CapEff", "/proc/self/status")
    mask = int(r.stdout.split()[1], 16)
    assert not mask & (1 << 13) and mask & (1 << 21)
    assert mask == int(DEFAULT_CAPEFF, 16) & ~(1 << 13) | (1 << 21)
    r = dctr("run", "--rm", "--name", name, "--cap-drop", "ALL", "--cap-add", "CHOWN", "busybox",
             "grep", "CapEff", "/proc/self/status")
    assert int(r.stdout.split()[1], 16) == 1


@docker_only
def test_network_none_has_only_lo(dctr, engine, name):
    r = dctr("run", "--rm", "--name", name, "busybox", "sh", "-c",
             "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping")
    assert r.stdout.split() == ["lo", "ping"], r.stderr
    with running(dctr, engine, name) as (proc, pid, cid):
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


@docker_only
def test_network_bridge_and_host(dctr, name):
    host_net = os.readlink("/proc/self/ns/net")
    r = dctr("run", "--rm", "--name", name, "--network", "bridge", "busybox", "sh", "-c",
             "ls /sys/class/net; readlink /proc/self/ns/net")
    *links, net = r.stdout.split()
    assert links == ["eth0", "lo"] and net != host_net, r.stderr
    r = dctr("run", "--rm", "--name", name, "--network", "host", "busybox", "readlink", "/proc/self/ns/net")
    assert r.stdout.strip() == host_net, r.stderr


@docker_only
def test_volumes_rw_and_ro(dctr, name, tmp_path):
    (tmp_path / "in").write_text("from host\n")
    r = dctr("run", "--rm", "--name", name, "-v", f"{tmp_path}:/data", "busybox", "sh", "-c",
             "cat /data/in; echo from container > /data/out")
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
    script = ('tty; i=0; while [ "$(stty size 2>/dev/null)" != "33 101" ] && [ $i -lt 250 ]; do usleep 20000; '
              'i=$((i+1)); done; stty size; echo err >&2')
    proc = subprocess.Popen([*dctr.args_prefix, "run", "--rm", "--name", name, "-t", "busybox", "sh", "-c", script],
                            stdin=slave, stdout=slave, stderr=slave)
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


# --- the lifecycle: records, state read live, logs, exec ----------------------------------
# (what tests/integration/test_lifecycle.py checks on every backend is not repeated here)


def _wait_until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def _ps(dctr, *args: str) -> dict:
    return {row["name"]: row for row in json.loads(dctr("ps", "--format", "json", *args).stdout)}


def _inspect(dctr, name: str) -> dict:
    r = dctr("inspect", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


@docker_only
def test_foreground_run_is_in_ps_and_inspect_while_it_runs(dctr, engine, name, paths):
    with running(dctr, engine, name) as (proc, pid, cid):
        row = _ps(dctr)[name]
        assert (row["backend"], row["status"], row["pid"], row["id"]) == ("docker", "running", pid, cid)
        doc = _inspect(dctr, name)
        assert doc["state"]["pid"] == pid and doc["backend"]["raw"]["Id"] == cid
        assert doc["backend"]["raw"]["HostConfig"]["LogConfig"]["Type"] == "none"  # the output went to ctr
        record = json.loads((paths.containers / name / "record.json").read_text())
        assert record["backend"] == "docker" and record["extra"]["docker_id"] == cid
        assert record["spec"]["auto_remove"] is True and record["image"] == "busybox:latest"
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert name not in _ps(dctr, "-a")
    assert not (paths.containers / name).exists() and leftovers(engine, name) == []


@docker_only
def test_foreground_without_rm_stays_until_ctr_rm(dctr, engine, name, paths):
    assert dctr("run", "--name", name, "busybox", "sh", "-c", "exit 6").returncode == 6
    row = _ps(dctr, "-a")[name]
    assert (row["status"], row["exit_code"]) == ("exited", 6)
    assert "Exited (6)" in dctr("ps", "-a").stdout
    assert dctr("logs", name).stdout == ""  # a foreground run keeps no log, as on native
    assert dctr("wait", name).stdout.strip() == "6"
    assert dctr("rm", name).returncode == 0
    assert not (paths.containers / name).exists() and leftovers(engine, name) == []


@docker_only
def test_failed_create_or_start_leaves_nothing(dctr, engine, name, paths):
    for args, code in ((["-d"], 127), ([], 127)):
        r = dctr("run", *args, "--name", name, "busybox", "nosuchcmd")
        assert r.returncode == code, r.stderr
        assert r.stderr.strip().splitlines() == ['ctr: exec "nosuchcmd": executable file not found in $PATH']
        assert not (paths.containers / name).exists() and leftovers(engine, name) == []
    r = dctr("run", "-d", "--name", name, "-u", "nosuchuser", "busybox", "true")
    assert r.returncode == 125 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = dctr("run", "-d", "--name", name, "-v", "/nonexistent-ctr-test:/x", "busybox", "true")
    assert r.returncode == 125 and "does not exist" in r.stderr
    assert not (paths.containers / name).exists() and leftovers(engine, name) == []


@docker_only
def test_detached_container_logs_to_json_file(dctr, engine, name, backend):
    from ctr.state.logs import LogEntry

    assert dctr("run", "-d", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; printf partial").returncode == 0
    assert dctr("wait", name).stdout.strip() == "0"
    assert engine.api.inspect_container(name)["HostConfig"]["LogConfig"]["Type"] == "json-file"
    entries = list(backend.logs(name))
    assert all(isinstance(e, LogEntry) and e.time.endswith("Z") and e.time[:4].isdigit() for e in entries)
    by_stream = {s: b"".join(e.data for e in entries if e.stream == s) for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": b"out\npartial", "stderr": b"err\n"}
    assert list(backend.logs(name, tail=0)) == []


@docker_only
def test_logs_follow_until_the_container_stops(dctr, name):
    assert dctr("run", "-d", "--name", name, "busybox", "sh", "-c",
                "for i in 1 2 3; do echo line$i; sleep 0.3; done").returncode == 0
    r = dctr("logs", "-f", name, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == ["line1", "line2", "line3"]


@docker_only
def test_tty_container_logs(dctr, name, backend):
    assert dctr("run", "-d", "-t", "--name", name, "busybox", "sh", "-c", "echo one; echo two >&2").returncode == 0
    dctr("wait", name)
    entries = list(backend.logs(name))
    assert [(e.stream, e.data) for e in entries] == [("stdout", b"one\r\n"), ("stdout", b"two\r\n")]  # one stream
    assert all(e.time.endswith("Z") for e in entries)
    assert [e.data for e in backend.logs(name, tail=1)] == [b"two\r\n"]


@docker_only
def test_exec_process_is_decided_as_on_native(dctr, name, config_image):
    """The container's env with the exec's on top, its workdir and user, unless given."""
    r = dctr("run", "-d", "--name", name, "-e", "A=container", "-e", "B=kept", "--entrypoint", "sh",
             config_image.name, "-c", "sleep 60")
    assert r.returncode == 0, r.stderr
    r = dctr("exec", "-e", "A=exec", name, "sh", "-c", "echo $A $B $FOO $(pwd) $(id -un)")
    assert r.stdout == "exec kept from-image /tmp nobody\n", r.stderr
    r = dctr("exec", "-w", "/etc", "-u", "root", name, "sh", "-c", "echo $(pwd) $(id -un)")
    assert r.stdout == "/etc root\n", r.stderr


@docker_only
def test_exec_streams_stdin_and_exit_codes(dctr, name):
    assert dctr("run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    r = dctr("exec", name, "sh", "-c", "echo out; echo err >&2; exit 9")
    assert (r.returncode, r.stdout, r.stderr) == (9, "out\n", "err\n")
    assert dctr("exec", "-i", name, "cat", input="hi\n").stdout == "hi\n"  # EOF ends cat
    data = os.urandom(1 << 20)
    r = dctr("exec", "-i", name, "cat", input=data, timeout=60)
    assert r.returncode == 0 and r.stdout == data
    assert dctr("exec", name, "cat", input="hi\n").stdout == ""  # no -i: no stdin
    r = dctr("exec", name, "nosuchcmd")
    assert (r.returncode, r.stdout) == (127, "")
    assert r.stderr.strip().splitlines() == ['ctr: exec "nosuchcmd": executable file not found in $PATH']
    r = dctr("exec", name, "/etc/passwd")
    assert r.returncode == 126 and r.stderr.strip().splitlines() == ['ctr: exec "/etc/passwd": permission denied']
    # Output that merely looks like runc's failure is output.
    r = dctr("exec", name, "echo", "OCI runtime exec failed: exec: \"x\": permission denied")
    assert r.returncode == 0 and r.stdout.startswith("OCI runtime exec failed")


@docker_only
def test_exec_with_a_tty(dctr, name):
    import fcntl
    import struct
    import termios

    assert dctr("run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 21, 77, 0, 0))
    script = ('tty; i=0; while [ "$(stty size 2>/dev/null)" != "21 77" ] && [ $i -lt 250 ]; do usleep 20000; '
              'i=$((i+1)); done; stty size; exit 3')
    proc = subprocess.Popen([*dctr.args_prefix, "exec", "-t", name, "sh", "-c", script],
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = read_until_closed(master)
    assert proc.wait(timeout=30) == 3
    lines = [line for line in out.replace(b"\r", b"").split(b"\n") if line]
    assert lines[0].startswith(b"/dev/pts/") and lines[1] == b"21 77", out


@docker_only
def test_states_and_their_conflicts(dctr, name, tmp_path):
    r = dctr("create", "--name", name, "busybox", "sleep", "60")
    assert r.returncode == 0
    assert _ps(dctr, "-a")[name]["status"] == "created"
    r = dctr("exec", name, "true")
    assert r.returncode == 125 and f"cannot exec in container {name}: it is not running" in r.stderr
    r = dctr("kill", name)
    assert r.returncode == 125 and "is not running" in r.stderr
    r = dctr("cp", f"{name}:/etc/passwd", str(tmp_path / "x"))
    assert r.returncode == 125 and "not running" in r.stderr
    assert dctr("start", name).returncode == 0
    assert dctr("pause", name).returncode == 0
    r = dctr("exec", name, "true")
    assert r.returncode == 125 and "paused" in r.stderr
    r = dctr("rm", name)
    assert r.returncode == 125
    assert r.stderr.strip() == f"ctr: cannot remove container {name}: it is paused: stop it first or use --force"
    assert dctr("unpause", name).returncode == 0
    r = dctr("unpause", name)
    assert r.returncode == 125 and "not paused" in r.stderr
    r = dctr("start", name)
    assert r.returncode == 125 and "it is running" in r.stderr
    assert dctr("stop", "-t", "0", name).returncode == 0
    assert dctr("wait", name).stdout.strip() == "137"
    r = dctr("stats", "--no-stream", name)
    assert r.returncode == 125 and "not running" in r.stderr
    assert dctr("restart", "-t", "0", name).returncode == 0  # an exited container starts again
    assert _ps(dctr)[name]["status"] == "running"


@docker_only
def test_inspect_rootfs_and_cgroup_are_the_engines(dctr, engine, name):
    assert dctr("run", "-d", "--name", name, "busybox", "sh", "-c", "echo x > /made-here; sleep 60").returncode == 0
    raw = engine.api.inspect_container(name)
    doc = _inspect(dctr, name)
    assert doc["id"] == raw["Id"] and doc["state"]["pid"] == raw["State"]["Pid"]
    assert doc["rootfs"]["type"] == raw["GraphDriver"]["Name"]
    if raw["GraphDriver"]["Name"] == "overlay2":
        upper = Path(doc["rootfs"]["upper"])
        assert upper == Path(raw["GraphDriver"]["Data"]["UpperDir"])
        assert _wait_until(lambda: (upper / "made-here").exists())
        assert doc["rootfs"]["lower"] and all(Path(p).is_dir() for p in doc["rootfs"]["lower"])
    pid = raw["State"]["Pid"]
    controller = "memory" if Path("/sys/fs/cgroup/memory").is_dir() else ""
    assert cgroup_dir(pid, controller).as_posix().endswith(doc["cgroup"]) and raw["Id"] in doc["cgroup"]
    assert dctr("stop", "-t", "0", name).returncode == 0
    doc = _inspect(dctr, name)
    assert doc["state"]["status"] == "exited" and doc["state"]["finished_at"].endswith("Z") and doc["cgroup"] == ""


@docker_only
def test_engine_container_removed_behind_ctrs_back(dctr, engine, name, paths):
    assert dctr("run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    engine.api.remove_container(name, force=True)
    row = _ps(dctr, "-a")[name]
    assert row["status"] == "exited"
    doc = _inspect(dctr, name)
    assert doc["state"]["status"] == "exited" and doc["backend"]["raw"] == {}
    assert dctr("logs", name).returncode == 0
    r = dctr("start", name)
    assert r.returncode == 125 and "gone" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert dctr("stop", name).returncode == 0
    r = dctr("wait", name)
    assert r.returncode == 125 and "no exit code" in r.stderr
    assert dctr("rm", name).returncode == 0
    assert not (paths.containers / name).exists()


@docker_only
def test_detached_rm_forgets_the_record_when_it_exits(dctr, engine, name, paths):
    # Long enough that `wait` (a new ctr process importing the SDK) comes before the engine's removal.
    assert dctr("run", "-d", "--rm", "--name", name, "busybox", "sh", "-c", "sleep 2; exit 3").returncode == 0
    assert dctr("wait", name).stdout.strip() == "3"
    assert not (paths.containers / name).exists() and leftovers(engine, name) == []
    assert dctr("run", "-d", "--rm", "--name", name, "busybox", "sleep", "60").returncode == 0
    assert dctr("stop", "-t", "0", name).returncode == 0
    assert name not in _ps(dctr, "-a") and not (paths.containers / name).exists()
    assert leftovers(engine, name) == []
    assert dctr("run", "-d", "--rm", "--name", name, "busybox", "true").returncode == 0
    assert _wait_until(lambda: not leftovers(engine, name))
    assert name not in _ps(dctr, "-a")  # looking at it is enough to forget it
    assert not (paths.containers / name).exists()


@docker_only
def test_python_api_get_and_list(backend, dctr, name):
    from ctr.spec import ContainerSpec

    record = backend.run_detached(ContainerSpec(image="busybox", command=("sleep", "60"), name=name))
    assert record.backend == "docker" and record.extra["docker_id"] == record.id
    live = backend.get(name)
    assert live.status == "running" and live.pid and live.started and live.finished is None
    assert name in [r.name for r in backend.list()]
    backend.kill(name, signal.SIGTERM)  # PID 1 ignores SIGTERM it has no handler for
    backend.kill(name)
    assert backend.wait(name) == 137
    done = backend.get(name)
    assert (done.status, done.exit_code, done.pid) == ("exited", 137, None) and done.finished >= done.started
    backend.remove(name)
    assert name not in [r.name for r in backend.list()]


# --- images -------------------------------------------------------------------------------


@docker_only
def test_busybox_is_in_the_engine_under_ctr_local(backend, engine, dctr, name):
    from ctr.images.store import ImageStore

    assert dctr("run", "--rm", "--name", name, "busybox", "true").returncode == 0
    image = ImageStore(backend.paths).get("busybox")
    assert engine.api.inspect_image("ctr.local/busybox:latest")["Id"] == image.config_digest


@pytest.fixture
def config_image(backend, engine):
    """A ctr image with every config field set, unique per run so the engine must load it."""
    from ctr.images.store import ImageStore
    from ctr.images.model import ImageConfig

    store = ImageStore(backend.paths)
    busybox = store.get("busybox")
    ref = f"ctr-test-docker/cfg-{secrets.token_hex(4)}:1"
    config = ImageConfig(entrypoint=("sh", "-c", 'echo "$0 $* $FOO $(pwd) $(id -un)"'), cmd=("img-cmd",),
                         env=("FOO=from-image", "PATH=/bin:/usr/bin"), workdir="/tmp", user="nobody")
    image = store.create(ref, [store.blob_path(d) for d in busybox.layer_digests], config,
                         labels={"ctr.test": secrets.token_hex(8)})
    yield image
    for tag in (f"ctr.local/{image.name}", image.name):
        try:
            engine.api.remove_image(tag, force=True)
        except Exception:
            pass
    store.remove(ref)


@docker_only
def test_image_config_survives_and_ctrs_merge_decides(dctr, engine, name, config_image, backend):
    ref = config_image.name
    r = dctr("run", "--rm", "--name", name, ref)
    assert r.stdout == "img-cmd  from-image /tmp nobody\n", r.stderr
    loaded = engine.api.inspect_image(f"ctr.local/{ref}")
    assert loaded["Id"] == config_image.config_digest
    assert loaded["Config"]["Entrypoint"] == list(config_image.config.entrypoint)
    assert loaded["Config"]["WorkingDir"] == "/tmp" and loaded["Config"]["User"] == "nobody"
    # The archive's own tag (the bare name) must not have been applied in the engine.
    with pytest.raises(Exception):
        engine.api.inspect_image(ref)
    r = dctr("run", "--rm", "--name", name, "-e", "FOO=spec", "-w", "/", "-u", "root", ref, "x", "y")
    assert r.stdout == "x y spec / root\n", r.stderr
    r = dctr("run", "--rm", "--name", name, "--entrypoint", "echo", ref)  # --entrypoint clears the image's Cmd
    assert r.stdout == "\n", r.stderr


@docker_only
def test_image_is_loaded_once(backend, config_image, monkeypatch):
    first = backend.ensure_image(config_image.name)
    monkeypatch.setattr(type(backend), "_load", lambda *a: pytest.fail("the image was loaded a second time"))
    assert backend.ensure_image(config_image.name) == first


# --- no engine needed ---------------------------------------------------------------------


def _frames(parts: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([stream, 0, 0, 0]) + len(p).to_bytes(4, "big") + p for stream, p in parts)


@pytest.mark.parametrize("cut", [1, 3, 7, 8, 9, 100, 65536])
def test_demultiplexing_survives_any_split(capfd, cut):
    from ctr.backends.docker.streams import _copy_multiplexed, Output

    parts = [(1, b"out1\n"), (2, b"err1\n"), (1, b"x" * 100000), (2, b""), (3, b"engine\n"), (1, b"end\n")]
    stream = _frames(parts)
    a, b = socket.socketpair()

    def feed() -> None:
        for i in range(0, len(stream), cut):
            a.sendall(stream[i:i + cut])
        a.close()

    threading.Thread(target=feed).start()
    _copy_multiplexed(b, Output())
    b.close()
    out, err = capfd.readouterr()
    assert out == "out1\n" + "x" * 100000 + "end\n"
    assert err == "err1\nengine\n"


def _archive(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_retag_archive_replaces_the_users_tag():
    from ctr.backends.docker.images import retag_archive

    manifest = [{"Config": "abc.json", "RepoTags": ["busybox:latest"], "Layers": ["l1/layer.tar"]}]
    src = _archive({"abc.json": b"{}", "l1/layer.tar": b"x" * 5000, "manifest.json": json.dumps(manifest).encode(),
                    "repositories": b'{"busybox": {"latest": "l1"}}'})
    dst = io.BytesIO()
    retag_archive(src, dst, "ctr.local/busybox:latest")
    with tarfile.open(fileobj=dst) as tar:
        assert sorted(tar.getnames()) == ["abc.json", "l1/layer.tar", "manifest.json"]
        out = json.load(tar.extractfile("manifest.json"))
        assert out == [{"Config": "abc.json", "RepoTags": ["ctr.local/busybox:latest"], "Layers": ["l1/layer.tar"]}]
        assert tar.extractfile("l1/layer.tar").read() == b"x" * 5000


def test_engine_tag():
    from ctr.backends.docker.images import engine_tag

    assert engine_tag("busybox:latest") == ("ctr.local/busybox", "latest")
    assert engine_tag("localhost:5000/app") == ("ctr.local/localhost__5000/app", "latest")
    assert engine_tag("quay.io/x/y:1.2") == ("ctr.local/quay.io/x/y", "1.2")


@pytest.mark.parametrize("message,kind,text", [
    ('failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: '
     'exec: "nosuchcmd": executable file not found in $PATH: unknown',
     "CommandNotFound", 'exec "nosuchcmd": executable file not found in $PATH'),
    ('OCI runtime create failed: container_linux.go:380: starting container process caused: '
     'exec: "/bin/nope": stat /bin/nope: no such file or directory: unknown',
     "CommandNotFound", 'exec "/bin/nope": stat /bin/nope: no such file or directory'),
    ('failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: '
     'exec: "/etc": permission denied: unknown', "CommandNotExecutable", 'exec "/etc": permission denied'),
])
def test_start_errors_get_dockers_exit_codes(message, kind, text):
    from ctr import errors
    from ctr.backends.docker.engine import start_error

    class FakeAPIError(Exception):
        status_code = 400
        explanation = message

    err = start_error(FakeAPIError(message), "web")
    assert type(err) is getattr(errors, kind)
    assert str(err) == text
    assert err.exit_code == {"CommandNotFound": 127, "CommandNotExecutable": 126}[kind]


def test_engine_times():
    from ctr.backends.docker.engine import engine_time

    assert engine_time("0001-01-01T00:00:00Z") is None and engine_time("") is None and engine_time(None) is None
    assert engine_time("2024-05-01T12:00:00.5Z") == 1714564800.5
    assert abs(engine_time("2024-05-01T12:00:00.123456789Z") - 1714564800.123456789) < 1e-6
    assert engine_time("2024-05-01T14:00:00+02:00") == 1714564800.0


@pytest.mark.parametrize("cut", [1, 5, 8, 13, 4096])
def test_log_frames_keep_streams_and_times_apart(cut):
    from ctr.backends.docker.logs import _log_frames
    from ctr.state.logs import LogEntry

    stream = _frames([(1, b"2024-05-01T12:00:00.000000001Z out\n"), (2, b"2024-05-01T12:00:00.000000002Z err\n"),
                      (1, b"2024-05-01T12:00:00.000000003Z no newline")])
    chunks = (stream[i:i + cut] for i in range(0, len(stream), cut))
    assert list(_log_frames(chunks)) == [
        LogEntry("stdout", "2024-05-01T12:00:00.000000001Z", b"out\n"),
        LogEntry("stderr", "2024-05-01T12:00:00.000000002Z", b"err\n"),
        LogEntry("stdout", "2024-05-01T12:00:00.000000003Z", b"no newline"),
    ]


@pytest.mark.parametrize("chunks,held,written", [
    ([b"OCI runtime ", b"exec failed: exec failed: x\r\n"], b"OCI runtime exec failed: exec failed: x\r\n", b""),
    ([b"OCI runtime exec failed\n", b"more\n"], None, b"OCI runtime exec failed\nmore\n"),
    ([b"OCI", b" something else\n"], None, b"OCI something else\n"),
    ([b"plain output\n"], None, b"plain output\n"),
])
def test_exec_output_holds_back_only_what_looks_like_runcs_failure(capfd, chunks, held, written):
    from ctr.backends.docker.streams import HoldingOutput

    out = HoldingOutput()
    for chunk in chunks:
        out.write(1, chunk)
    assert out.held == held
    assert capfd.readouterr().out.encode() == written


def test_exec_failures_get_dockers_exit_codes():
    from ctr import errors
    from ctr.backends.docker.engine import exec_failure

    text = ('OCI runtime exec failed: exec failed: unable to start container process: '
            'exec: "nosuch": executable file not found in $PATH: unknown\r\n')
    err = exec_failure(text)
    assert type(err) is errors.CommandNotFound and str(err) == 'exec "nosuch": executable file not found in $PATH'
    assert exec_failure("hello\n") is None


def _entry(stream: str, ms: float, data: bytes = b""):
    from ctr.state.logs import LogEntry, rfc3339

    return LogEntry(stream, rfc3339(1714564800 + ms / 1000), data or f"{stream}@{ms}".encode())


def test_stdout_first_orders_what_the_engine_stamped_too_close_to_tell():
    from ctr.backends.docker.logs import stdout_first

    # The engine stamped `echo out; echo err >&2` the wrong way round, 0.3 ms apart.
    entries = [_entry("stderr", 0.0), _entry("stdout", 0.3)]
    assert [e.stream for e in stdout_first(iter(entries))] == ["stdout", "stderr"]
    # Further apart than the window: the engine's order stands.
    entries = [_entry("stderr", 0.0), _entry("stdout", 50.0), _entry("stdout", 51.0), _entry("stderr", 52.0)]
    assert [e.data for e in stdout_first(iter(entries))] == [e.data for e in entries]
    # Each stream keeps its own order; stderr held back stays in order behind stdout.
    entries = [_entry("stderr", 0.0, b"e1"), _entry("stderr", 1.0, b"e2"), _entry("stdout", 2.0, b"o1"),
               _entry("stdout", 30.0, b"o2")]
    assert [e.data for e in stdout_first(iter(entries))] == [b"o1", b"e1", b"e2", b"o2"]


def test_stdout_first_does_not_hold_a_followed_stderr_line():
    from ctr.backends.docker.logs import _TICK, stdout_first

    seen = []
    source = iter([_entry("stderr", 0.0), _TICK, _entry("stdout", 1.0)])
    gen = stdout_first(source)
    seen.append(next(gen).stream)  # released by the tick, before the next entry arrives
    seen.append(next(gen).stream)
    assert seen == ["stderr", "stdout"]
