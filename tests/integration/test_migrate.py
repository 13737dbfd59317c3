"""ctr migrate, export/import and commit with real containers, in all six directions.

A container writes, changes and deletes files (hard links, symlinks, set-id
modes, owners, times, a device node, a fifo, an opaque directory, a user xattr
put in its writable layer from the host); then it is moved, and the whole tree
of its root is hashed from inside, before and after, by the same busybox script.
Failures half-way must leave the source as it was and nothing on the target.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from ctr.backends import backend_class, get_backend, probe
from ctr.backends.base import Backend
from ctr.errors import Conflict, CtrError, Unsupported
from ctr.transfer.tree import tree_digest

ALL = ("native", "lxc", "docker")
DIRECTIONS = [(a, b) for a in ALL for b in ALL if a != b]

# Runs once: a restart on the target must not change anything, so it is guarded by /ready.
SCRIPT = r"""
if [ ! -e /ready ]; then
  mkdir -p /srv/app/sub /srv/empty
  echo one > /srv/app/a
  printf 'two\000bytes' > /srv/app/b
  ln /srv/app/a /srv/app/hard
  ln -s ../a /srv/app/sub/rel
  ln -s /nowhere /srv/app/dangling
  chown 123:456 /srv/app/b
  chmod 4711 /srv/app/a
  touch -d '2001-02-03 04:05:06' /srv/app/b
  mkfifo /srv/fifo
  mknod /srv/null c 1 3
  echo 'extra:x:1000:1000::/home/extra:/bin/sh' >> /etc/passwd
  rm /etc/group
  rm -rf /usr/sbin && mkdir /usr/sbin && echo tool > /usr/sbin/tool
  touch /ready
fi
exec sleep 600
"""

# The container's whole root as it sees it: every name (but what runtimes mount or
# inject: /proc, /sys, /dev, docker's /.dockerenv and /etc/{hosts,hostname,resolv.conf}),
# type, mode, owner, mtime, link count, content hash, link target; and its process.
HASH = r"""
cd / && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./.dockerenv \
  -o -path ./etc/hosts -o -path ./etc/hostname -o -path ./etc/resolv.conf -o -path ./etc/mtab \) -prune -o -print | sort |
while read -r f; do
  if [ -L "$f" ]; then echo "$f L $(stat -c '%a %u:%g %Y' "$f") -> $(readlink "$f")"
  elif [ -f "$f" ]; then echo "$f F $(stat -c '%a %u:%g %Y %h %s' "$f") $(sha256sum < "$f" | cut -c1-64)"
  elif [ -d "$f" ]; then echo "$f D $(stat -c '%a %u:%g' "$f")"
  else echo "$f $(stat -c '%F %a %u:%g %Y %t:%T' "$f")"; fi
done
echo "hostname=$(hostname) cwd=$(readlink /proc/1/cwd) uid=$(stat -c %u /proc/1)"
tr '\0' '\n' < /proc/1/environ | grep -v -e '^container=' -e '^HOME=' | sort
grep -E '^Cap(Eff|Bnd)' /proc/1/status
"""


def lifecycle_ready(name: str, request) -> None:
    """Skip (or, when all backends are required, fail) unless `name` can create and start."""
    info = probe(name)
    why = info.reason if not info.usable else ""
    if not why:
        cls = backend_class(name)
        if cls.create is Backend.create or cls.start is Backend.start:
            why = "its detached lifecycle (create/start) is not implemented yet"
    if why:
        if request.config.getoption("--require-backends"):
            pytest.fail(f"backend {name} is required: {why}")
        pytest.skip(f"backend {name}: {why}")


def _name() -> str:
    return f"mig-{uuid.uuid4().hex[:8]}"


class Cli:
    """ctr's CLI against the test root, with the commands of cli/migrate.py registered
    even before cli/main.py lists them."""

    def __init__(self, ctr_root) -> None:
        import sys

        self.prefix = [
            sys.executable,
            "-c",
            (
                "import sys\n"
                "from ctr.cli.main import cli, main\n"
                "from ctr.cli.migrate import migrate_commands\n"
                "for c in migrate_commands: cli.commands.setdefault(c.name, c)\n"
                "sys.argv[0] = 'ctr'\nmain()\n"
            ),
            "--root",
            str(ctr_root),
        ]
        self.made: set[str] = set()

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"ctr {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name).stdout)[0]

    def hash(self, name: str) -> str:
        deadline = time.monotonic() + 20
        while self("exec", name, "test", "-e", "/ready", check=False).returncode != 0:
            assert time.monotonic() < deadline, f"{name} never became ready"
            time.sleep(0.2)
        return self("exec", name, "sh", "-c", HASH).stdout

    def cleanup(self) -> None:
        for name in self.made:
            self("rm", "-f", name, check=False)


@pytest.fixture
def cli(ctr_root):
    c = Cli(ctr_root)
    yield c
    c.cleanup()


def _host_side_changes(paths, backend_name: str, name: str) -> None:
    """What busybox cannot do itself: a user xattr, and a nanosecond mtime, put straight
    into the stopped container's writable layer from the host."""
    upper = get_backend(backend_name, paths).writable_layer(name)
    os.setxattr(upper / "srv" / "app" / "a", "user.origin", b"host\x00side")
    os.utime(upper / "srv" / "app" / "sub", ns=(1, 1_000_000_000_123_456_789))


@pytest.mark.parametrize("source,target", DIRECTIONS, ids=[f"{a}-to-{b}" for a, b in DIRECTIONS])
def test_running_container_moves_with_its_whole_tree(cli, paths, request, source, target):
    lifecycle_ready(source, request)
    lifecycle_ready(target, request)
    name = _name()
    cli.made.add(name)
    cli(
        "--backend",
        source,
        "run",
        "-d",
        "--name",
        name,
        "-e",
        "GREETING=hi there",
        "-w",
        "/srv",
        "--cap-drop",
        "NET_RAW",
        "--pids-limit",
        "64",
        "-l",
        "team=infra",
        "busybox",
        "sh",
        "-c",
        SCRIPT,
    )
    cli.hash(name)  # until the script has run
    cli("stop", "-t", "1", name)
    _host_side_changes(paths, source, name)
    cli("start", name)
    before = cli.hash(name)
    spec_before = cli.inspect(name)["spec"]

    out = cli("migrate", name, "--to", target, "--stop", "--format", "json").stdout
    report = json.loads(out)
    assert (report["from"], report["to"], report["status"]) == (source, target, "running")

    after = cli.hash(name)
    assert after == before
    doc = cli.inspect(name)
    assert doc["backend"]["name"] == target and doc["state"]["running"]
    spec_after = doc["spec"]
    assert spec_after.pop("hostname") == (spec_before.pop("hostname") or before.split("hostname=")[1].split()[0])
    assert spec_after == spec_before  # env, workdir, caps, limits, labels: all of it
    names = [r["name"] for r in json.loads(cli("ps", "-a", "--format", "json").stdout)]
    assert names.count(name) == 1 and not any(".migrating-" in n for n in names)
    assert get_backend(target, paths).get(name).backend == target


@pytest.mark.parametrize("source,target", DIRECTIONS, ids=[f"{a}-to-{b}" for a, b in DIRECTIONS])
def test_stopped_container_keep_and_rename(cli, paths, request, source, target):
    """--keep --name: both exist afterwards, stopped, and their writable layers are equal."""
    lifecycle_ready(source, request)
    lifecycle_ready(target, request)
    name, copy = _name(), _name()
    cli.made.update((name, copy))
    cli("--backend", source, "run", "-d", "--name", name, "busybox", "sh", "-c", SCRIPT)
    cli.hash(name)
    cli("stop", "-t", "1", name)
    _host_side_changes(paths, source, name)
    src_upper = get_backend(source, paths).writable_layer(name)
    digest = tree_digest(src_upper)

    out = cli("migrate", name, "--to", target, "--keep", "--name", copy).stdout
    assert f"{copy}: {source} -> {target}" in out and f"source kept as {name}" in out
    assert tree_digest(src_upper) == digest  # the source is only read
    dst_upper = get_backend(target, paths).writable_layer(copy)
    assert tree_digest(dst_upper) == digest
    assert os.getxattr(dst_upper / "srv" / "app" / "a", "user.origin") == b"host\x00side"
    assert os.stat(dst_upper / "srv" / "app" / "sub").st_mtime_ns == 1_000_000_000_123_456_789
    assert cli.inspect(copy)["state"]["status"] == "created"
    assert cli.inspect(name)["backend"]["name"] == source


def test_keep_needs_another_name(cli, paths, request):
    lifecycle_ready("native", request)
    name = _name()
    cli.made.add(name)
    cli("create", "--name", name, "busybox", "true")
    r = cli("migrate", name, "--to", "docker", "--keep", check=False)
    assert r.returncode == 125 and "--keep needs --name" in r.stderr


def test_running_needs_stop(cli, request):
    lifecycle_ready("native", request)
    name = _name()
    cli.made.add(name)
    cli("run", "-d", "--name", name, "busybox", "sleep", "600")
    r = cli("migrate", name, "--to", "lxc", check=False)
    assert r.returncode == 125 and "use --stop" in r.stderr
    assert cli.inspect(name)["state"]["running"]


def _state(paths, name: str) -> tuple[str, str, str]:
    from ctr.backends import backend_for

    backend = backend_for(name, paths)
    return backend.name, backend.get(name).status, tree_digest(backend.writable_layer(name))


def _leftovers(paths, name: str, source: str) -> list[str]:
    """Anything of a target or a parked source that should not be there: other records or
    liblxc directories named after the container, engine containers besides the source's."""
    out = [p.name for p in paths.containers.iterdir() if p.name != name and p.name.startswith(name)]
    lxc_dir = paths.data / "lxc"
    if lxc_dir.is_dir():
        out += [
            f"lxc:{p.name}"
            for p in lxc_dir.iterdir()
            if p.name.startswith(name) and not (source == "lxc" and p.name == name)
        ]
    engine = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=ctr.root={paths.data}", "--format", "{{.ID}} {{.Names}}"],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    source_id = get_backend(source, paths).get(name).id if source == "docker" else None
    return out + [
        f"docker:{line}"
        for line in engine
        if line.split()[1].startswith(name) and not (source_id and source_id.startswith(line.split()[0]))
    ]


@pytest.mark.parametrize("source,target", [("native", "docker"), ("docker", "lxc"), ("lxc", "native")])
def test_failure_half_way_leaves_the_source_as_it_was(cli, paths, request, monkeypatch, source, target):
    """The target is created and its layer half unpacked when the disk 'fills up'."""
    from ctr.transfer import migrate as m

    lifecycle_ready(source, request)
    lifecycle_ready(target, request)
    name = _name()
    cli.made.add(name)
    cli("--backend", source, "run", "-d", "--name", name, "busybox", "sh", "-c", SCRIPT)
    before = cli.hash(name)
    real = m.unpack_layer

    def unpack_then_fail(src, dest, **kw):
        real(src, dest, **kw)
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(m, "unpack_layer", unpack_then_fail)
    with pytest.raises(OSError, match="injected"):
        m.migrate(paths, name, target, stop=True)
    assert _state(paths, name)[:2] == (source, "running")  # its name back, and started again
    assert cli.hash(name) == before
    assert _leftovers(paths, name, source) == []


@pytest.mark.parametrize("target", ["native", "lxc"])
def test_a_target_that_refuses_changes_nothing(cli, paths, request, target):
    """docker's bridge network exists on neither native nor lxc: refused before anything moves."""
    lifecycle_ready("docker", request)
    lifecycle_ready(target, request)
    name = _name()
    cli.made.add(name)
    cli("--backend", "docker", "run", "-d", "--name", name, "--network", "bridge", "busybox", "sh", "-c", SCRIPT)
    before = cli.hash(name)
    r = cli("migrate", name, "--to", target, "--stop", check=False)
    assert r.returncode == 125 and "does not support --network bridge" in r.stderr
    assert _state(paths, name)[:2] == ("docker", "running")  # not even stopped
    assert cli.hash(name) == before
    assert _leftovers(paths, name, "docker") == []


def test_failure_in_the_api_raises_ctr_errors(paths, request):
    from ctr.transfer.migrate import migrate

    lifecycle_ready("native", request)
    with pytest.raises(CtrError, match="no such container"):
        migrate(paths, "no-such-container-here", "docker")
    assert issubclass(Unsupported, CtrError) and issubclass(Conflict, CtrError)


@pytest.mark.parametrize("source,target", [("native", "docker"), ("docker", "lxc"), ("lxc", "native")])
def test_export_import_round_trip(cli, paths, request, tmp_path, source, target):
    lifecycle_ready(source, request)
    lifecycle_ready(target, request)
    name, copy = _name(), _name()
    cli.made.update((name, copy))
    cli("--backend", source, "run", "-d", "--name", name, "busybox", "sh", "-c", SCRIPT)
    cli.hash(name)
    cli("stop", "-t", "1", name)
    digest = tree_digest(get_backend(source, paths).writable_layer(name))
    bundle = tmp_path / "c.bundle"
    cli("export", name, "-o", str(bundle))
    assert cli("import", str(bundle), "--backend", target, "--name", copy).stdout.strip() == copy
    assert tree_digest(get_backend(target, paths).writable_layer(copy)) == digest
    imported, original = cli.inspect(copy), cli.inspect(name)
    assert imported["state"]["status"] == "created" and imported["image_digest"] == original["image_digest"]
    assert imported["spec"]["hostname"] == (original["spec"]["hostname"] or original["id"][:12])
    cli("rm", copy)
    # Without the image in the bundle, the store's copy (found by digest) is used; from stdin.
    r = subprocess.run([*cli.prefix, "export", "--no-image", name, "-o", "-"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*cli.prefix, "import", "-", "--backend", target, "--name", copy],
        input=r.stdout,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert tree_digest(get_backend(target, paths).writable_layer(copy)) == digest


def test_import_refuses_a_tampered_layer(cli, paths, request, tmp_path):
    import tarfile

    lifecycle_ready("native", request)
    name = _name()
    cli.made.add(name)
    cli("run", "--name", name, "busybox", "sh", "-c", "echo secret > /f")
    bundle, bad = tmp_path / "ok.bundle", tmp_path / "bad.bundle"
    cli("export", name, "-o", str(bundle))
    cli("rm", name)
    cli.made.discard(name)
    with tarfile.open(bundle) as src, tarfile.open(bad, "w") as dst:
        info = json.load(src.extractfile("ctr-bundle.json"))
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name == f"blobs/sha256/{info['layer']['digest'][7:]}":
                import io

                raw = bytearray(data.read())
                raw[raw.index(b"secret")] = ord("S")
                data = io.BytesIO(bytes(raw))
            dst.addfile(member, data)
    r = cli("import", str(bad), check=False)
    assert r.returncode == 125 and "does not match its digest" in r.stderr
    assert not (paths.containers / name).exists()


def test_commit_makes_an_image_of_the_container(cli, paths, request):
    lifecycle_ready("native", request)
    name, ref = _name(), f"committed/{uuid.uuid4().hex[:8]}:1"
    cli.made.add(name)
    cli(
        "run",
        "--name",
        name,
        "-e",
        "MODE=prod",
        "-w",
        "/srv",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /srv && echo built > /srv/out && rm /etc/group",
    )
    image_id = cli("commit", "-m", "first build", name, ref).stdout.strip()
    try:
        info = json.loads(cli("image", "inspect", ref).stdout)
        info = info[0] if isinstance(info, list) else info
        assert info["id"] == image_id
        config = info["config"]
        assert config["Cmd"] == ["sh", "-c", "mkdir -p /srv && echo built > /srv/out && rm /etc/group"]
        assert "MODE=prod" in config["Env"] and config["WorkingDir"] == "/srv"
        assert len(info["layers"]) == 2 and info["history"][-1]["comment"] == "first build"
        out = cli(
            "run", "--rm", ref, "sh", "-c", "cat /srv/out; test -e /etc/group || echo gone; pwd; echo $MODE"
        ).stdout
        assert out.split() == ["built", "gone", "/srv", "prod"]
    finally:
        cli("image", "rm", ref, check=False)
