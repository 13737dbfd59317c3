"""The keeper of a detached native container: ctr-monitor, then the Python finisher.

The monitor is found as the kernel sees it, the parent of the container's PID 1
(PPid in /proc/PID/status), not as ctr records it. Memory is reported, and only
checked against containerd-shim's ~13 MB; bench/ measures it properly.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from ctr.native import monitor
from ctr.spec import ContainerSpec
from ctr.state import logs

from .helpers import leftover_cgroups, status_field

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native backend needs root")

CONTAINERD_SHIM_RSS_KB = 13 * 1024
READY = ["sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 60 & wait"]


@pytest.fixture
def binary(request: pytest.FixtureRequest) -> str:
    path = monitor.binary()
    if path is None:
        message = f"{monitor.BINARY} is not built (no C compiler at install?): pip install -e . builds it"
        if request.config.getoption("--require-backends"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def made(ctr):
    names: list[str] = []
    yield names
    for name in names:
        ctr("rm", "-f", name)


def _detached(ctr, made: list[str], *args: str) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    r = ctr("run", "-d", "--name", name, *args)
    assert r.returncode == 0, r.stderr
    made.append(name)
    return name


def _record(ctr, name: str) -> dict:
    r = ctr("inspect", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]["backend"]["raw"]["record"]


def _wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _keeper(pid: int) -> int:
    return int(status_field(pid, "PPid"))


def test_keeper_is_ctr_monitor_and_small(ctr, made, binary, paths, record_property, capsys):
    name = _detached(ctr, made, "busybox", *READY)
    assert _wait_for(lambda: ctr("logs", name).stdout == "ready\n")
    record = _record(ctr, name)
    keeper = _keeper(record["pid"])
    assert keeper == record["extra"]["monitor_pid"]
    assert os.readlink(f"/proc/{keeper}/exe") == str(Path(binary).resolve())
    assert Path(f"/proc/{keeper}/comm").read_text().strip() == "ctr-monitor"
    rss_kb = int(status_field(keeper, "VmRSS").split()[0])
    record_property("monitor_vm_rss_kb", rss_kb)
    with capsys.disabled():
        print(f"\n  keeper of a detached native container: ctr-monitor, VmRSS {rss_kb} kB", end=" ")
    assert rss_kb < CONTAINERD_SHIM_RSS_KB
    # It holds nothing of ctr's but the container's outputs, the log and the pidfd.
    fds = {os.readlink(f"/proc/{keeper}/fd/{fd}") for fd in os.listdir(f"/proc/{keeper}/fd")}
    assert {f for f in fds if not f.startswith(("pipe:", "anon_inode:[pidfd]", "/dev/null"))} == {
        str(paths.containers / name / logs.LOG_FILE)
    }
    assert os.readlink(f"/proc/{keeper}/cwd") == "/"  # keeps no directory (or mount) busy


def test_the_finisher_records_the_exit_and_cleans_up(ctr, made, binary, paths):
    name = _detached(ctr, made, "busybox", "sh", "-c", r"""printf 'out "q" \\ \377\n'; echo err >&2; exit 3""")
    r = ctr("wait", name)
    assert r.stdout.strip() == "3", r.stderr
    record = _record(ctr, name)
    assert (record["status"], record["exit_code"], record["pid"], record["oom_killed"]) == ("exited", 3, None, False)
    assert not (paths.runtime / name).exists()
    assert not [p for p in leftover_cgroups() if record["cgroup"] in p]
    entries = logs.read(paths.containers / name / logs.LOG_FILE)
    assert [(e.stream, e.data) for e in entries] == [("stdout", 'out "q" \\ \ufffd\n'.encode()), ("stderr", b"err\n")]


def test_stop_is_recorded_as_128_plus_signal(ctr, made, binary):
    name = _detached(ctr, made, "busybox", "sleep", "60")  # PID 1 without a TERM handler: SIGKILL after -t
    assert ctr("stop", "-t", "1", name).returncode == 0
    assert _record(ctr, name)["exit_code"] == 128 + signal.SIGKILL
    name = _detached(ctr, made, "busybox", *READY)
    assert _wait_for(lambda: ctr("logs", name).stdout == "ready\n")
    assert ctr("stop", name).returncode == 0
    assert _record(ctr, name)["exit_code"] == 0


def test_detached_rm_removes_the_container_once_it_exits(ctr, made, binary, paths):
    name = _detached(ctr, made, "--rm", "busybox", "true")
    assert _wait_for(lambda: not (paths.containers / name).exists())
    assert not (paths.runtime / name).exists()


def test_detached_tty_is_logged_as_stdout(ctr, made, binary, paths):
    name = _detached(ctr, made, "-t", "busybox", "sh", "-c", "echo on a terminal; exit 2")
    assert ctr("wait", name).stdout.strip() == "2"
    entries = logs.read(paths.containers / name / logs.LOG_FILE)
    assert [(e.stream, e.data) for e in entries] == [("stdout", b"on a terminal\r\n")]


def test_detached_stdin_stays_open(ctr, made, binary):
    # -d -i: ctr-monitor inherits the write end of stdin, so cat never sees EOF
    name = _detached(ctr, made, "-i", "busybox", "sh", "-c", "echo ready; cat; echo eof")
    assert _wait_for(lambda: ctr("logs", name).stdout == "ready\n")
    time.sleep(0.5)
    assert json.loads(ctr("inspect", name).stdout)[0]["state"]["status"] == "running"
    assert ctr("logs", name).stdout == "ready\n"
    assert ctr("rm", "-f", name).returncode == 0


def test_backends_names_the_monitor(ctr, binary):
    r = ctr("backends")
    native = next(line for line in r.stdout.splitlines() if line.startswith("native"))
    assert "ctr-monitor" in native and "python" not in native


def test_without_the_binary_the_python_loop_keeps_the_container(backend_native, monkeypatch, paths):
    """An install without a C compiler: the fork stays Python and does the same job."""
    monkeypatch.setattr(monitor, "binary", lambda: None)
    assert monitor.describe() == "python (ctr-monitor not built)"
    name = f"t-{uuid.uuid4().hex[:8]}"
    backend_native.create(ContainerSpec(image="busybox", command=("sh", "-c", "echo py; sleep 60"), name=name))
    try:
        backend_native.start(name)
        record = backend_native.get(name)
        keeper = _keeper(record.pid)
        assert os.readlink(f"/proc/{keeper}/exe") != str(monitor.BINARY.resolve())
        assert _wait_for(lambda: [e.data for e in backend_native.logs(name)] == [b"py\n"])
        backend_native.stop(name, timeout=0)
        assert backend_native.wait(name) == 128 + signal.SIGKILL
    finally:
        backend_native.remove(name, force=True)


@pytest.fixture
def backend_native(paths):
    from ctr.backends import get_backend

    return get_backend("native", paths)
