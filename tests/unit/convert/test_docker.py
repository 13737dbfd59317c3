"""ctr.convert.docker: `docker inspect` read, `docker run` and compose written."""

from __future__ import annotations

import json
import shlex

import pytest

from ctr.convert import convert
from ctr.convert.docker import read_docker
from ctr.spec import ContainerSpec
from tests.unit.convert.samples import DOCKER_INSPECT


def test_docker_inspect_to_ctr():
    conv = read_docker(json.dumps([DOCKER_INSPECT]))
    s = conv.spec
    assert (s["name"], s["image"], s["entrypoint"], s["command"]) == ("web", "busybox:latest", ["sh"], ["-c", "x"])
    assert (s["user"], s["workdir"], s["hostname"], s["tty"], s["stdin"]) == ("1:1", "/w", "f" * 12, True, True)
    assert (s["memory"], s["cpus"], s["pids_limit"], s["read_only"], s["auto_remove"]) == (
        64 << 20,
        1.5,
        100,
        True,
        True,
    )
    assert s["cap_add"] == ["CAP_NET_ADMIN"] and s["cap_drop"] == ["CAP_MKNOD"]
    assert s["network"] == "bridge" and s["labels"] == {"team": "a"}
    assert s["security_opt"] == ["seccomp=unconfined"] and s["privileged"] is False
    assert s["mounts"] == [
        {"source": "/srv/data", "target": "/data", "read_only": True},
        {"source": "/var/lib/docker/volumes/cache/_data", "target": "/cache", "read_only": False},
    ]
    text = "\n".join(conv.warnings)
    for key in (
        "HostConfig.PortBindings",
        "HostConfig.RestartPolicy",
        "HostConfig.ExtraHosts",
        "HostConfig.Ulimits",
        "Config.ExposedPorts",
        "Config.StopSignal",
        "Mounts[1] (volume cache",
        "HostConfig.MemorySwap",
    ):
        assert key in text, key
    state_line = next(w for w in conv.warnings if "not its configuration" in w)
    for key in ("Id", "State", "NetworkSettings", "GraphDriver"):
        assert key in state_line
    # Docker's defaults are not noise.
    for key in ("ShmSize", "IpcMode", "Runtime", "AttachStdout", "LogConfig", "ConsoleSize"):
        assert key not in text, key


def test_docker_to_docker_run_is_the_same_container():
    out, _ = convert(json.dumps(DOCKER_INSPECT), "docker", "docker-run")
    argv = shlex.split(out)
    assert argv[:2] == ["docker", "run"]
    image_at = argv.index("busybox:latest")
    assert argv[image_at + 1 :] == ["-c", "x"]
    flags = argv[2:image_at]
    for flag in (
        ["--name", "web"],
        ["--rm"],
        ["-i"],
        ["-t"],
        ["--read-only"],
        ["-e", "A=1"],
        ["-w", "/w"],
        ["-u", "1:1"],
        ["-v", "/srv/data:/data:ro"],
        ["--cpus", "1.5"],
        ["--pids-limit", "100"],
        ["--cap-add", "NET_ADMIN"],
        ["--cap-drop", "MKNOD"],
        ["--network", "bridge"],
        ["--entrypoint", "sh"],
        ["-l", "team=a"],
        ["-m", f"{64 << 20}b"],
    ):
        joined = " ".join(flags)
        assert " ".join(flag) in joined, flag


def test_compose_output():
    out, warnings = convert(json.dumps(DOCKER_INSPECT), "docker", "compose")
    assert out.startswith('services:\n  "web":\n    image: "busybox:latest"\n')
    assert '    network_mode: "bridge"' in out and '      - "/srv/data:/data:ro"' in out
    assert any(w.startswith("auto_remove") for w in warnings)
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(out)["services"]["web"]
    assert doc["entrypoint"] == ["sh"] and doc["mem_limit"] == 64 << 20 and doc["labels"] == {"team": "a"}


def test_docker_security_opt_and_privileged_carry_over():
    doc = json.loads(json.dumps(DOCKER_INSPECT))
    doc["HostConfig"].update(
        Privileged=True,
        SecurityOpt=[
            "no-new-privileges:false",
            "seccomp=builtin",
            'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',
            "apparmor=unconfined",
            "systempaths=unconfined",
        ],
    )
    conv = read_docker(json.dumps(doc))
    assert conv.spec["privileged"] is True
    assert conv.spec["security_opt"] == ["no-new-privileges=false", "apparmor=unconfined"]
    text = "\n".join(conv.warnings)
    assert "seccomp={...}" in text and "systempaths" in text and "Privileged" not in text
    ContainerSpec.from_dict(conv.spec)  # a valid spec
    out, _ = convert(json.dumps(doc), "docker", "docker-run")
    argv = shlex.split(out)
    assert "--privileged" in argv and argv[argv.index("--security-opt") + 1] == "no-new-privileges=false"
    compose, _ = convert(json.dumps(doc), "docker", "compose")
    assert "privileged: true" in compose and '"apparmor=unconfined"' in compose
    _, warnings = convert(json.dumps(doc), "docker", "lxc")
    assert any(w.startswith("privileged = true") for w in warnings)
