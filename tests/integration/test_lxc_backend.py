"""The lxc backend end to end: real liblxc, real containers, checked from the host and from inside.

Most tests call the backend directly (`backend.run(spec)`, output through capfd);
those that need ctr's own stdin, a terminal or signals run the CLI. Every test
ends with nothing of the container left: no LXC container under ctr's lxcpath,
no cgroup, no mount, no runtime directory, no liblxc lock file (the autouse
fixture checks). The lifecycle verbs every backend shares are tested in
test_lifecycle.py and test_conformance.py; here is what is particular to liblxc:
its monitor killed, exec through attach, a foreground run driven from outside.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import pty
import signal
import struct
import subprocess
import tarfile
import termios
import time
import contextlib
from contextlib import contextmanager
from pathlib import Path

import pytest

from ctr.images.store import ImageStore
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
LXC_LOCKS = Path("/run/lxc/lock")


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


def foreign(cgroup: Path, paths) -> bool:
    """Whether a ctr-lxc-* cgroup is another ctr's (a test run beside ours on this host): it
    has processes, and none of them is ours: neither PID 1 (whose mount table shows our layers)
    nor a liblxc monitor (which keeps our lxcpath's log open)."""
    base = cgroup.name.split(".")[0]
    pids = set()
    for d in cgroup.parent.glob(f"{base}*"):
        with contextlib.suppress(OSError):
            pids.update((d / "cgroup.procs").read_text().split())
    for pid in pids:
        with contextlib.suppress(OSError):
            if str(paths.data) in Path(f"/proc/{pid}/mountinfo").read_text():
                return False
            if any(str(paths.data) in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")):
                return False
    return bool(pids)


def leftovers(paths) -> list[str]:
    """What a finished container could leave behind: LXC dirs, cgroups, mounts, runtime dirs."""
    found = []
    lxcpath = paths.data / "lxc"
    if lxcpath.exists():
        found += [f"lxc container {p}" for p in lxcpath.iterdir()]
    found += [f"cgroup {p}" for p in lxc_cgroups() if not foreign(p, paths)]
    found += [f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(paths.data) in line]
    if paths.runtime.exists():
        found += [f"runtime dir {p}" for p in paths.runtime.iterdir()]
    lock_dir = LXC_LOCKS / str(lxcpath).lstrip("/")  # liblxc's lock files of ctr's lxcpath
    if lock_dir.is_dir():
        found += [f"liblxc lock {p}" for p in lock_dir.iterdir()]
    return found


@pytest.fixture(autouse=True)
def nothing_left(paths):
    # cgroups are the host's: another test run on this machine may have its own ctr-lxc-* ones
    # (see foreign()), and what was left before this test is not its doing.
    before = set(leftovers(paths))

    def new() -> list[str]:
        return [item for item in leftovers(paths) if item not in before]

    yield new
    deadline = time.monotonic() + 10  # a monitor killed by a test may still be tidying up
    while new() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert new() == []


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


def pty_run(ctr, *args: str, **kw) -> tuple[int, bytes]:
    """`ctr run --rm ARGS` on a fresh pseudo-terminal (see pty_cli)."""
    return pty_cli(ctr, "run", "--rm", *args, **kw)


def pty_cli(ctr, *args: str, rows: int = 33, cols: int = 101, send: bytes = b"", when: bytes = b"ready") -> tuple[int, bytes]:
    """Run the CLI on a fresh pseudo-terminal, type `send` once it printed `when`;
    returns (exit code, everything it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([*ctr.args_prefix, "--backend", "lxc", *args],
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
        backend.remove("lxc-host")  # its liblxc config stays with it until rm, as Docker keeps its own


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
    from ctr.backends.lxc.config import lxc_config

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
                                "uid=1000(alice) gid=1000(alice) groups=50(staff),1000(alice)"], err
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


# -- detached containers: ctr's monitor, exec, the rest of the lifecycle -------------------


def detached(ctr, paths, name: str, *args: str) -> dict:
    """`ctr --backend lxc run -d --name NAME ARGS`; returns the record as `run -d` left it."""
    r = lxc_cli(ctr, "run", "-d", "--name", name, *args)
    assert r.returncode == 0, r.stderr
    return record(paths, name)


def ps(ctr, name: str) -> dict | None:
    rows = json.loads(lxc_cli(ctr, "ps", "-a", "--format", "json").stdout)
    return next((r for r in rows if r["name"] == name), None)


def wait_until(check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def traces(paths, name: str, cid: str) -> list[str]:
    """Everything of container `name` (id `cid`) that could outlive it."""
    found = [str(p) for p in (paths.containers / name, paths.data / "lxc" / name, paths.runtime / name,
                              LXC_LOCKS / str(paths.data / "lxc").lstrip("/") / f".{name}") if p.exists()]
    return found + [str(p) for p in lxc_cgroups() if cid in p.name]


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
        r = lxc_cli(ctr, "exec", "-e", "B=2", "lxc-exec", "sh", "-c",
                    "echo $$ $A $B $HOME $(pwd); grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; "
                    "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; cat /proc/self/cgroup; echo err >&2")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split()[1:] == ["1", "2", "/root", "/srv"] and lines[0].split()[0] != "1"
        caps = f"{int(DEFAULT_CAPEFF, 16) & ~(1 << 13):016x}"
        assert lines[1:4] == [f"CapEff:\t{caps}", f"CapBnd:\t{caps}", "NoNewPrivs:\t1"]
        assert lines[4:6] == [ns_inode(pid, "pid"), ns_inode(pid, "mnt")]
        assert [line.split(":", 2)[2] for line in lines[6:] if ":memory:" in line or ":pids:" in line] == ["/", "/"]
        assert r.stderr == "err\n"
        r = lxc_cli(ctr, "exec", "-u", "nobody", "-w", "/tmp/new", "lxc-exec", "sh", "-c",
                    "id; pwd; echo $HOME; grep CapEff /proc/self/status")
        assert r.stdout.splitlines() == ["uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)", "/tmp/new",
                                         "/home", "CapEff:\t0000000000000000"], r.stderr
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
        code, out = pty_cli(ctr, "exec", "-t", "-i", "lxc-exec-t", "sh", "-c", "echo ready; read x; echo got $x", send=b"hello\r")
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
    r = lxc_cli(ctr, "run", "--name", "lxc-oom", "--memory", "16m", "busybox", "sh", "-c",
                "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived")
    try:
        assert r.returncode == 137, r.stderr
        assert json.loads(lxc_cli(ctr, "inspect", "lxc-oom").stdout)[0]["state"]["oom_killed"] is True
        assert lxc_cli(ctr, "run", "--rm", "--memory", "16m", "busybox", "true").returncode == 0
    finally:
        backend.remove("lxc-oom")


def test_concurrent_runs_and_removals(backend, ctr, paths):
    procs = [subprocess.Popen([*ctr.args_prefix, "--backend", "lxc", "run", "-d", "busybox", "sleep", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.append(out.strip())
    rows = [r for r in json.loads(lxc_cli(ctr, "ps", "--format", "json").stdout) if r["id"] in ids]
    assert len({r["name"] for r in rows}) == 8 and {r["status"] for r in rows} == {"running"}
    procs = [subprocess.Popen([*ctr.args_prefix, "rm", "-f", r["name"]], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in rows]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert not [p for p in lxc_cgroups() if any(i in p.name for i in ids)]
    assert not [r for r in json.loads(lxc_cli(ctr, "ps", "-a", "--format", "json").stdout) if r["id"] in ids]


# -- nothing left ------------------------------------------------------------------------


def test_rm_leaves_nothing(backend, ctr, paths, nothing_left):
    r = lxc_cli(ctr, "run", "--rm", "--name", "lxc-gone", "--memory", "32m", "busybox", "sh", "-c", "echo x > /file")
    assert r.returncode == 0, r.stderr
    assert not (paths.containers / "lxc-gone").exists()
    assert nothing_left() == []


def test_failed_start_leaves_nothing(backend, capfd, paths, nothing_left):
    names = set(os.listdir(paths.containers)) if paths.containers.exists() else set()
    with pytest.raises(CommandNotFound):
        backend.run(ContainerSpec(image="busybox", command=("nosuchcmd",), name="lxc-failed"))
    assert (set(os.listdir(paths.containers)) if paths.containers.exists() else set()) == names
    assert nothing_left() == []
