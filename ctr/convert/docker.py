"""Docker's forms of a container in `ctr convert`: a container's `docker inspect` JSON read
(read_docker, docker_to_spec, which ctr adopt uses too), and a spec written as a `docker run`
command line (write_docker_run) or a docker-compose service (write_compose).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from ctr.convert.conversion import CPU_PERIOD, Conversion, is_default, parse_caps
from ctr.errors import InvalidSpec
from ctr.spec import parse_security_opt

# Values of `docker inspect` that describe the running (or once running) container, not its configuration.
DOCKER_STATE = (
    "Id",
    "Created",
    "Path",
    "Args",
    "State",
    "Image",
    "ResolvConfPath",
    "HostnamePath",
    "HostsPath",
    "LogPath",
    "RestartCount",
    "Driver",
    "Platform",
    "MountLabel",
    "ProcessLabel",
    "AppArmorProfile",
    "ExecIDs",
    "GraphDriver",
    "SizeRw",
    "SizeRootFs",
    "NetworkSettings",
    "Node",
)
# Docker's own defaults: equal to what ctr does, so nothing is lost.
DOCKER_DEFAULTS: dict[str, Any] = {
    "Config.AttachStdin": None,
    "Config.AttachStdout": None,
    "Config.AttachStderr": None,
    "Config.StdinOnce": None,
    "Config.Domainname": "",
    "HostConfig.NetworkMode": None,
    "HostConfig.RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "HostConfig.LogConfig": None,
    "HostConfig.ShmSize": 67108864,
    "HostConfig.CgroupnsMode": None,
    "HostConfig.ConsoleSize": None,
    "HostConfig.MaskedPaths": None,
    "HostConfig.ReadonlyPaths": None,
    "HostConfig.Isolation": "",
    "HostConfig.IpcMode": ("private", "shareable", ""),
    "HostConfig.PidMode": "",
    "HostConfig.UTSMode": "",
    "HostConfig.UsernsMode": "",
    "HostConfig.Cgroup": "",
    "HostConfig.CgroupParent": "",
    "HostConfig.Runtime": "runc",
    "HostConfig.OomKillDisable": (False, None),
    "HostConfig.MemorySwappiness": None,
    "HostConfig.KernelMemory": 0,
    "HostConfig.KernelMemoryTCP": 0,
    "HostConfig.CpuShares": 0,
    "HostConfig.VolumeDriver": "",
    "HostConfig.PublishAllPorts": False,
    "HostConfig.Privileged": False,
    "HostConfig.Links": None,
    "HostConfig.Dns": [],
    "HostConfig.DnsOptions": [],
    "HostConfig.DnsSearch": [],
    "HostConfig.BlkioWeight": 0,
    "HostConfig.CpuPeriod": 0,
    "HostConfig.CpuQuota": 0,
    "HostConfig.CpuRealtimePeriod": 0,
    "HostConfig.CpuRealtimeRuntime": 0,
    "HostConfig.CpusetCpus": "",
    "HostConfig.CpusetMems": "",
    "HostConfig.MemoryReservation": 0,
    "HostConfig.OomScoreAdj": 0,
    "HostConfig.ContainerIDFile": "",
    "HostConfig.Binds": None,
    "HostConfig.Mounts": None,
    "HostConfig.MemorySwap": None,
    "HostConfig.SecurityOpt": None,
    "HostConfig.DeviceCgroupRules": None,
    "HostConfig.DeviceRequests": None,
    "HostConfig.CpuCount": 0,
    "HostConfig.CpuPercent": 0,
    "HostConfig.IOMaximumIOps": 0,
    "HostConfig.IOMaximumBandwidth": 0,
}


def read_docker(text: str, origin: str = "") -> Conversion:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"docker inspect JSON {origin or '<stdin>'} is not valid JSON: {exc}") from None
    if isinstance(doc, list):
        if len(doc) != 1:
            raise InvalidSpec(
                f"docker inspect JSON {origin or '<stdin>'} holds {len(doc)} containers: convert one at a time"
            )
        doc = doc[0]
    if not isinstance(doc, dict) or "Config" not in doc:
        raise InvalidSpec(f"{origin or '<stdin>'} is not the `docker inspect` of a container (no Config)")
    return docker_to_spec(doc)


def docker_to_spec(doc: dict, volumes_as_binds: bool = True) -> Conversion:
    """A container's `docker inspect` document as a ctr spec."""
    conv = Conversion()
    spec = conv.spec
    config = dict(doc.get("Config") or {})
    host = dict(doc.get("HostConfig") or {})
    used: set[str] = set()

    def get(section: dict, sname: str, key: str) -> Any:
        used.add(f"{sname}.{key}")
        return section.get(key)

    spec["name"] = (doc.get("Name") or "").lstrip("/") or None
    spec["image"] = get(config, "Config", "Image") or ""
    # inspect shows the effective Entrypoint and Cmd (the image's merged in): both explicit here.
    spec["command"] = list(get(config, "Config", "Cmd") or [])
    spec["entrypoint"] = list(get(config, "Config", "Entrypoint") or [])
    spec["env"] = list(get(config, "Config", "Env") or [])
    spec["workdir"] = get(config, "Config", "WorkingDir") or None
    spec["user"] = get(config, "Config", "User") or None
    spec["hostname"] = get(config, "Config", "Hostname") or None
    spec["tty"] = bool(get(config, "Config", "Tty"))
    spec["stdin"] = bool(get(config, "Config", "OpenStdin"))
    spec["labels"] = dict(get(config, "Config", "Labels") or {})
    spec["memory"] = get(host, "HostConfig", "Memory") or None
    nano = get(host, "HostConfig", "NanoCpus")
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 0
    if nano:
        spec["cpus"] = nano / 1e9
    elif quota > 0:
        used.update(("HostConfig.CpuQuota", "HostConfig.CpuPeriod"))
        spec["cpus"] = round(quota / (period or CPU_PERIOD), 4)
    pids = get(host, "HostConfig", "PidsLimit")
    spec["pids_limit"] = pids if pids not in (None, 0) else None
    spec["read_only"] = bool(get(host, "HostConfig", "ReadonlyRootfs"))
    spec["cap_add"] = parse_caps(conv, "HostConfig.CapAdd", get(host, "HostConfig", "CapAdd") or [])
    spec["cap_drop"] = parse_caps(conv, "HostConfig.CapDrop", get(host, "HostConfig", "CapDrop") or [])
    mode = get(host, "HostConfig", "NetworkMode") or "default"
    if mode in ("none", "host", "bridge"):
        spec["network"] = mode
    elif mode == "default":
        spec["network"] = "bridge"
    else:
        spec["network"] = "bridge"
        conv.warn(f"HostConfig.NetworkMode = {mode}", "only none, host and bridge have equivalents; taken as bridge")
    spec["auto_remove"] = bool(get(host, "HostConfig", "AutoRemove"))
    _docker_mounts(conv, doc, host, volumes_as_binds)
    swap = host.get("MemorySwap")
    if swap not in (None, 0, -1) and swap != spec["memory"] and not (spec["memory"] and swap == 2 * spec["memory"]):
        conv.warn(f"HostConfig.MemorySwap = {swap}", "ctr derives the swap limit from the memory limit")
    _docker_security(conv, host.get("SecurityOpt") or [])
    spec["privileged"] = bool(get(host, "HostConfig", "Privileged"))
    log = host.get("LogConfig") or {}
    if log.get("Type") not in (None, "", "json-file", "none") or log.get("Config"):
        conv.warn(
            f"HostConfig.LogConfig = {json.dumps(log)}", "ctr keeps logs in docker's json-file format, unconfigurable"
        )
    used.update(("HostConfig.LogConfig", "HostConfig.SecurityOpt", "HostConfig.MemorySwap"))
    for section, sname in ((config, "Config"), (host, "HostConfig")):
        for key, value in section.items():
            path = f"{sname}.{key}"
            if path in used or is_default(value) or _docker_default(path, value):
                continue
            if path == "Config.Volumes":
                continue  # handled with the mounts
            conv.warn(f"{path} = {json.dumps(value)}", "no equivalent in a ctr spec")
    state = [k for k in doc if k in DOCKER_STATE]
    other = [
        k
        for k in doc
        if k not in DOCKER_STATE and k not in ("Config", "HostConfig", "Name", "Mounts") and not is_default(doc[k])
    ]
    for k in other:
        conv.warn(f"{k} = {json.dumps(doc[k])}", "no equivalent in a ctr spec")
    if state:
        conv.warn(", ".join(state), "the state of a container, not its configuration: not converted")
    return conv


def _docker_security(conv: Conversion, opts: list[str]) -> None:
    """HostConfig.SecurityOpt as the docker CLI stored it, into the spec's security_opt.
    no-new-privileges is ctr's default, so only =false is kept; the engine holds a custom
    seccomp profile as its JSON text, which a spec cannot (it names a file)."""
    out = []
    for opt in opts:
        key, _, value = opt.replace(":", "=", 1).partition("=")
        if key == "seccomp" and value.lstrip().startswith("{"):
            conv.warn(
                "HostConfig.SecurityOpt seccomp={...}",
                "a custom profile's JSON text: save it to a file and pass --security-opt seccomp=FILE",
            )
            continue
        if key == "seccomp" and value == "builtin":
            continue  # the engine's default profile: ctr's default is the same
        try:
            canonical = parse_security_opt(opt)
        except InvalidSpec as exc:
            conv.warn(f"HostConfig.SecurityOpt {opt}", str(exc).partition(": ")[2] or str(exc))
            continue
        if canonical != "no-new-privileges=true":
            out.append(canonical)
    conv.spec["security_opt"] = out


def _docker_default(path: str, value: Any) -> bool:
    if path not in DOCKER_DEFAULTS:
        return False
    default = DOCKER_DEFAULTS[path]
    if default is None:
        return True  # handled elsewhere, or any value of it is Docker's own business
    if isinstance(default, tuple):
        return value in default
    return value == default


def _docker_mounts(conv: Conversion, doc: dict, host: dict, volumes_as_binds: bool) -> None:
    """Bind mounts as volumes; docker volumes as bind mounts of their directory on this host
    (the data stays where it is, shared), each such change named."""
    mounts = doc.get("Mounts")
    if mounts is None:  # an inspect without the runtime view: read the create request's forms
        mounts = []
        for bind in host.get("Binds") or []:
            parts = bind.split(":")
            mounts.append(
                {
                    "Type": "bind" if parts[0].startswith("/") else "volume",
                    "Source": parts[0],
                    "Name": parts[0],
                    "Destination": parts[1] if len(parts) > 1 else parts[0],
                    "RW": not (len(parts) > 2 and "ro" in parts[2].split(",")),
                }
            )
        for m in host.get("Mounts") or []:
            mounts.append(
                {
                    "Type": m.get("Type"),
                    "Source": m.get("Source"),
                    "Name": m.get("Source"),
                    "Destination": m.get("Target"),
                    "RW": not m.get("ReadOnly"),
                }
            )
    covered = set()
    for n, m in enumerate(mounts):
        kind, src, dst = m.get("Type"), m.get("Source") or "", m.get("Destination") or ""
        covered.add(dst)
        read_only = not m.get("RW", True)
        if kind == "bind":
            conv.spec["mounts"].append({"source": src, "target": dst, "read_only": read_only})
        elif kind == "volume" and volumes_as_binds and src.startswith("/"):
            conv.spec["mounts"].append({"source": src, "target": dst, "read_only": read_only})
            conv.warn(
                f"Mounts[{n}] (volume {m.get('Name')} at {dst})",
                f"ctr has no named volumes: a bind mount of its directory {src} instead",
            )
        else:
            conv.warn(f"Mounts[{n}] ({kind} {m.get('Name') or src} at {dst})", "only bind mounts have an equivalent")
    for path in (doc.get("Config") or {}).get("Volumes") or {}:
        if path not in covered:
            conv.warn(f"Config.Volumes {path}", "an anonymous volume of the image: ctr has no volumes of its own")


def write_docker_run(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    warnings: list[str] = []
    args = ["docker", "run"]
    if spec.get("name"):
        args += ["--name", spec["name"]]
    for flag, key in (("--rm", "auto_remove"), ("-i", "stdin"), ("-t", "tty"), ("--read-only", "read_only")):
        if spec.get(key):
            args.append(flag)
    for e in spec.get("env") or []:
        args += ["-e", e]
    for flag, key in (("-w", "workdir"), ("-u", "user"), ("-h", "hostname")):
        if spec.get(key):
            args += [flag, spec[key]]
    for m in spec.get("mounts") or []:
        args += ["-v", f"{m['source']}:{m['target']}" + (":ro" if m.get("read_only") else "")]
    if spec.get("memory") is not None:
        args += ["-m", f"{spec['memory']}b"]
    if spec.get("cpus") is not None:
        args += ["--cpus", f"{spec['cpus']:g}"]
    if spec.get("pids_limit") is not None:
        args += ["--pids-limit", str(spec["pids_limit"])]
    for c in spec.get("cap_add") or []:
        args += ["--cap-add", c.removeprefix("CAP_")]
    for c in spec.get("cap_drop") or []:
        args += ["--cap-drop", c.removeprefix("CAP_")]
    args += ["--network", spec.get("network") or "none"]
    if spec.get("privileged"):
        args.append("--privileged")
    for opt in spec.get("security_opt") or []:
        args += ["--security-opt", opt]
    command = list(spec.get("command") or [])
    entry = spec.get("entrypoint")
    if entry is not None:
        # docker run --entrypoint takes one word; the rest goes before the command, as argv is the same.
        args += ["--entrypoint", entry[0] if entry else ""]
        command = list(entry[1:]) + command
    for k, v in (spec.get("labels") or {}).items():
        args += ["-l", f"{k}={v}"]
    if not spec.get("image"):
        warnings.append("image: the spec has none; IMAGE stands in for it")
    args.append(spec.get("image") or "IMAGE")
    args += command
    return " ".join(shlex.quote(a) for a in args) + "\n", warnings


def write_compose(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    """A docker-compose file with one service; YAML, with every scalar JSON-quoted (valid YAML)."""
    warnings: list[str] = []
    q = json.dumps
    service: list[tuple[str, Any]] = [("image", spec.get("image") or "IMAGE")]
    if not spec.get("image"):
        warnings.append("image: the spec has none; IMAGE stands in for it")
    if spec.get("name"):
        service.append(("container_name", spec["name"]))
    if spec.get("entrypoint") is not None:
        service.append(("entrypoint", list(spec["entrypoint"])))
    if spec.get("command"):
        service.append(("command", list(spec["command"])))
    if spec.get("env"):
        service.append(("environment", list(spec["env"])))
    for key, ckey in (("workdir", "working_dir"), ("user", "user"), ("hostname", "hostname")):
        if spec.get(key):
            service.append((ckey, spec[key]))
    if spec.get("mounts"):
        service.append(
            (
                "volumes",
                [f"{m['source']}:{m['target']}" + (":ro" if m.get("read_only") else "") for m in spec["mounts"]],
            )
        )
    if spec.get("read_only"):
        service.append(("read_only", True))
    if spec.get("memory") is not None:
        service.append(("mem_limit", spec["memory"]))
    if spec.get("cpus") is not None:
        service.append(("cpus", spec["cpus"]))
    if spec.get("pids_limit") is not None:
        service.append(("pids_limit", spec["pids_limit"]))
    if spec.get("cap_add"):
        service.append(("cap_add", [c.removeprefix("CAP_") for c in spec["cap_add"]]))
    if spec.get("cap_drop"):
        service.append(("cap_drop", [c.removeprefix("CAP_") for c in spec["cap_drop"]]))
    service.append(("network_mode", spec.get("network") or "none"))
    if spec.get("privileged"):
        service.append(("privileged", True))
    if spec.get("security_opt"):
        service.append(("security_opt", list(spec["security_opt"])))
    if spec.get("tty"):
        service.append(("tty", True))
    if spec.get("stdin"):
        service.append(("stdin_open", True))
    if spec.get("labels"):
        service.append(("labels", dict(spec["labels"])))
    if spec.get("auto_remove"):
        warnings.append("auto_remove = true: a compose service has no --rm (docker compose run --rm has)")
    lines = ["services:", f"  {q(spec.get('name') or 'app')}:"]
    for key, value in service:
        if isinstance(value, list):
            lines.append(f"    {key}:" + ("" if value else " []"))
            lines += [f"      - {q(v)}" for v in value]
        elif isinstance(value, dict):
            lines.append(f"    {key}:")
            lines += [f"      {q(k)}: {q(v)}" for k, v in value.items()]
        else:
            lines.append(f"    {key}: {q(value)}")
    return "\n".join(lines) + "\n", warnings
