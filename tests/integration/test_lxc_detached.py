"""Detached lxc containers: ctr's monitor (killed, reporting start errors), exec through
liblxc's attach, a foreground run driven by other commands, and nothing left behind
(helpers: lxc_helpers.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ctr.errors import CommandNotFound
from ctr.spec import ContainerSpec

from .helpers import DEFAULT_CAPEFF, ns_inode, status_field
from .lxc_helpers import (
    CGROUP,
    LONG,
    detached,
    lxc_cgroups,
    lxc_cli,
    nothing_left,  # noqa: F401 (autouse: nothing of a container is left)
    ps,
    pty_cli,
    record,
    running,
    traces,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lxc backend needs root"),
    pytest.mark.parametrize("backend", ["lxc"], indirect=True),
]


# -- detached containers: ctr's monitor, exec, the rest of the lifecycle -------------------


@pytest.mark.parametrize("user", ["0", "65534"])
def test_monitor_killed_then_ps_and_rm_f_leave_nothing(backend, ctr, paths, user):
    name = f"lxc-mon-{user}"
    rec = detached(ctr, paths, name, "-u", user, "busybox", "sleep", "60")
    extra, pid = rec["extra"], rec["pid"]
    assert Path(f"/proc/{extra['lxc_monitor_pid']}/comm").read_text().strip() == "[lxc monitor]"
    assert (paths.data / "lxc" / name / "config").is_file()
    os.kill(extra["monitor_pid"], signal.SIGKILL)
    # The liblxc monitor dies with ctr's (its death signal); PID 1 with it, by liblxc's, unless
    # a uid change cleared that (the kernel does, for a non-root PID 1, on native too): then
    # the container is still running, and `ps` says so.
    assert wait_until(lambda: not Path(f"/proc/{extra['lxc_monitor_pid']}").exists())
    expected = "exited" if user == "0" else "running"
    assert wait_until(lambda: ps(ctr, name)["status"] == expected), ps(ctr, name)
    assert json.loads(lxc_cli(ctr, "inspect", name).stdout)[0]["state"]["status"] == expected
    r = lxc_cli(ctr, "rm", "-f", name)
    assert r.returncode == 0, r.stderr
    assert not Path(f"/proc/{pid}").exists() or status_field(pid, "State").startswith("Z")
    assert traces(paths, name, rec["id"]) == []
    assert ps(ctr, name) is None


def test_start_returns_when_pid1_runs_and_start_errors_change_nothing(backend, ctr, paths):
    r = lxc_cli(ctr, "create", "--name", "lxc-bad", "busybox", "nosuchcmd")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert (paths.data / "lxc" / "lxc-bad" / "config").is_file()  # create defines it for liblxc
    assert not (paths.runtime / "lxc-bad").exists() and not [p for p in lxc_cgroups() if cid in p.name]
    r = lxc_cli(ctr, "start", "lxc-bad")
    assert r.returncode == 127
    assert r.stderr.strip().splitlines() == ['ctr: exec "nosuchcmd": executable file not found in $PATH']
    assert ps(ctr, "lxc-bad")["status"] == "created"  # as it was
    assert not (paths.runtime / "lxc-bad").exists() and not [p for p in lxc_cgroups() if cid in p.name]
    assert lxc_cli(ctr, "rm", "lxc-bad").returncode == 0

    rec = detached(ctr, paths, "lxc-again", "busybox", "sh", "-c", "echo run; sleep 0.3; true")
    try:
        assert rec["status"] == "running" and status_field(rec["pid"], "Name") == "sh"  # exec'd already
        assert lxc_cli(ctr, "wait", "lxc-again").stdout == "0\n"
        r = lxc_cli(ctr, "start", "lxc-again")  # an exited container starts again, with its layer and log
        assert r.returncode == 0, r.stderr
        assert lxc_cli(ctr, "wait", "lxc-again").stdout == "0\n"
        assert lxc_cli(ctr, "logs", "lxc-again").stdout == "run\nrun\n"
    finally:
        assert lxc_cli(ctr, "rm", "-f", "lxc-again").returncode == 0


def test_detached_rm_removes_everything_when_it_exits(backend, ctr, paths):
    rec = detached(ctr, paths, "lxc-autorm", "--rm", "busybox", "sh", "-c", "sleep 0.5")
    assert wait_until(lambda: traces(paths, "lxc-autorm", rec["id"]) == []), traces(paths, "lxc-autorm", rec["id"])


def test_detached_tty_and_stdin(backend, ctr, paths):
    detached(ctr, paths, "lxc-dt", "-t", "busybox", "sh", "-c", "tty; printf 'a\\nb\\r\\n'; echo err >&2")
    try:
        assert lxc_cli(ctr, "wait", "lxc-dt").stdout == "0\n"
        r = lxc_cli(ctr, "logs", "lxc-dt", input=b"")
        # One stream, exactly what the container's pty produced (its ONLCR, not liblxc's relay's).
        assert (r.stdout, r.stderr) == (b"/dev/pts/0\r\na\r\nb\r\r\nerr\r\n", b"")
    finally:
        lxc_cli(ctr, "rm", "-f", "lxc-dt")
    detached(ctr, paths, "lxc-di", "-i", "busybox", "sh", "-c", "readlink /proc/self/fd/0; cat; echo eof")
    try:
        time.sleep(0.5)
        assert ps(ctr, "lxc-di")["status"] == "running"  # stdin is kept open: cat waits
        assert lxc_cli(ctr, "logs", "lxc-di").stdout.startswith("pipe:")
        assert lxc_cli(ctr, "stop", "-t", "1", "lxc-di").returncode == 0
    finally:
        lxc_cli(ctr, "rm", "-f", "lxc-di")


def test_exec_is_the_containers_process(backend, ctr, paths):
    rec = detached(ctr, paths, "lxc-exec", "-e", "A=1", "-w", "/srv", "--cap-drop", "NET_RAW", "busybox", "sleep", "60")
    try:
        pid = rec["pid"]
        r = lxc_cli(
            ctr,
            "exec",
            "-e",
            "B=2",
            "lxc-exec",
            "sh",
            "-c",
            "echo $$ $A $B $HOME $(pwd); grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; "
            "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; cat /proc/self/cgroup; echo err >&2",
        )
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split()[1:] == ["1", "2", "/root", "/srv"] and lines[0].split()[0] != "1"
        caps = f"{int(DEFAULT_CAPEFF, 16) & ~(1 << 13):016x}"
        assert lines[1:4] == [f"CapEff:\t{caps}", f"CapBnd:\t{caps}", "NoNewPrivs:\t1"]
        assert lines[4:6] == [ns_inode(pid, "pid"), ns_inode(pid, "mnt")]
        assert [line.split(":", 2)[2] for line in lines[6:] if ":memory:" in line or ":pids:" in line] == ["/", "/"]
        assert r.stderr == "err\n"
        r = lxc_cli(
            ctr,
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp/new",
            "lxc-exec",
            "sh",
            "-c",
            "id; pwd; echo $HOME; grep CapEff /proc/self/status",
        )
        assert r.stdout.splitlines() == [
            "uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)",
            "/tmp/new",
            "/home",
            "CapEff:\t0000000000000000",
        ], r.stderr
        assert lxc_cli(ctr, "exec", "-i", "lxc-exec", "cat", input="in\n").stdout == "in\n"
        assert lxc_cli(ctr, "exec", "lxc-exec", "sh", "-c", "exit 6").returncode == 6
        r = lxc_cli(ctr, "exec", "lxc-exec", "nosuchcmd")
        assert (r.returncode, r.stderr) == (127, 'ctr: exec "nosuchcmd": executable file not found in $PATH\n')
        assert lxc_cli(ctr, "exec", "lxc-exec", "/etc").returncode == 126
        r = lxc_cli(ctr, "exec", "-u", "nosuchuser", "lxc-exec", "true")
        assert r.returncode == 125 and "nosuchuser" in r.stderr
        assert lxc_cli(ctr, "pause", "lxc-exec").returncode == 0
        r = lxc_cli(ctr, "exec", "lxc-exec", "true")
        assert r.returncode == 125 and "lxc-exec" in r.stderr and "paused" in r.stderr
        assert lxc_cli(ctr, "unpause", "lxc-exec").returncode == 0
        assert lxc_cli(ctr, "stop", "-t", "0", "lxc-exec").returncode == 0
        r = lxc_cli(ctr, "exec", "lxc-exec", "true")
        assert r.returncode == 125 and "lxc-exec" in r.stderr and "not running" in r.stderr
    finally:
        lxc_cli(ctr, "rm", "-f", "lxc-exec")


def test_exec_with_a_terminal(backend, ctr, paths):
    detached(ctr, paths, "lxc-exec-t", "busybox", "sleep", "60")
    try:
        code, out = pty_cli(ctr, "exec", "-t", "lxc-exec-t", "sh", "-c", "tty; stty size; exit 3")
        assert code == 3, out
        lines = out.replace(b"\r", b"").split(b"\n")
        assert lines[0].startswith(b"/dev/pts/") and lines[1] == b"33 101", out
        code, out = pty_cli(
            ctr, "exec", "-t", "-i", "lxc-exec-t", "sh", "-c", "echo ready; read x; echo got $x", send=b"hello\r"
        )
        assert code == 0 and b"got hello" in out, out
        r = lxc_cli(ctr, "exec", "-t", "lxc-exec-t", "tty", input=b"")  # no terminal on ctr's side: still one
        assert r.returncode == 0 and r.stdout.startswith(b"/dev/pts/"), r.stderr
    finally:
        lxc_cli(ctr, "rm", "-f", "lxc-exec-t")


def test_a_foreground_run_is_seen_and_driven_by_other_commands(backend, ctr, paths):
    with running(ctr, paths, "lxc-fg", "busybox", *LONG) as (proc, pid):
        doc = json.loads(lxc_cli(ctr, "inspect", "lxc-fg").stdout)[0]
        assert (doc["state"]["status"], doc["state"]["pid"]) == ("running", pid)
        raw = doc["backend"]["raw"]
        assert raw["state"] == "RUNNING" and raw["init_pid"] == pid
        assert raw["config"]["lxc.cgroup.dir.container"] == doc["cgroup"] == record(paths, "lxc-fg")["cgroup"]
        assert doc["rootfs"]["upper"] == str(paths.containers / "lxc-fg" / "upper")
        assert ps(ctr, "lxc-fg")["status"] == "running"
        backend.pause("lxc-fg")
        assert backend.get("lxc-fg").status == "paused"
        assert (CGROUP / "freezer" / doc["cgroup"] / "freezer.state").read_text().strip() == "FROZEN"
        backend.unpause("lxc-fg")
        assert lxc_cli(ctr, "exec", "lxc-fg", "hostname").stdout.strip() == doc["id"][:12]
        stats = backend.stats("lxc-fg")
        assert stats["pids_current"] == int((CGROUP / "pids" / doc["cgroup"] / "pids.current").read_text())
        assert backend.root_path("lxc-fg") == Path(f"/proc/{pid}/root")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert backend.wait("lxc-fg") == 0
    backend.remove("lxc-fg")


def test_oom_kill_is_recorded_in_the_foreground_too(backend, ctr, paths):
    r = lxc_cli(
        ctr,
        "run",
        "--name",
        "lxc-oom",
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    )
    try:
        assert r.returncode == 137, r.stderr
        assert json.loads(lxc_cli(ctr, "inspect", "lxc-oom").stdout)[0]["state"]["oom_killed"] is True
        assert lxc_cli(ctr, "run", "--rm", "--memory", "16m", "busybox", "true").returncode == 0
    finally:
        backend.remove("lxc-oom")


def test_concurrent_runs_and_removals(backend, ctr, paths):
    procs = [
        subprocess.Popen(
            [*ctr.args_prefix, "--backend", "lxc", "run", "-d", "busybox", "sleep", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.append(out.strip())
    rows = [r for r in json.loads(lxc_cli(ctr, "ps", "--format", "json").stdout) if r["id"] in ids]
    assert len({r["name"] for r in rows}) == 8 and {r["status"] for r in rows} == {"running"}
    procs = [
        subprocess.Popen(
            [*ctr.args_prefix, "rm", "-f", r["name"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for r in rows
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert not [p for p in lxc_cgroups() if any(i in p.name for i in ids)]
    assert not [r for r in json.loads(lxc_cli(ctr, "ps", "-a", "--format", "json").stdout) if r["id"] in ids]


# -- nothing left ------------------------------------------------------------------------


def test_rm_leaves_nothing(backend, ctr, paths, nothing_left):  # noqa: F811 (the imported fixture)
    r = lxc_cli(ctr, "run", "--rm", "--name", "lxc-gone", "--memory", "32m", "busybox", "sh", "-c", "echo x > /file")
    assert r.returncode == 0, r.stderr
    assert not (paths.containers / "lxc-gone").exists()
    assert nothing_left() == []


def test_failed_start_leaves_nothing(backend, capfd, paths, nothing_left):  # noqa: F811 (the imported fixture)
    names = set(os.listdir(paths.containers)) if paths.containers.exists() else set()
    with pytest.raises(CommandNotFound):
        backend.run(ContainerSpec(image="busybox", command=("nosuchcmd",), name="lxc-failed"))
    assert (set(os.listdir(paths.containers)) if paths.containers.exists() else set()) == names
    assert nothing_left() == []
