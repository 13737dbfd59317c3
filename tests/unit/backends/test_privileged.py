"""--privileged in each backend's own terms, without starting a container: what the lxc
config and the engine's create body say (the containers themselves: integration tests)."""

from __future__ import annotations

import os
import subprocess

import pytest

from ctr.backends.lxc.config import lxc_config, lxc_devices_script
from ctr.native.devices import HostDevice
from ctr.process import Process
from ctr.spec import ContainerSpec

USER = {"uid": 0, "gid": 0, "groups": [], "home": "/root", "targets": []}


def _config(spec: ContainerSpec, **kw) -> list[tuple[str, str]]:
    return lxc_config(spec, "0" * 64, "h", ["/l"], "/u", "/r", "/log", [], "/", USER, **kw)


def test_lxc_privileged_config_drops_every_confinement():
    default = _config(ContainerSpec("busybox"), seccomp_file="/s")
    privileged = _config(ContainerSpec("busybox", privileged=True), devices_script="/lxc/devices")
    d, p = dict(default), dict(privileged)
    assert d["lxc.mount.auto"] == "proc:mixed sys:ro cgroup:ro:force"
    assert p["lxc.mount.auto"] == "proc:rw sys:rw cgroup:rw:force"
    assert "lxc.seccomp.profile" not in p
    assert ("lxc.hook.autodev", "/bin/sh /lxc/devices") in privileged
    assert not [v for k, v in privileged if k == "lxc.hook.mount"], "no read-only remounts"
    assert not [v for k, v in privileged if k == "lxc.mount.entry" and v.startswith(("tmpfs proc", "/dev/null proc"))]
    devices = [v for k, v in privileged if k.endswith(("devices.allow", "devices.deny"))]
    assert devices[-1] == "a"
    keep = p["lxc.cap.keep"].split()
    assert "sys_admin" in keep and "sys_module" in keep and len(keep) >= 38


def test_lxc_devices_script_makes_the_nodes(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "null").write_text("")  # what liblxc made stays
    devices = [
        HostDevice("loop0", "b", 7, 0, 0o600, 0, 6),
        HostDevice("net/tun", "c", 10, 200, 0o666, 0, 0),
        HostDevice("null", "c", 1, 3, 0o666, 0, 0),
    ]
    script = tmp_path / "devices"
    script.write_text(lxc_devices_script(devices))
    subprocess.run(
        ["/bin/sh", str(script)], check=True, env={"LXC_ROOTFS_MOUNT": str(tmp_path), "PATH": os.environ["PATH"]}
    )
    loop = os.stat(tmp_path / "dev" / "loop0")
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev), loop.st_mode & 0o7777, loop.st_gid) == (7, 0, 0o600, 6)
    tun = os.stat(tmp_path / "dev" / "net" / "tun")
    assert (os.major(tun.st_rdev), tun.st_mode & 0o7777) == (10, 0o666)
    assert (tmp_path / "dev" / "null").is_file()


def test_docker_sends_the_engines_own_privileged():
    import docker

    from ctr.backends.docker.backend import DockerBackend

    backend = DockerBackend.__new__(DockerBackend)
    backend._client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    backend.paths = type("P", (), {"data": "/d"})()
    process = Process(args=("true",), env=(), cwd="/", user="")
    spec = ContainerSpec("busybox", privileged=True, cap_drop=["NET_RAW"])
    host = backend.create_config(spec, process, "ctr.local/busybox", "c", security={"profile": "unconfined"})[
        "HostConfig"
    ]
    assert host["Privileged"] is True
    assert not host.get("CapAdd") and not host.get("CapDrop")


def test_docker_names_the_engine_that_cannot_grant_every_capability():
    import docker

    from ctr.backends.docker.engine import start_error
    from ctr.errors import Unsupported

    text = (
        "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
        "container process: unable to apply caps: operation not permitted: unknown"
    )
    exc = docker.errors.APIError("500 Server Error", explanation=text)
    error = start_error(exc, "c", privileged=True)
    assert isinstance(error, Unsupported) and "docker backend" in str(error) and "--privileged" in str(error)
    assert not isinstance(start_error(exc, "c"), Unsupported)
