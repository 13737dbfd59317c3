"""`ctr convert`: round trips keep every convertible key, and every other key is named."""

from __future__ import annotations

import json
import shlex

import pytest

from ctr.convert import (
    READ_FORMATS,
    WRITE_FORMATS,
    convert,
    parse_lxc_config,
    read_docker,
    read_lxc,
    read_oci,
    write_lxc,
)
from ctr.images.model import ImageConfig
from ctr.errors import InvalidSpec
from ctr.spec import ContainerSpec

# Every key ctr can express, in both cgroup versions' spellings where they differ.
CONVERTIBLE_LXC = """\
lxc.uts.name = "web1"
lxc.init.cmd = /bin/httpd -f -p 8080
lxc.init.cwd = /srv
lxc.init.uid = 1000
lxc.init.gid = 100
lxc.environment = A=1
lxc.environment = B=two words
lxc.mount.entry = /tmp tmp/host none bind,create=dir 0 0
lxc.mount.entry = /etc/hostname etc/host-name none ro,bind,create=file 0 0
lxc.rootfs.options = ro
lxc.cgroup.memory.limit_in_bytes = 256M
lxc.cgroup.cpu.cfs_quota_us = 50000
lxc.cgroup.cpu.cfs_period_us = 100000
lxc.cgroup.pids.max = 64
lxc.cap.drop = sys_module mac_admin mac_override sys_time
lxc.net.0.type = none
lxc.ephemeral = 1
"""

# What `lxc-create -t busybox` writes, and more: none of these has a ctr equivalent.
UNCONVERTIBLE_LXC = """\
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs
lxc.signal.halt = SIGUSR1
lxc.autodev = 1
lxc.tty.max = 5
lxc.mount.auto = cgroup:mixed proc:mixed sys:ro
lxc.mount.entry = shm dev/shm tmpfs defaults,create=dir 0 0
lxc.idmap = u 0 100000 65536
lxc.hook.pre-start = /bin/true
lxc.include = /usr/share/lxc/config/common.conf
lxc.start.auto = 1
lxc.cgroup.devices.allow = c 1:3 rwm
lxc.init.groups = 10,20
lxc.environment = FROM_HOST
"""


def semantic(items: list[tuple[str, str]]) -> dict:
    """An LXC config reduced to what it means, so v1 and v2 cgroup keys compare equal."""
    return read_lxc("\n".join(f"{k} = {v}" for k, v in items)).spec


def test_lxc_round_trip_keeps_every_convertible_key():
    ctr_json, warnings = convert(CONVERTIBLE_LXC, "lxc", "ctr")
    assert warnings == ["image: the source names none; set one before using this spec"]
    back, warnings = convert(ctr_json, "ctr", "lxc")
    assert warnings == []
    original, result = parse_lxc_config(CONVERTIBLE_LXC), parse_lxc_config(back)
    assert semantic(result) == semantic(original)
    keys = {k for k, _ in result}
    for key, value in original:
        if key.startswith("lxc.cgroup."):
            assert key in keys or key.replace("lxc.cgroup.", "lxc.cgroup2.").split(".limit_in")[0] in " ".join(keys)
        else:
            assert key in keys, f"{key} was lost"
    assert ("lxc.uts.name", "web1") in result
    assert ("lxc.init.cmd", "/bin/httpd -f -p 8080") in result
    assert [v for k, v in result if k == "lxc.environment"] == ["A=1", "B=two words"]
    assert ("lxc.cap.drop", "sys_module mac_admin mac_override sys_time") in result
    assert ("lxc.net.0.type", "none") in result
    assert ("lxc.ephemeral", "1") in result
    # A fixpoint: converting again changes nothing.
    again, _ = convert(back, "lxc", "ctr")
    assert json.loads(again) == json.loads(ctr_json)


def test_lxc_spec_values():
    spec = read_lxc(CONVERTIBLE_LXC).spec
    assert spec["hostname"] == "web1"  # quotes removed, as liblxc does
    assert spec["command"] == ["/bin/httpd", "-f", "-p", "8080"]
    assert spec["user"] == "1000:100" and spec["workdir"] == "/srv"
    assert spec["memory"] == 256 << 20 and spec["cpus"] == 0.5 and spec["pids_limit"] == 64
    assert spec["mounts"] == [{"source": "/tmp", "target": "/tmp/host", "read_only": False},
                              {"source": "/etc/hostname", "target": "/etc/host-name", "read_only": True}]
    assert spec["read_only"] and spec["auto_remove"] and spec["network"] == "host"
    assert spec["cap_add"] == ["ALL"]
    assert spec["cap_drop"] == ["CAP_SYS_MODULE", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_SYS_TIME"]


def test_lxc_defaults_mean_what_liblxc_does():
    spec = read_lxc("lxc.uts.name = a\n").spec
    assert spec["network"] == "none"  # no lxc.net: a new network namespace with lo only
    assert spec["cap_add"] == ["ALL"] and spec["cap_drop"] == []  # liblxc keeps every capability
    out, _ = write_lxc(spec)
    assert "lxc.cap" not in out  # ...so nothing needs saying on the way back
    keep = read_lxc("lxc.cap.keep = chown kill\n").spec
    assert keep["cap_drop"] == ["ALL"] and keep["cap_add"] == ["CAP_CHOWN", "CAP_KILL"]
    assert "lxc.cap.keep = chown kill" in write_lxc(keep)[0]
    assert read_lxc("lxc.cap.keep = none\n").spec["cap_add"] == []


def test_every_unconvertible_lxc_key_is_named():
    conv = read_lxc(UNCONVERTIBLE_LXC)
    text = "\n".join(conv.warnings)
    for key, _ in parse_lxc_config(UNCONVERTIBLE_LXC):
        if key in ("lxc.net.0.type",):
            continue  # veth is bridge
        assert key in text, f"{key} was dropped silently"
    assert conv.spec["network"] == "bridge"
    assert "FROM_HOST" in text
    assert "lxc.mount.entry = shm dev/shm tmpfs" in text


def test_lxc_from_its_file_name(tmp_path):
    config = tmp_path / "web7" / "config"
    config.parent.mkdir()
    config.write_text("lxc.uts.name = x\n")
    assert read_lxc(config.read_text(), origin=str(config)).spec["name"] == "web7"


def test_ctr_to_lxc_names_what_lxc_cannot_hold():
    spec = {"image": "busybox", "name": "web", "command": ["sh", "-c", "echo hi there"], "user": "nobody",
            "tty": True, "stdin": True, "labels": {"team": "a"}, "env": ["A=1"]}
    out, warnings = convert(json.dumps(spec), "ctr", "lxc")
    text = "\n".join(warnings)
    for key in ("image", "name", "user", "tty", "stdin", "labels.team", "command", "entrypoint/command"):
        assert f"{key} " in text or f"{key}:" in text, key
    assert "lxc.environment = A=1" in out


def test_ctr_to_lxc_merges_the_image_config_when_known():
    config = ImageConfig(entrypoint=("/entry",), cmd=("default",), env=("PATH=/bin", "X=1"), workdir="/w", user="7")
    out, warnings = convert(json.dumps({"image": "app", "env": ["Y=2"]}), "ctr", "lxc",
                            resolve=lambda image: config if image == "app" else None)
    items = parse_lxc_config(out)
    assert ("lxc.init.cmd", "/entry default") in items
    assert ("lxc.init.cwd", "/w") in items and ("lxc.init.uid", "7") in items
    assert [v for k, v in items if k == "lxc.environment"] == ["PATH=/bin", "X=1", "Y=2"]
    assert not any(w.startswith("entrypoint/command") for w in warnings)


DOCKER_INSPECT = {
    "Id": "f" * 64, "Created": "2026-01-01T00:00:00Z", "Path": "sh", "Args": ["-c", "x"],
    "State": {"Status": "exited", "Running": False}, "Image": "sha256:" + "a" * 64, "Name": "/web",
    "RestartCount": 0, "Driver": "overlay2", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
    "AppArmorProfile": "", "GraphDriver": {"Name": "overlay2", "Data": {}}, "NetworkSettings": {},
    "Mounts": [
        {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": False},
        {"Type": "volume", "Name": "cache", "Source": "/var/lib/docker/volumes/cache/_data", "Destination": "/cache", "RW": True},
    ],
    "Config": {
        "Hostname": "f" * 12, "Domainname": "", "User": "1:1", "AttachStdin": False, "AttachStdout": True,
        "Tty": True, "OpenStdin": True, "StdinOnce": False, "Env": ["PATH=/bin", "A=1"], "Cmd": ["-c", "x"],
        "Image": "busybox:latest", "Volumes": {"/cache": {}}, "WorkingDir": "/w", "Entrypoint": ["sh"],
        "Labels": {"team": "a"}, "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT",
    },
    "HostConfig": {
        "Binds": ["/srv/data:/data:ro"], "NetworkMode": "default", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]},
        "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}, "AutoRemove": True, "CapAdd": ["NET_ADMIN"],
        "CapDrop": ["MKNOD"], "Privileged": False, "ReadonlyRootfs": True, "Memory": 64 << 20,
        "MemorySwap": 256 << 20, "NanoCpus": 1500000000, "PidsLimit": 100, "ShmSize": 67108864,
        "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"], "LogConfig": {"Type": "json-file", "Config": {}},
        "Dns": [], "ExtraHosts": ["db:10.0.0.2"], "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
        "IpcMode": "private", "Runtime": "runc", "Isolation": "", "ConsoleSize": [0, 0],
    },
}


def test_docker_inspect_to_ctr():
    conv = read_docker(json.dumps([DOCKER_INSPECT]))
    s = conv.spec
    assert (s["name"], s["image"], s["entrypoint"], s["command"]) == ("web", "busybox:latest", ["sh"], ["-c", "x"])
    assert (s["user"], s["workdir"], s["hostname"], s["tty"], s["stdin"]) == ("1:1", "/w", "f" * 12, True, True)
    assert (s["memory"], s["cpus"], s["pids_limit"], s["read_only"], s["auto_remove"]) == (64 << 20, 1.5, 100, True, True)
    assert s["cap_add"] == ["CAP_NET_ADMIN"] and s["cap_drop"] == ["CAP_MKNOD"]
    assert s["network"] == "bridge" and s["labels"] == {"team": "a"}
    assert s["security_opt"] == ["seccomp=unconfined"] and s["privileged"] is False
    assert s["mounts"] == [{"source": "/srv/data", "target": "/data", "read_only": True},
                           {"source": "/var/lib/docker/volumes/cache/_data", "target": "/cache", "read_only": False}]
    text = "\n".join(conv.warnings)
    for key in ("HostConfig.PortBindings", "HostConfig.RestartPolicy", "HostConfig.ExtraHosts", "HostConfig.Ulimits",
                "Config.ExposedPorts", "Config.StopSignal", "Mounts[1] (volume cache",
                "HostConfig.MemorySwap"):
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
    assert argv[image_at + 1:] == ["-c", "x"]
    flags = argv[2:image_at]
    for flag in (["--name", "web"], ["--rm"], ["-i"], ["-t"], ["--read-only"], ["-e", "A=1"], ["-w", "/w"],
                 ["-u", "1:1"], ["-v", "/srv/data:/data:ro"], ["--cpus", "1.5"], ["--pids-limit", "100"],
                 ["--cap-add", "NET_ADMIN"], ["--cap-drop", "MKNOD"], ["--network", "bridge"],
                 ["--entrypoint", "sh"], ["-l", "team=a"], ["-m", f"{64 << 20}b"]):
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


def test_oci_round_trip():
    spec = {"image": "", "command": ["/bin/sh", "-c", "echo hi"], "entrypoint": [], "env": ["PATH=/bin", "A=1"],
            "workdir": "/w", "user": "5:6", "hostname": "h", "memory": 64 << 20, "cpus": 0.25, "pids_limit": 9,
            "read_only": True, "cap_add": ["CAP_CHOWN", "CAP_KILL"], "cap_drop": ["ALL"], "network": "none",
            "mounts": [{"source": "/tmp", "target": "/t", "read_only": True}], "labels": {"k": "v"}, "tty": True}
    oci, warnings = convert(json.dumps(spec), "ctr", "oci")
    doc = json.loads(oci)
    assert doc["process"]["args"] == ["/bin/sh", "-c", "echo hi"]
    assert doc["process"]["user"] == {"uid": 5, "gid": 6}
    assert doc["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]
    assert {"type": "network"} in doc["linux"]["namespaces"]
    assert doc["linux"]["resources"]["cpu"] == {"quota": 25000, "period": 100000}
    back = read_oci(oci)
    assert back.warnings == ["root.path = rootfs: a ctr container's root comes from its image"]
    for key, value in spec.items():
        assert back.spec[key] == value, key


def test_oci_names_what_it_cannot_take():
    doc = {"ociVersion": "1.0.2", "process": {"args": ["x"], "rlimits": [{"type": "RLIMIT_NOFILE"}],
                                               "apparmorProfile": "p", "noNewPrivileges": False},
           "root": {"path": "rootfs"}, "linux": {"namespaces": [{"type": "user"}], "seccomp": {"defaultAction": "x"},
                                                  "uidMappings": [{"hostID": 1}]},
           "mounts": [{"destination": "/run", "type": "tmpfs", "source": "tmpfs"}], "hooks": {"prestart": []}}
    text = "\n".join(read_oci(json.dumps(doc)).warnings)
    for key in ("process.rlimits", "process.apparmorProfile", "process.noNewPrivileges", "root.path",
                "linux.namespaces user", "linux.seccomp", "linux.uidMappings", "mounts[0] (tmpfs at /run)",
                "hooks", "no pid"):
        assert key in text, key


@pytest.mark.parametrize("source", READ_FORMATS)
@pytest.mark.parametrize("target", WRITE_FORMATS)
def test_every_pair_converts(source, target):
    inputs = {"lxc": CONVERTIBLE_LXC + UNCONVERTIBLE_LXC, "docker": json.dumps(DOCKER_INSPECT),
              "oci": convert(json.dumps({"image": "", "command": ["true"]}), "ctr", "oci")[0],
              "ctr": json.dumps({"image": "busybox", "command": ["true"], "labels": {"a": "b"}})}
    out, warnings = convert(inputs[source], source, target)
    assert out.strip()
    assert all(isinstance(w, str) and ": " in w for w in warnings)


def test_unknown_formats_and_bad_input():
    with pytest.raises(InvalidSpec, match="cannot read"):
        convert("", "podman", "ctr")
    with pytest.raises(InvalidSpec, match="cannot write"):
        convert("", "ctr", "podman")
    with pytest.raises(InvalidSpec, match="not 'key = value'"):
        read_lxc("lxc.uts.name\n")
    with pytest.raises(InvalidSpec, match="2 containers"):
        read_docker(json.dumps([DOCKER_INSPECT, DOCKER_INSPECT]))


def test_ctr_reader_takes_records_and_names_unknown_fields():
    record = {"backend": "native", "spec": {"image": "busybox", "command": ["true"], "bogus": 1}}
    out, warnings = convert(json.dumps(record), "ctr", "ctr")
    assert json.loads(out)["command"] == ["true"]
    assert warnings == ["bogus: not a field of a ctr spec"]


def test_docker_security_opt_and_privileged_carry_over():
    doc = json.loads(json.dumps(DOCKER_INSPECT))
    doc["HostConfig"].update(Privileged=True, SecurityOpt=[
        "no-new-privileges:false", "seccomp=builtin", 'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',
        "apparmor=unconfined", "systempaths=unconfined"])
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
    assert 'privileged: true' in compose and '"apparmor=unconfined"' in compose
    _, warnings = convert(json.dumps(doc), "docker", "lxc")
    assert any(w.startswith("privileged = true") for w in warnings)
