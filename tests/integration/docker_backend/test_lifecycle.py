"""The docker backend end to end, after the run: records, state read live from the engine, logs,
exec, and ctr's images in the engine (see test_run.py for the fixtures' promises).
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
from pathlib import Path

import docker.errors
import pytest

from tests.integration.docker_backend.support import docker_only, inspect, leftovers, ps, running, wait_until
from tests.integration.helpers import cgroup_dir, read_until_closed

# --- the lifecycle: records, state read live, logs, exec ----------------------------------
# (what tests/integration/test_lifecycle.py checks on every backend is not repeated here)


@docker_only
def test_foreground_run_is_in_ps_and_inspect_while_it_runs(dctr, engine, name, paths):
    with running(dctr, engine, name) as (proc, pid, cid):
        row = ps(dctr)[name]
        assert (row["backend"], row["status"], row["pid"], row["id"]) == ("docker", "running", pid, cid)
        doc = inspect(dctr, name)
        assert doc["state"]["pid"] == pid and doc["backend"]["raw"]["Id"] == cid
        assert doc["backend"]["raw"]["HostConfig"]["LogConfig"]["Type"] == "none"  # the output went to ctr
        record = json.loads((paths.containers / name / "record.json").read_text())
        assert record["backend"] == "docker" and record["extra"]["docker_id"] == cid
        assert record["spec"]["auto_remove"] is True and record["image"] == "busybox:latest"
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert name not in ps(dctr, "-a")
    assert not (paths.containers / name).exists() and leftovers(engine, name) == []


@docker_only
def test_foreground_without_rm_stays_until_ctr_rm(dctr, engine, name, paths):
    assert dctr("run", "--name", name, "busybox", "sh", "-c", "exit 6").returncode == 6
    row = ps(dctr, "-a")[name]
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

    assert (
        dctr("run", "-d", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; printf partial").returncode
        == 0
    )
    assert dctr("wait", name).stdout.strip() == "0"
    assert engine.api.inspect_container(name)["HostConfig"]["LogConfig"]["Type"] == "json-file"
    entries = list(backend.logs(name))
    assert all(isinstance(e, LogEntry) and e.time.endswith("Z") and e.time[:4].isdigit() for e in entries)
    by_stream = {s: b"".join(e.data for e in entries if e.stream == s) for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": b"out\npartial", "stderr": b"err\n"}
    assert list(backend.logs(name, tail=0)) == []


@docker_only
def test_logs_follow_until_the_container_stops(dctr, name):
    assert (
        dctr(
            "run", "-d", "--name", name, "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"
        ).returncode
        == 0
    )
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
    r = dctr(
        "run",
        "-d",
        "--name",
        name,
        "-e",
        "A=container",
        "-e",
        "B=kept",
        "--entrypoint",
        "sh",
        config_image.name,
        "-c",
        "sleep 60",
    )
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
    r = dctr("exec", name, "echo", 'OCI runtime exec failed: exec: "x": permission denied')
    assert r.returncode == 0 and r.stdout.startswith("OCI runtime exec failed")


@docker_only
def test_exec_with_a_tty(dctr, name):
    import fcntl
    import struct
    import termios

    assert dctr("run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 21, 77, 0, 0))
    script = (
        'tty; i=0; while [ "$(stty size 2>/dev/null)" != "21 77" ] && [ $i -lt 250 ]; do usleep 20000; '
        "i=$((i+1)); done; stty size; exit 3"
    )
    proc = subprocess.Popen(
        [*dctr.args_prefix, "exec", "-t", name, "sh", "-c", script], stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    out = read_until_closed(master)
    assert proc.wait(timeout=30) == 3
    lines = [line for line in out.replace(b"\r", b"").split(b"\n") if line]
    assert lines[0].startswith(b"/dev/pts/") and lines[1] == b"21 77", out


@docker_only
def test_states_and_their_conflicts(dctr, name, tmp_path):
    r = dctr("create", "--name", name, "busybox", "sleep", "60")
    assert r.returncode == 0
    assert ps(dctr, "-a")[name]["status"] == "created"
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
    assert ps(dctr)[name]["status"] == "running"


@docker_only
def test_inspect_rootfs_and_cgroup_are_the_engines(dctr, engine, name):
    assert dctr("run", "-d", "--name", name, "busybox", "sh", "-c", "echo x > /made-here; sleep 60").returncode == 0
    raw = engine.api.inspect_container(name)
    doc = inspect(dctr, name)
    assert doc["id"] == raw["Id"] and doc["state"]["pid"] == raw["State"]["Pid"]
    assert doc["rootfs"]["type"] == raw["GraphDriver"]["Name"]
    if raw["GraphDriver"]["Name"] == "overlay2":
        upper = Path(doc["rootfs"]["upper"])
        assert upper == Path(raw["GraphDriver"]["Data"]["UpperDir"])
        assert wait_until(lambda: (upper / "made-here").exists())
        assert doc["rootfs"]["lower"] and all(Path(p).is_dir() for p in doc["rootfs"]["lower"])
    pid = raw["State"]["Pid"]
    controller = "memory" if Path("/sys/fs/cgroup/memory").is_dir() else ""
    assert cgroup_dir(pid, controller).as_posix().endswith(doc["cgroup"]) and raw["Id"] in doc["cgroup"]
    assert dctr("stop", "-t", "0", name).returncode == 0
    doc = inspect(dctr, name)
    assert doc["state"]["status"] == "exited" and doc["state"]["finished_at"].endswith("Z") and doc["cgroup"] == ""


@docker_only
def test_engine_container_removed_behind_ctrs_back(dctr, engine, name, paths):
    assert dctr("run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    engine.api.remove_container(name, force=True)
    row = ps(dctr, "-a")[name]
    assert row["status"] == "exited"
    doc = inspect(dctr, name)
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
    assert name not in ps(dctr, "-a") and not (paths.containers / name).exists()
    assert leftovers(engine, name) == []
    assert dctr("run", "-d", "--rm", "--name", name, "busybox", "true").returncode == 0
    assert wait_until(lambda: not leftovers(engine, name))
    assert name not in ps(dctr, "-a")  # looking at it is enough to forget it
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
    with pytest.raises(docker.errors.NotFound):
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
