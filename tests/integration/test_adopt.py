"""Foreign containers: an LXC container made by lxc-create under LXC's own lxcpath, and a
Docker container made by `docker run`, listed, adopted and moved on; the sources untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid

import pytest

from ctr.backends import get_backend, probe
from ctr.transfer.adopt import default_lxcpath
from ctr.transfer.tree import tree_digest, tree_listing

from .test_migrate import Cli, lifecycle_ready


@pytest.fixture
def cli(ctr_root):
    c = Cli(ctr_root)
    yield c
    c.cleanup()


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _forget_engine_image(tag: str) -> None:
    """The engine's copy of an image ctr loaded for a test (docker keeps ctr's images cached)."""
    subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=60)


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def lxc_container(request):
    """`lxc-create -t busybox` (LXC's own template, offline) under the default lxcpath,
    with some files of our own in its root; destroyed afterwards."""
    if not shutil.which("lxc-create") or not probe("lxc").usable:
        if request.config.getoption("--require-backends"):
            pytest.fail("lxc-create and the lxc bindings are required")
        pytest.skip("lxc-create or the python lxc bindings are missing")
    name = f"ctr-test-{uuid.uuid4().hex[:8]}"
    lxcpath = default_lxcpath()
    _run("lxc-create", "-t", "busybox", "-n", name)
    try:
        root = os.path.join(lxcpath, name, "rootfs")
        os.makedirs(f"{root}/srv/data")
        with open(f"{root}/srv/data/a", "w") as f:
            f.write("lxc data\n")
        os.link(f"{root}/srv/data/a", f"{root}/srv/data/b")
        os.symlink("data/a", f"{root}/srv/link")
        os.setxattr(f"{root}/srv/data/a", "user.tag", b"kept")
        os.chown(f"{root}/srv/data/a", 1000, 1000)
        os.utime(f"{root}/srv/data", ns=(1, 1_600_000_000_987_654_321))
        yield name, lxcpath
    finally:
        subprocess.run(["lxc-destroy", "-n", name], capture_output=True, timeout=120)


def _upper_contains_root(upper, root) -> list[str]:
    """The lines of the LXC root's listing missing from the writable layer's, plus extra
    entries in the layer that are not directories (a backend may add mount targets)."""
    want = set(tree_listing(root, overlay=False))
    have = set(tree_listing(upper))
    missing = sorted(want - have)
    extra = sorted(line for line in have - want if " dir " not in line)
    return missing + extra


def test_lxc_container_adopted_then_moved_to_docker_and_native(cli, paths, request, lxc_container):
    name, lxcpath = lxc_container
    lifecycle_ready("lxc", request)
    lifecycle_ready("docker", request)
    lifecycle_ready("native", request)
    root = os.path.join(lxcpath, name, "rootfs")
    config = os.path.join(lxcpath, name, "config")
    root_digest, config_sha = tree_digest(root, overlay=False), _sha(config)

    listed = json.loads(cli("foreign", "--format", "json").stdout)
    assert {"kind": "lxc", "name": name, "ref": f"lxc:{name}"}.items() <= next(
        f for f in listed if f["name"] == name
    ).items()

    r = cli("adopt", f"lxc:{name}", "--network", "none")
    cli.made.add(name)
    assert r.stdout.strip() == name
    assert "lxc.apparmor.profile = generated" in r.stderr and "lxc.rootfs.path" in r.stderr  # named, not dropped
    doc = cli.inspect(name)
    assert doc["backend"]["name"] == "lxc" and doc["state"]["status"] == "created"
    spec = doc["spec"]
    assert spec["hostname"] == name and spec["network"] == "none"
    assert spec["cap_add"] == ["ALL"] and "CAP_SYS_MODULE" in spec["cap_drop"]
    assert {"source": "/lib", "target": "/lib", "read_only": True} in spec["mounts"]
    assert _upper_contains_root(get_backend("lxc", paths).writable_layer(name), root) == []

    for target in ("docker", "native"):
        cli("migrate", name, "--to", target)
        upper = get_backend(target, paths).writable_layer(name)
        assert _upper_contains_root(upper, root) == []
        assert os.getxattr(upper / "srv" / "data" / "a", "user.tag") == b"kept"
        assert os.stat(upper / "srv" / "data").st_mtime_ns == 1_600_000_000_987_654_321
        assert cli.inspect(name)["spec"]["mounts"] == spec["mounts"]

    cli("rm", name)
    cli.made.discard(name)
    _forget_engine_image("ctr.local/adopted/lxc:init")  # loaded when it moved to docker; in use elsewhere: kept
    # The source was only read.
    assert tree_digest(root, overlay=False) == root_digest and _sha(config) == config_sha
    state = subprocess.run(["lxc-info", "-n", name, "-s"], capture_output=True, text=True).stdout
    assert "STOPPED" in state


@pytest.fixture
def docker_container(request, paths):
    """A container made by plain `docker run` (no ctr label) from an image the engine made
    itself (`docker commit`), so that adopting it imports an image ctr has never seen."""
    lifecycle_ready("docker", request)
    from ctr.backends.docker.backend import DockerBackend

    _, base = DockerBackend(paths).ensure_image("busybox")
    tag = uuid.uuid4().hex[:8]
    image, builder, name = f"ctr-test-adopt:{tag}", f"ctr-test-build-{tag}", f"ctr-test-dk-{tag}"
    try:
        _run(
            "docker",
            "run",
            "--name",
            builder,
            "--network",
            "none",
            base,
            "sh",
            "-c",
            "mkdir -p /opt/app && echo base > /opt/app/v && rm /bin/vi",
        )
        _run(
            "docker",
            "commit",
            "-c",
            "WORKDIR /opt/app",
            "-c",
            "ENV APP_MODE=test",
            "-c",
            'CMD ["cat", "v"]',
            builder,
            image,
        )
        _run(
            "docker",
            "run",
            "--name",
            name,
            "--network",
            "none",
            "-h",
            "dkhost",
            "-e",
            "EXTRA=1",
            "-l",
            "owner=test",
            image,
            "sh",
            "-c",
            "echo changed > v && echo new > /root/new && ln /root/new /root/link && rm /etc/group && "
            "rm -rf /usr/sbin && mkdir /usr/sbin && echo t > /usr/sbin/t",
        )
        yield name, image
    finally:
        subprocess.run(["docker", "rm", "-f", builder, name], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", image], capture_output=True, timeout=60)


def test_docker_container_adopted_then_moved_to_lxc(cli, paths, request, docker_container):
    name, image = docker_container
    lifecycle_ready("lxc", request)
    info = json.loads(_run("docker", "inspect", name).stdout)[0]
    upper = info["GraphDriver"]["Data"]["UpperDir"]
    before = tree_digest(upper)

    listed = json.loads(cli("foreign", "--format", "json").stdout)
    assert any(f["kind"] == "docker" and f["name"] == name for f in listed)
    assert not any(f["name"].startswith("mig-") for f in listed)  # ctr's own are not foreign

    adopted = cli("adopt", f"docker:{name}").stdout.strip()
    assert adopted == f"{name}-ctr"  # the engine keeps the source's name
    cli.made.add(adopted)
    doc = cli.inspect(adopted)
    ref = doc["image"]
    try:
        assert doc["backend"]["name"] == "docker" and ref.startswith("adopted/docker/ctr-test-adopt:")
        spec = doc["spec"]
        assert spec["hostname"] == "dkhost" and spec["workdir"] == "/opt/app" and spec["network"] == "none"
        assert "EXTRA=1" in spec["env"] and "APP_MODE=test" in spec["env"]
        assert spec["labels"]["owner"] == "test"
        assert tree_digest(get_backend("docker", paths).writable_layer(adopted)) == before

        cli("migrate", adopted, "--to", "lxc")
        assert tree_digest(get_backend("lxc", paths).writable_layer(adopted)) == before
        # Started again, its command meets its own earlier work: /root/link is there already.
        cli("start", adopted)
        assert cli("wait", adopted).stdout.strip() == "1"
        logs = b"".join(e.data for e in get_backend("lxc", paths).logs(adopted))
        assert b"File exists" in logs, logs
    finally:
        cli("rm", "-f", adopted, check=False)
        cli("image", "rm", ref, check=False)
        _forget_engine_image(f"ctr.local/{ref}")
    after = json.loads(_run("docker", "inspect", name).stdout)[0]
    assert tree_digest(upper) == before and after["State"]["Status"] == info["State"]["Status"]


def test_adopt_refuses_what_it_cannot_read(cli):
    r = cli("adopt", "podman:x", check=False)
    assert r.returncode == 125 and "give lxc:NAME or docker:ID" in r.stderr
    r = cli("adopt", f"lxc:no-such-{uuid.uuid4().hex[:6]}", check=False)
    assert r.returncode == 125


def test_ctr_containers_are_not_adopted(cli, request):
    lifecycle_ready("docker", request)
    name = f"mig-{uuid.uuid4().hex[:8]}"
    cli.made.add(name)
    cli("--backend", "docker", "create", "--name", name, "busybox", "true")
    r = cli("adopt", f"docker:{name}", check=False)
    assert r.returncode == 125 and "ctr's own container" in r.stderr
