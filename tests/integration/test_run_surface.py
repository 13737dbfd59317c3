"""Docker's run surface (issue 15): each case runs through `docker run` on the real engine
and through ctr on every backend, and ctr must answer exactly as the engine did.

The oracle runs ctr's own images (loaded into the engine by the docker backend as
ctr.local/NAME), so the image is the same file for the engine and for ctr.
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile

import pytest

from tests.conftest import CTR, backends_param


def _group_layer() -> bytes:
    """A layer over busybox: users with memberships in /etc/group, as real images have."""
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n",
        "etc/group": "root:x:0:\nwheel:x:10:app\naudio:x:29:app,nobody\napp:x:1000:\nstaff:x:50:\nnobody:x:65534:\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("etc")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="session")
def oracle(ctr_root, request):
    """`docker run --rm --network none [flags] IMAGE CMD...` on the engine: stdout, stderr, exit code."""
    from ctr.backends import probe as probe_backend

    info = probe_backend("docker")
    if not info.usable:
        if request.config.getoption("--require-backends"):
            pytest.fail(f"backend docker is required but unusable: {info.reason}")
        pytest.skip(f"no docker engine for the oracle: {info.reason}")

    def run(*args: str, image: str = "busybox", network: str = "none") -> subprocess.CompletedProcess:
        subprocess.run(
            [*CTR, "--root", str(ctr_root), "--backend", "docker", "run", "--rm", image, "true"],
            check=True,
            capture_output=True,
            timeout=120,
        )  # loads ctr's image into the engine
        return subprocess.run(
            ["docker", "run", "--rm", "--network", network, *_engine_args(args, image)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def _engine_args(args: tuple[str, ...], image: str) -> list[str]:
    """The ctr image name in `args` (given as IMAGE) becomes its engine name."""
    return [f"ctr.local/{image}:latest" if a == "IMAGE" else a for a in args]


@pytest.fixture(scope="session")
def group_image(paths):
    """busybox plus /etc/passwd and /etc/group with memberships; removed from ctr and the engine afterwards."""
    from ctr.images.store import ImageStore

    store = ImageStore(paths)
    busybox = store.get("busybox")
    name = f"ctr-test-groups-{secrets.token_hex(4)}"
    store.create(
        f"{name}:latest", [*(store.blob_path(d) for d in busybox.layer_digests), _group_layer()], busybox.config
    )
    yield name
    subprocess.run(["docker", "rmi", "-f", f"ctr.local/{name}:latest"], capture_output=True)
    store.remove(f"{name}:latest")


def _ctr_run(ctr, backend: str, *args: str, image: str = "busybox"):
    return ctr("--backend", backend, "run", "--rm", *[image if a == "IMAGE" else a for a in args])


@backends_param()
@pytest.mark.parametrize("user", ["nobody", "app", "root", "1234", "app:staff", "nobody:audio"])
def test_supplementary_groups_are_dockers(ctr, backend, oracle, group_image, user):
    expected = oracle("-u", user, "IMAGE", "id", image=group_image)
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, "-u", user, "IMAGE", "id", image=group_image)
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


@backends_param()
def test_dev_has_what_dockers_has(ctr, backend, oracle):
    # `ls` without -a: liblxc keeps its /dev/.lxc-boot-id (a README difference).
    expected = oracle("IMAGE", "ls", "/dev")
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, "IMAGE", "ls", "/dev")
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


ETC_FILES = "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf; echo --; ls -ln /etc/hostname /etc/hosts /etc/resolv.conf | cut -c1-35; grep -cE ' /etc/(hosts|hostname|resolv.conf) ' /proc/self/mountinfo"


@backends_param()
@pytest.mark.parametrize(
    "flags",
    [("--network", "none"), ("--network", "host"), ("--network", "none", "--read-only")],
    ids=["none", "host", "read-only"],
)
def test_etc_hostname_hosts_resolv_conf_are_dockers(ctr, backend, oracle, flags):
    network, rest = flags[1], flags[2:]
    expected = oracle("-h", "box", *rest, "IMAGE", "sh", "-c", ETC_FILES, network=network)
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, "--network", network, "-h", "box", *rest, "IMAGE", "sh", "-c", ETC_FILES)
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


@backends_param()
def test_etc_hostname_is_the_generated_hostname(ctr, backend):
    r = _ctr_run(ctr, backend.name, "IMAGE", "sh", "-c", 'test "$(cat /etc/hostname)" = "$(hostname)" && echo same')
    assert r.stdout == "same\n", r.stderr


@backends_param()
def test_a_volume_at_etc_hosts_wins(ctr, backend, tmp_path):
    (tmp_path / "hosts").write_text("10.0.0.1 mine\n")
    r = _ctr_run(ctr, backend.name, "-v", f"{tmp_path / 'hosts'}:/etc/hosts:ro", "IMAGE", "cat", "/etc/hosts")
    assert r.stdout == "10.0.0.1 mine\n", r.stderr


# ---- --add-host, --group-add, --env-file, --stop-signal, --stop-timeout, --cidfile ----


def _names(ctr, backend: str) -> set[str]:
    return set(ctr("ps", "-a", "-q", "--backend", backend).stdout.split())


@backends_param()
def test_add_host_is_dockers(ctr, backend, oracle):
    flags = ("-h", "box", "--add-host", "db:10.0.0.5", "--add-host", "v6=::1", "--add-host", "b6:[fe80::1]")
    expected = oracle(*flags, "IMAGE", "cat", "/etc/hosts")
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, *flags, "IMAGE", "cat", "/etc/hosts")
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


@backends_param()
@pytest.mark.parametrize(
    "value,message", [("bad", 'bad format for add-host: "bad"'), ("a:1.2.3", 'invalid IP address in add-host: "1.2.3"')]
)
def test_bad_add_host_is_refused_as_docker_does(ctr, backend, oracle, value, message):
    expected = oracle("--add-host", value, "IMAGE", "true")
    assert expected.returncode == 125 and message in expected.stderr
    before = _names(ctr, backend.name)
    r = _ctr_run(ctr, backend.name, "--add-host", value, "IMAGE", "true")
    assert (r.returncode, r.stderr) == (125, f"ctr: {message}\n")
    assert _names(ctr, backend.name) == before


@backends_param()
def test_add_host_gateway_is_the_engines_or_unsupported(ctr, backend):
    r = _ctr_run(ctr, backend.name, "--add-host", "gw:host-gateway", "IMAGE", "tail", "-n1", "/etc/hosts")
    if backend.name == "docker":
        assert r.returncode == 0 and r.stdout.endswith("\tgw\n"), r.stderr
    else:
        assert r.returncode == 125
        assert r.stderr.startswith(f"ctr: the {backend.name} backend does not support --add-host NAME:host-gateway")


@backends_param()
@pytest.mark.parametrize("user", ["nobody", "app", "root"])
def test_group_add_is_dockers(ctr, backend, oracle, group_image, user):
    # (a name given twice: ctr takes it once; Docker 20.10 then fails to find the group, a README difference)
    flags = ("-u", user, "--group-add", "audio", "--group-add", "4242", "--group-add", "staff")
    expected = oracle(*flags, "IMAGE", "id", image=group_image)
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, *flags, "IMAGE", "id", image=group_image)
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


@backends_param()
def test_group_add_unknown_group_is_refused_as_docker_does(ctr, backend, oracle, group_image):
    expected = oracle("--group-add", "nosuch", "IMAGE", "true", image=group_image)
    assert expected.returncode == 125 and "nosuch: no matching entries in group file" in expected.stderr
    before = _names(ctr, backend.name)
    r = _ctr_run(ctr, backend.name, "--group-add", "nosuch", "IMAGE", "true", image=group_image)
    assert (
        r.returncode == 125 and "Unable to find group nosuch: no matching entries in group file" in r.stderr
    )  # the engine's words for --group-add
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert _names(ctr, backend.name) == before


ENV_FILE = "# a comment\n\n  A=from-file\nB= spaced value \nBARE_SET\nBARE_UNSET\nC=x=y\nE=\n"


@backends_param()
def test_env_file_is_dockers(ctr, backend, oracle, tmp_path, monkeypatch):
    (tmp_path / "one.env").write_text(ENV_FILE)
    (tmp_path / "two.env").write_text("C=second\n")
    monkeypatch.setenv("BARE_SET", "from the host")
    monkeypatch.delenv("BARE_UNSET", raising=False)
    flags = (
        "-h",
        "box",
        "--env-file",
        str(tmp_path / "one.env"),
        "--env-file",
        str(tmp_path / "two.env"),
        "-e",
        "A=from-e",
    )
    expected = oracle(*flags, "IMAGE", "env")
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, *flags, "IMAGE", "env")
    assert r.returncode == 0, r.stderr
    # liblxc's container=lxc is a README difference of its own.
    got = [line for line in r.stdout.splitlines() if not (backend.name == "lxc" and line == "container=lxc")]
    assert got == expected.stdout.splitlines()


@backends_param()
@pytest.mark.parametrize(
    "text,message", [("B =1\n", "variable 'B ' contains whitespaces"), (None, "no such file or directory")]
)
def test_bad_env_file_is_refused(ctr, backend, oracle, tmp_path, text, message):
    path = tmp_path / "bad.env"
    if text is not None:
        path.write_text(text)
    expected = oracle("--env-file", str(path), "IMAGE", "true")
    assert expected.returncode == 125 and message in expected.stderr
    before = _names(ctr, backend.name)
    r = _ctr_run(ctr, backend.name, "--env-file", str(path), "IMAGE", "true")
    assert (r.returncode, r.stderr) == (125, f"ctr: invalid --env-file {path}: {message}\n")
    assert _names(ctr, backend.name) == before


def _wait_for(read, text: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while text not in read():
        assert time.monotonic() < deadline, f"never saw {text!r}"
        time.sleep(0.1)


READY_SCRIPT = 'trap "echo got; exit 3" USR1; trap "" TERM; echo ready; while :; do sleep 0.1; done'


def _docker_stop_case(flags: tuple[str, ...], script: str) -> tuple[str, str, float]:
    """docker run -d, docker stop (no -t), docker wait: (exit code, output, seconds stop took)."""
    import time

    cid = subprocess.run(
        ["docker", "run", "-d", "--network", "none", *flags, "ctr.local/busybox:latest", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        _wait_for(lambda: subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout, "ready")
        t = time.monotonic()
        subprocess.run(["docker", "stop", cid], capture_output=True, check=True, timeout=60)
        took = time.monotonic() - t
        code = subprocess.run(["docker", "wait", cid], capture_output=True, text=True).stdout.strip()
        return code, subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout, took
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def _ctr_stop_case(ctr, backend: str, flags: tuple[str, ...], script: str) -> tuple[str, str, float]:
    import time

    name = f"stop-{secrets.token_hex(4)}"
    r = ctr("--backend", backend, "run", "-d", "--name", name, *flags, "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    try:
        _wait_for(lambda: ctr("logs", name).stdout, "ready")
        t = time.monotonic()
        assert ctr("stop", name).returncode == 0
        took = time.monotonic() - t
        return ctr("wait", name).stdout.strip(), ctr("logs", name).stdout, took
    finally:
        ctr("rm", "-f", name)


@backends_param()
def test_stop_signal_is_what_stop_sends(ctr, backend, oracle):
    oracle("IMAGE", "true")  # the image in the engine
    flags = ("--stop-signal", "SIGUSR1")
    code, out, _ = _docker_stop_case(flags, READY_SCRIPT)
    assert (code, out) == ("3", "ready\ngot\n")
    assert _ctr_stop_case(ctr, backend.name, flags, READY_SCRIPT)[:2] == (code, out)


@backends_param()
def test_stop_timeout_is_how_long_stop_waits(ctr, backend, oracle):
    oracle("IMAGE", "true")
    flags = ("--stop-timeout", "1")
    code, out, took = _docker_stop_case(flags, READY_SCRIPT)  # TERM is ignored: killed after 1 s, not 10
    assert (code, out) == ("137", "ready\n") and took < 8
    mine = _ctr_stop_case(ctr, backend.name, flags, READY_SCRIPT)
    assert mine[:2] == (code, out) and mine[2] < 8


@backends_param()
@pytest.mark.parametrize("value,message", [("FOO", "invalid --stop-signal 'FOO'"), ("x", "invalid --stop-timeout 'x'")])
def test_bad_stop_flags_are_refused(ctr, backend, value, message):
    flag = "--stop-signal" if "signal" in message else "--stop-timeout"
    before = _names(ctr, backend.name)
    r = _ctr_run(ctr, backend.name, flag, value, "IMAGE", "true")
    assert r.returncode == 125 and r.stderr.startswith(f"ctr: {message}") and len(r.stderr.splitlines()) == 1
    assert _names(ctr, backend.name) == before


@backends_param()
def test_cidfile_holds_the_id_and_an_existing_one_is_refused(ctr, backend, oracle, tmp_path):
    oracle("IMAGE", "true")
    engine_file = tmp_path / "engine.id"
    cid = subprocess.run(
        ["docker", "create", "--cidfile", str(engine_file), "ctr.local/busybox:latest", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        assert engine_file.read_text() == cid
        again = subprocess.run(
            ["docker", "create", "--cidfile", str(engine_file), "ctr.local/busybox:latest", "true"],
            capture_output=True,
            text=True,
        )
        message = f"container ID file found, make sure the other container isn't running or delete {engine_file}"
        assert again.returncode != 0 and message in again.stderr  # `docker create` exits 1 here, `docker run` 125
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)

    path = tmp_path / "ctr.id"
    name = f"cid-{secrets.token_hex(4)}"
    r = ctr("--backend", backend.name, "create", "--name", name, "--cidfile", str(path), "busybox", "true")
    try:
        assert r.returncode == 0, r.stderr
        assert path.read_text() == r.stdout.strip() == ctr("inspect", name).stdout.split('"id": "')[1].split('"')[0]
        before = _names(ctr, backend.name)
        again = _ctr_run(ctr, backend.name, "--cidfile", str(path), "IMAGE", "true")
        assert (again.returncode, again.stderr) == (125, f"ctr: {message.replace(str(engine_file), str(path))}\n")
        assert _names(ctr, backend.name) == before
    finally:
        ctr("rm", "-f", name)


@backends_param()
def test_cidfile_on_run(ctr, backend, tmp_path):
    path = tmp_path / "run.id"
    r = _ctr_run(ctr, backend.name, "--cidfile", str(path), "IMAGE", "true")
    assert r.returncode == 0, r.stderr
    assert len(path.read_text()) == 64
