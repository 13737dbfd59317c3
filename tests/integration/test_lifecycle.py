"""The everyday verbs, written once and run on every backend (issue 4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import backends_param

from .helpers import cgroup_dir, leftover_cgroups, mounts_under

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done"


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


class Ctr:
    """The CLI on one backend, with the containers a test made removed at the end."""

    def __init__(self, ctr, backend: str) -> None:
        self.ctr, self.backend, self.made = ctr, backend, []

    def __call__(self, *args, **kw):
        return self.ctr("--backend", self.backend, *args, **kw)

    def detached(self, *args) -> str:
        name = _name()
        r = self("run", "-d", "--name", name, *args)
        assert r.returncode == 0, r.stderr
        self.made.append(name)
        return name

    def inspect(self, name: str) -> dict:
        r = self("inspect", name)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)[0]

    def cleanup(self) -> None:
        for name in self.made:
            self("rm", "-f", name)


@pytest.fixture
def c(ctr, backend):
    helper = Ctr(ctr, backend.name)
    yield helper
    helper.cleanup()


def _wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


@backends_param()
def test_detached_ps_logs_exec_stop_wait_rm(c):
    name = c.detached("busybox", "sh", "-c", COUNTER)
    ps = json.loads(c("ps", "--format", "json").stdout)
    row = next(r for r in ps if r["name"] == name)
    assert (row["backend"], row["status"]) == (c.backend, "running")
    assert _wait_for(lambda: c("logs", name).stdout.split()[-1:] >= ["2"] and len(c("logs", name).stdout.split()) >= 3)
    r = c("exec", name, "sh", "-c", "echo $$")
    assert r.returncode == 0 and r.stdout.strip() not in ("", "1"), r
    assert c("exec", name, "sh", "-c", "exit 4").returncode == 4
    assert c("stop", "-t", "1", name).returncode == 0
    assert c("ps", "--format", "json").stdout.count(f'"{name}"') == 0
    w = c("wait", name)
    assert w.returncode == 0 and w.stdout.strip() in ("137", "143"), w
    assert c("rm", name).returncode == 0
    assert name not in c("ps", "-a").stdout


@backends_param()
def test_create_then_start(c):
    name = _name()
    r = c("create", "--name", name, "busybox", "sh", "-c", "echo created-then-started")
    assert r.returncode == 0, r.stderr
    c.made.append(name)
    listed = {x["name"]: x["status"] for x in json.loads(c("ps", "-a", "--format", "json").stdout)}
    assert listed[name] == "created"  # by name: the root is shared with the rest of the suite
    assert c("start", name).returncode == 0
    assert c("wait", name).stdout.strip() == "0"
    assert c("logs", name).stdout == "created-then-started\n"


@backends_param()
def test_logs_keep_stdout_and_stderr_apart(c):
    name = c.detached("busybox", "sh", "-c", "echo out; echo err >&2")
    c("wait", name)
    r = c("logs", name)
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    tail = c("logs", "--tail", "1", name)
    assert (tail.stdout, tail.stderr) == ("", "err\n")
    assert c("logs", "-t", name).stdout.split(" ", 1)[0].endswith("Z")


@backends_param()
def test_pause_freezes_and_unpause_resumes(c):
    name = c.detached("busybox", "sh", "-c", COUNTER)
    _wait_for(lambda: len(c("logs", name).stdout.split()) >= 2)
    assert c("pause", name).returncode == 0
    assert c.inspect(name)["state"]["status"] == "paused"
    frozen = c("logs", name).stdout
    time.sleep(1.0)
    assert c("logs", name).stdout == frozen  # the counter stopped advancing
    assert c("unpause", name).returncode == 0
    assert _wait_for(lambda: c("logs", name).stdout != frozen)


@backends_param()
def test_wait_returns_exit_code_and_kill_gives_128_plus_n(c):
    done = c.detached("busybox", "sh", "-c", "exit 5")
    assert c("wait", done).stdout.strip() == "5"
    long = c.detached("busybox", "sleep", "60")
    assert c("kill", long).returncode == 0
    assert c("wait", long).stdout.strip() == "137"
    trapped = c.detached("busybox", "sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done")
    time.sleep(0.5)
    assert c("kill", "-s", "USR1", trapped).returncode == 0
    assert c("wait", trapped).stdout.strip() == "42"


@backends_param()
def test_oom_killed_is_reported(c):
    # The OOM killer takes a child, and PID 1 lives on a moment: an engine that learns of the
    # OOM only by an event (docker) then always hears it before the exit.
    name = c.detached(
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "(x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived); sleep 1",
    )
    assert c("wait", name).stdout.strip() == "0"
    assert "survived" not in c("logs", name).stdout
    assert c.inspect(name)["state"]["oom_killed"] is True


@backends_param()
def test_stats_match_the_cgroup_files(c, backend):
    name = c.detached("--memory", "64m", "--pids-limit", "30", "busybox", "sh", "-c", "sleep 60 & sleep 60 & wait")
    pid = c.inspect(name)["state"]["pid"]
    assert pid
    _wait_for(lambda: (cgroup_dir(pid, "pids") / "pids.current").read_text().strip() == "3")
    stats = backend.stats(name)
    assert stats["memory_limit"] == 64 << 20
    assert stats["pids_limit"] == 30
    assert stats["pids_current"] == int((cgroup_dir(pid, "pids") / "pids.current").read_text())
    assert abs(stats["memory_usage"] - int((cgroup_dir(pid, "memory") / "memory.usage_in_bytes").read_text())) < 4 << 20
    r = c("stats", "--no-stream", name)
    assert r.returncode == 0 and name in r.stdout and "64.0MiB" in r.stdout


@backends_param()
def test_cp_in_and_out_stays_inside_the_root(c, tmp_path):
    host_dir = tmp_path / "hostside"
    host_dir.mkdir()
    name = c.detached(
        "busybox", "sh", "-c", f"mkdir -p /data {host_dir}; ln -s {host_dir} /inside; echo inner > /data/f; sleep 60"
    )
    _wait_for(lambda: c("exec", name, "ls", "/inside").returncode == 0)
    src = tmp_path / "in.txt"
    src.write_text("from host\n")
    assert c("cp", str(src), f"{name}:/data/").returncode == 0
    assert c("exec", name, "cat", "/data/in.txt").stdout == "from host\n"
    # /inside -> the host_dir path: inside the container, not on the host
    r = c("cp", str(src), f"{name}:/inside/escaped.txt")
    assert r.returncode == 0, r.stderr
    assert not (host_dir / "escaped.txt").exists()
    assert c("exec", name, "cat", f"{host_dir}/escaped.txt").stdout == "from host\n"
    out = tmp_path / "out.txt"
    assert c("cp", f"{name}:/data/f", str(out)).returncode == 0
    assert out.read_text() == "inner\n"
    r = c("cp", f"{name}:/nonexistent", str(tmp_path / "x"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1


@backends_param()
def test_names_are_unique_across_backends(c, ctr):
    name = c.detached("busybox", "sleep", "30")
    r = ctr("--backend", "native", "run", "-d", "--name", name, "busybox", "true")
    assert r.returncode == 125 and "already in use" in r.stderr
    r = c("start", name)
    assert r.returncode == 125 and "running" in r.stderr


# ---- native only: crash recovery and concurrency ------------------------------------


@backends_param("native")
def test_kill_9_of_ctr_during_run_then_rm_f(c, ctr, paths, ctr_root):
    name = _name()
    proc = subprocess.Popen(
        [*ctr.args_prefix, "run", "--name", name, "busybox", "sh", "-c", "echo ready; sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    c.made.append(name)
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    assert _wait_for(lambda: c.inspect(name)["state"]["status"] == "exited")
    assert c("rm", "-f", name).returncode == 0
    assert not (paths.containers / name).exists() and not (paths.runtime / name).exists()
    assert not [p for p in leftover_cgroups() if name in p]


@backends_param("native")
def test_kill_9_of_the_monitor_then_ps_and_rm_f(c, paths):
    name = c.detached("busybox", "sleep", "60")
    doc = c.inspect(name)
    monitor = doc["backend"]["raw"]["record"]["extra"]["monitor_pid"]
    cgroup = doc["cgroup"]
    os.kill(monitor, signal.SIGKILL)
    assert _wait_for(lambda: c.inspect(name)["state"]["status"] == "exited")
    assert "Exited" in c("ps", "-a").stdout
    assert c("rm", "-f", name).returncode == 0
    assert not any(cgroup in p for p in leftover_cgroups())
    assert not (paths.containers / name).exists()


@backends_param("native")
def test_twenty_concurrent_runs_and_removals(backend, ctr, paths, ctr_root):
    procs = [
        subprocess.Popen(
            [*ctr.args_prefix, "run", "-d", "busybox", "sleep", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.append(out.strip())
    names = [r["name"] for r in json.loads(ctr("ps", "--format", "json").stdout) if r["id"] in ids]
    assert len(set(names)) == 20
    procs = [
        subprocess.Popen([*ctr.args_prefix, "rm", "-f", n], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in names
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert not [r for r in json.loads(ctr("ps", "-a", "--format", "json").stdout) if r["id"] in ids]
    assert not [p for p in leftover_cgroups() if any(i in p for i in ids)]
    assert not mounts_under(ctr_root)
