"""The lxc backend end to end: real liblxc, real containers, checked from the host and from inside.

Most tests call the backend directly (`backend.run(spec)`, output through capfd);
those that need ctr's own stdin, a terminal or signals run the CLI. Every test
ends with nothing of the container left: no LXC container under ctr's lxcpath,
no cgroup, no mount, no runtime directory (the autouse fixture checks).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import tarfile
import termios
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ctr.backends.images import ImageStore
from ctr.errors import CommandNotExecutable, CommandNotFound, Conflict, InvalidSpec, Unsupported
from ctr.spec import ContainerSpec, Mount

from .helpers import DEFAULT_CAPEFF, NAMESPACES, ns_inode, status_field

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lxc backend needs root"),
    pytest.mark.parametrize("backend", ["lxc"], indirect=True),
]

LONG = ["sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 60 & wait"]
CGROUP = Path("/sys/fs/cgroup")


def run(backend, capfd, *command: str, image: str = "busybox", **fields) -> tuple[int, str, str]:
    """backend.run() on a --rm container; returns (exit code, stdout, stderr)."""
    capfd.readouterr()
    code = backend.run(ContainerSpec(image=image, command=command, auto_remove=True, **fields))
    out, err = capfd.readouterr()
    return code, out, err


def lxc_cli(ctr, *args: str, **kw):
    return ctr("--backend", "lxc", *args, **kw)


def record(paths, name: str) -> dict:
    return json.loads((paths.containers / name / "record.json").read_text())


def lxc_cgroups() -> list[Path]:
    """The lxc backend's cgroups (ctr-lxc-<id>[.monitor|.pivot]) in every hierarchy."""
    found: list[Path] = []
    for hierarchy in [CGROUP, *CGROUP.iterdir()]:
        if hierarchy.is_dir():
            found += [p for p in hierarchy.glob("ctr-lxc-*") if p.is_dir()]
    return found


def leftovers(paths) -> list[str]:
    """What a finished container could leave behind: LXC dirs, cgroups, mounts, runtime dirs."""
    found = []
    lxcpath = paths.data / "lxc"
    if lxcpath.exists():
        found += [f"lxc container {p}" for p in lxcpath.iterdir()]
    found += [f"cgroup {p}" for p in lxc_cgroups()]
    found += [f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(paths.data) in line]
    if paths.runtime.exists():
        found += [f"runtime dir {p}" for p in paths.runtime.iterdir()]
    return found


@pytest.fixture(autouse=True)
def nothing_left(paths):
    yield
    deadline = time.monotonic() + 10  # a monitor killed by a test may still be tidying up
    while leftovers(paths) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(paths) == []


@contextmanager
def running(ctr, paths, name: str, *args: str, timeout: float = 30):
    """`ctr --backend lxc run --name NAME ARGS` in the background; yields (proc, pid of PID 1)
    once the container printed "ready" and ctr recorded PID 1."""
    proc = subprocess.Popen([*ctr.args_prefix, "--backend", "lxc", "run", "--name", name, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"container did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        deadline = time.monotonic() + timeout
        while pid is None and time.monotonic() < deadline:
            try:
                pid = record(paths, name)["pid"]
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.02)
        assert pid, "ctr never recorded PID 1"
        yield proc, pid
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            if pid:  # PID 1 ignored SIGTERM: end it, and ctr with it
                os.kill(pid, signal.SIGKILL)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pty_run(ctr, *args: str, rows: int = 33, cols: int = 101, send: bytes = b"", when: bytes = b"ready") -> tuple[int, bytes]:
    """Run the CLI on a fresh pseudo-terminal, type `send` once it printed `when`;
    returns (exit code, everything it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([*ctr.args_prefix, "--backend", "lxc", "run", "--rm", *args],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    while True:
        if send and when in out:
            os.write(master, send)
            send = b""
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=60), out


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
    code, out, err = run(backend, capfd, "sh", "-c", "echo $A $B $(pwd) $(id -u):$(id -g) $(hostname) $HOSTNAME $HOME",
                         env=("A=1", "B=two words"), workdir="/tmp/new/dir", user="65534:65534", hostname="box")
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
        shutil.rmtree(paths.containers / "lxc-host")


def test_capabilities_are_dockers(backend, capfd):
    code, out, _ = run(backend, capfd, "grep", "-E", "CapEff|CapBnd|NoNewPrivs", "/proc/self/status")
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields == {"CapEff": DEFAULT_CAPEFF, "CapBnd": DEFAULT_CAPEFF, "NoNewPrivs": "1"}
    code, out, _ = run(backend, capfd, "grep", "CapEff", "/proc/self/status", cap_drop=("NET_RAW",), cap_add=("SYS_ADMIN",))
    mask = int(out.split()[1], 16)
    assert not mask & (1 << 13) and mask & (1 << 21)
    code, out, _ = run(backend, capfd, "grep", "CapEff", "/proc/self/status", cap_drop=("ALL",))
    assert out.split()[1] == "0000000000000000"


def test_config_maps_the_spec(backend):
    """The liblxc keys a spec turns into (the runs above show the kernel agrees)."""
    from ctr.backends.lxc import lxc_config

    spec = ContainerSpec(image="busybox", cap_drop=("ALL",), cap_add=("NET_ADMIN", "kill"), network="host",
                         read_only=True, memory=64 << 20, pids_limit=-1, tty=True)
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
    none = dict(lxc_config(spec.with_changes(cap_drop=("ALL",), cap_add=(), network="none", tty=False),
                           "b" * 64, "h", ["/l"], "/u", "/r", "/log", [], "/", user))
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
    code, out, err = run(backend, capfd, "sh", "-c",
                         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                         "/sys/fs/cgroup/cpu/cpu.cfs_quota_us; touch /sys/fs/cgroup/x 2>/dev/null || echo ro; "
                         "echo 1 > /sys/fs/cgroup/pids/pids.max 2>/dev/null || echo ro",
                         memory=64 << 20, pids_limit=20, cpus=0.25)
    assert out.split() == [str(64 << 20), "20", "25000", "ro", "ro"], err


def test_pids_limit_is_enforced(backend, capfd):
    code, out, err = run(backend, capfd, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait", pids_limit=5)
    assert "can't fork" in err, err


# -- network -----------------------------------------------------------------------------


def test_network_none_has_only_lo_up(backend, capfd):
    code, out, err = run(backend, capfd, "sh", "-c",
                         "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate; "
                         "ping -c1 -W1 127.0.0.1 >/dev/null && echo ping")
    assert out.split() == ["lo", "unknown", "ping"], err


def test_network_host_shares_the_hosts(backend, capfd):
    code, out, _ = run(backend, capfd, "readlink", "/proc/self/ns/net", network="host")
    assert out.strip() == ns_inode("self", "net")


def test_network_bridge_is_unsupported(backend, capfd, paths):
    with pytest.raises(Unsupported, match="bridge"):
        run(backend, capfd, "true", network="bridge")


# -- filesystems -------------------------------------------------------------------------


def test_volumes_rw_and_ro(backend, capfd, tmp_path):
    data = tmp_path / "dir with space"
    data.mkdir()
    (data / "in").write_text("from host\n")
    single = tmp_path / "single"
    single.write_text("one file\n")
    code, out, err = run(backend, capfd, "sh", "-c", "cat /data/deep/in /etc/single; echo from container > /data/deep/out",
                         mounts=(Mount(str(data), "/data/deep"), Mount(str(single), "/etc/single", read_only=True)))
    assert (code, out) == (0, "from host\none file\n"), err
    assert (data / "out").read_text() == "from container\n"
    code, out, err = run(backend, capfd, "sh", "-c", "echo x > /data/out2", mounts=(Mount(str(data), "/data", read_only=True),))
    assert code != 0 and "Read-only file system" in err
    assert not (data / "out2").exists()


def test_read_only_root(backend, capfd, tmp_path):
    code, out, err = run(backend, capfd, "sh", "-c", "touch /x", read_only=True)
    assert code != 0 and "Read-only file system" in err
    # Mount targets and the working directory are made before the root turns read-only.
    code, out, err = run(backend, capfd, "sh", "-c", "pwd; echo ok > /dev/shm/x && cat /dev/shm/x; echo v > /new/vol/f",
                         read_only=True, workdir="/work", mounts=(Mount(str(tmp_path), "/new/vol"),))
    assert (code, out.split()) == (0, ["/work", "ok"]), err
    assert (tmp_path / "f").read_text() == "v\n"


def tar_layer(*entries: tuple[str, str, str]) -> bytes:
    """A layer tar from (name, kind, content): kind "file", "dir" or "symlink" (content = target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                data = content.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def layered_image(paths) -> str:
    """busybox plus a second layer: symlinks, a whiteout, an extra user and group."""
    store = ImageStore(paths)
    busybox = store.get("busybox")
    top = tar_layer(
        ("etc", "dir", ""),
        ("etc/motd", "file", "from the top layer\n"),
        ("etc/passwd", "file", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"),
        ("etc/group", "file", "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n"),
        ("bin", "dir", ""),
        ("bin/.wh.vi", "file", ""),  # deletes busybox's /bin/vi
        ("var", "dir", ""),
        ("var/run", "symlink", "../run"),
        ("hostetc", "symlink", "/etc"),  # absolute: must resolve inside the container
    )
    ref = "ctr-lxc-test/layered:1"
    store.create(ref, [store.blob_path(busybox.layer_digests[0]), top], config=busybox.config)
    return ref


def test_layers_whiteouts_and_symlinked_mount_targets(backend, capfd, layered_image, tmp_path):
    (tmp_path / "f").write_text("volume\n")
    tmp_path.chmod(0o755)  # alice reads it
    code, out, err = run(backend, capfd, "sh", "-c",
                         "cat /etc/motd /run/x/f /etc/evil/f; test -e /bin/vi || echo no-vi; id",
                         image=layered_image, user="alice",
                         mounts=(Mount(str(tmp_path), "/var/run/x"), Mount(str(tmp_path), "/hostetc/evil")))
    assert out.splitlines() == ["from the top layer", "volume", "volume", "no-vi",
                                "uid=1000(alice) gid=1000(alice) groups=50(staff)"], err
    assert not Path("/etc/evil").exists()  # the image's link to /etc never reached the host's


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            p = Path(dirpath, name)
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_size} {st.st_mtime_ns}".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


def test_image_layers_are_never_modified(backend, capfd, paths):
    run(backend, capfd, "true")
    layers = sorted(paths.layers.iterdir())
    before = [tree_digest(p) for p in layers]
    code, _, err = run(backend, capfd, "sh", "-c", "echo hacked > /etc/passwd; rm /bin/ls; touch /new; mkdir -p /usr/x")
    assert code == 0, err
    assert [tree_digest(p) for p in layers] == before
    assert run(backend, capfd, "head", "-1", "/etc/passwd")[1].startswith("root:")


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
    code, out = pty_run(ctr, "-t", "-i", "busybox", "sh", "-c", "trap 'echo INT; exit 9' INT; echo ready; sleep 30 & wait",
                        send=b"\x03")
    assert code == 9 and b"INT" in out


def test_signals_to_ctr_reach_the_container(backend, ctr, paths):
    trap = ["sh", "-c", "trap 'echo got USR1; exit 5' USR1; echo ready; sleep 60 & wait"]
    with running(ctr, paths, "lxc-usr1", "--rm", "busybox", *trap) as (proc, pid):
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=30) == 5
        assert proc.stdout.read() == "got USR1\n"


def test_killed_ctr_stops_the_container_and_tidies_up(backend, ctr, paths):
    with running(ctr, paths, "lxc-orphan", "busybox", "sh", "-c", "trap 'exit 3' TERM; echo ready; sleep 60 & wait") as (proc, pid):
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
        shutil.rmtree(paths.containers / "lxc-orphan")


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


# -- nothing left ------------------------------------------------------------------------


def test_rm_leaves_nothing(backend, ctr, paths):
    r = lxc_cli(ctr, "run", "--rm", "--name", "lxc-gone", "--memory", "32m", "busybox", "sh", "-c", "echo x > /file")
    assert r.returncode == 0, r.stderr
    assert not (paths.containers / "lxc-gone").exists()
    assert leftovers(paths) == []


def test_failed_start_leaves_nothing(backend, capfd, paths):
    names = set(os.listdir(paths.containers)) if paths.containers.exists() else set()
    with pytest.raises(CommandNotFound):
        backend.run(ContainerSpec(image="busybox", command=("nosuchcmd",), name="lxc-failed"))
    assert (set(os.listdir(paths.containers)) if paths.containers.exists() else set()) == names
    assert leftovers(paths) == []
