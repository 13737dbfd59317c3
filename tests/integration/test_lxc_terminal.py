"""The lxc backend with ctr's own stdin, a terminal and signals: the CLI on a pty, ^C,
ctr killed, a foreground run stopped from another ctr (helpers: lxc_helpers.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ctr.errors import Conflict

from .lxc_helpers import (
    lxc_cli,
    nothing_left,  # noqa: F401 (autouse: nothing of a container is left)
    pty_run,
    record,
    running,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lxc backend needs root"),
    pytest.mark.parametrize("backend", ["lxc"], indirect=True),
]


# -- stdin, terminal, signals ------------------------------------------------------------


def test_stdin_only_with_i(backend, ctr):
    assert lxc_cli(ctr, "run", "--rm", "-i", "busybox", "cat", input="hi\n").stdout == "hi\n"
    r = lxc_cli(ctr, "run", "--rm", "busybox", "sh", "-c", "cat; readlink /proc/self/fd/0", input="hi\n")
    assert r.stdout == "/dev/null\n"


def test_tty_is_the_containers_own_pty(backend, ctr):
    code, out = pty_run(ctr, "-t", "busybox", "sh", "-c", "tty; stty size; echo err >&2; exit 4")
    assert code == 4
    assert out.replace(b"\r", b"").split(b"\n")[:3] == [b"/dev/pts/0", b"33 101", b"err"]


def test_tty_without_a_terminal_and_line_endings(backend, ctr):
    r = lxc_cli(ctr, "run", "--rm", "-t", "busybox", "sh", "-c", "tty; stty raw; printf 'a\\nb\\r\\n'", input=b"")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"/dev/pts/0\r\na\nb\r\n"  # exactly what the container's pty produced
    r = lxc_cli(ctr, "run", "--rm", "-t", "-i", "busybox", "true")
    assert r.returncode == 125 and "not a TTY" in r.stderr


def test_tty_input_and_ctrl_c(backend, ctr):
    code, out = pty_run(ctr, "-t", "-i", "busybox", "sh", "-c", "echo ready; read x; echo got $x", send=b"hello\r")
    assert code == 0 and b"got hello" in out
    code, out = pty_run(
        ctr, "-t", "-i", "busybox", "sh", "-c", "trap 'echo INT; exit 9' INT; echo ready; sleep 30 & wait", send=b"\x03"
    )
    assert code == 9 and b"INT" in out


def test_signals_to_ctr_reach_the_container(backend, ctr, paths):
    trap = ["sh", "-c", "trap 'echo got USR1; exit 5' USR1; echo ready; sleep 60 & wait"]
    with running(ctr, paths, "lxc-usr1", "--rm", "busybox", *trap) as (proc, pid):
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=30) == 5
        assert proc.stdout.read() == "got USR1\n"


def test_killed_ctr_stops_the_container_and_tidies_up(backend, ctr, paths):
    with running(
        ctr, paths, "lxc-orphan", "busybox", "sh", "-c", "trap 'exit 3' TERM; echo ready; sleep 60 & wait"
    ) as (proc, pid):
        proc.kill()  # ctr dies at once: its monitor gets SIGTERM and passes it on
        proc.wait()
        deadline = time.monotonic() + 20
        while record(paths, "lxc-orphan")["status"] != "exited" and time.monotonic() < deadline:
            time.sleep(0.1)
        rec = record(paths, "lxc-orphan")
    try:
        assert (rec["status"], rec["exit_code"]) == ("exited", 3)
        assert not Path(f"/proc/{pid}").exists()
    finally:
        backend.remove("lxc-orphan")


def test_stop_kill_and_remove_from_another_ctr(backend, ctr, paths):
    """The lifecycle calls reach a container that another ctr process runs in the foreground."""
    with running(ctr, paths, "lxc-stop", "busybox", "sh", "-c", "echo ready; sleep 60") as (proc, pid):
        assert backend.get("lxc-stop").status == "running"
        assert "lxc-stop" in [r.name for r in backend.list()]
        with pytest.raises(Conflict):
            backend.remove("lxc-stop")
        started = time.monotonic()
        backend.stop("lxc-stop", timeout=1)  # PID 1 ignores SIGTERM: SIGKILL after the timeout
        assert proc.wait(timeout=30) == 137 and time.monotonic() - started < 20
    rec = backend.get("lxc-stop")
    assert (rec.status, rec.exit_code) == ("exited", 137)
    backend.remove("lxc-stop")
    assert not (paths.containers / "lxc-stop").exists()
    with running(ctr, paths, "lxc-force", "busybox", "sh", "-c", "echo ready; sleep 60") as (proc, pid):
        backend.remove("lxc-force", force=True)
        assert proc.wait(timeout=30) == 137
    assert not (paths.containers / "lxc-force").exists()
