"""`ctr convert`: one container's configuration from one tool's format into another's.

Readers: an LXC config file (`lxc`), `docker inspect` JSON (`docker`), an OCI
runtime config.json (`oci`), a ctr spec (`ctr`: ContainerSpec.to_dict, a
record.json or a bundle's ctr-bundle.json). Writers: `lxc`, `docker-run` (a
command line), `compose` (a docker-compose service), `oci`, `ctr`.

Every conversion goes through the ctr spec, the one model all three backends
share. A reader consumes what the spec can express and names everything else in
a warning; a writer does the same for spec fields the target cannot express.
Nothing is dropped silently: a key is either converted, or equal to what the
target does anyway (a documented default), or listed. Values that only
describe a running container (docker's Id, State, NetworkSettings...) are
listed together in one line, since they are not configuration.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from ctr.errors import InvalidSpec
from ctr.spec import ContainerSpec, parse_capability, parse_security_opt

READ_FORMATS = ("lxc", "docker", "oci", "ctr")
WRITE_FORMATS = ("lxc", "docker-run", "compose", "oci", "ctr")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000


def blank_spec() -> dict:
    """The ctr spec fields with their defaults; `image` empty until a format gives one."""
    return {"image": "", "command": [], "entrypoint": None, "env": [], "workdir": None, "user": None,
            "hostname": None, "mounts": [], "memory": None, "cpus": None, "pids_limit": None, "read_only": False,
            "cap_add": [], "cap_drop": [], "network": "none", "tty": False, "stdin": False, "name": None,
            "auto_remove": False, "labels": {}}


@dataclass
class Conversion:
    """A spec (ContainerSpec.to_dict form) and what could not be carried, key by key."""

    spec: dict = field(default_factory=blank_spec)
    warnings: list[str] = field(default_factory=list)

    def warn(self, key: str, why: str) -> None:
        self.warnings.append(f"{key}: {why}")


def convert(text: str, source: str, target: str, *, origin: str = "", resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    """Convert `text` from format `source` to `target`; returns (output, warnings).

    `origin` is the file name (an LXC config at .../NAME/config names the container).
    `resolve(image) -> ImageConfig | None` lets writers that need a full command line
    (lxc, oci) merge in the image's Entrypoint/Cmd/Env/WorkingDir/User."""
    if source not in READ_FORMATS:
        raise InvalidSpec(f"cannot read {source!r}: choose one of {', '.join(READ_FORMATS)}")
    if target not in WRITE_FORMATS:
        raise InvalidSpec(f"cannot write {target!r}: choose one of {', '.join(WRITE_FORMATS)}")
    conv = READERS[source](text, origin)
    out, warnings = WRITERS[target](conv.spec, resolve)
    return out, conv.warnings + warnings


# --- shared helpers --------------------------------------------------------------------------

_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """A cgroup size ('268435456', '256M', '1g'); 'max' and -1 mean no limit (None)."""
    text = str(text).strip()
    if text in ("max", "-1", ""):
        return None
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]


def _user(uid: Any, gid: Any) -> str | None:
    if uid in (None, "") and gid in (None, ""):
        return None
    return f"{uid or 0}" + (f":{gid}" if gid not in (None, "") else "")


def _numeric_user(user: str | None) -> tuple[int, int] | None:
    """'1000:1000' or '1000' -> (uid, gid); None for names, which need the image's /etc/passwd."""
    if not user:
        return 0, 0
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid or 0)
    return None


def _caps_from_set(caps: list[str]) -> tuple[list[str], list[str]]:
    """An explicit capability set as ctr's cap_add/cap_drop: drop ALL, add exactly these."""
    return list(caps), ["ALL"]


def effective_caps(spec: dict) -> list[str]:
    return list(_spec_obj(spec).capabilities())


def _spec_obj(spec: dict) -> ContainerSpec:
    """A ContainerSpec for rule-based questions (capabilities), whatever the image."""
    d = dict(spec)
    d["image"] = d.get("image") or "scratch"
    return ContainerSpec.from_dict(d)


def _process(spec: dict, resolve: Callable[[str], Any] | None) -> tuple[list[str], list[str], str | None, str | None, bool]:
    """(args, env, cwd, user, complete): the command line as the container runs it.

    With the image's config at hand (resolve), it is merged as every backend merges
    it. Without, only the spec's own parts; `complete` then says whether the image
    could still add to the command: it can unless the spec sets the entrypoint (which
    also clears the image's Cmd) or names no image at all."""
    from ctr.process import resolve_process

    config = resolve(spec["image"]) if spec.get("image") and resolve is not None else None
    if config is not None:
        try:
            p = resolve_process(_spec_obj(spec), config)
            return list(p.args), list(p.env), p.cwd, p.user or None, True
        except InvalidSpec:
            pass
    entry = spec.get("entrypoint")
    args = list(entry or []) + list(spec.get("command") or [])
    complete = not spec.get("image") or entry is not None
    return args, list(spec.get("env") or []), spec.get("workdir"), spec.get("user"), complete


def _fstab_unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _fstab_escape(text: str) -> str:
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def _is_default(value: Any) -> bool:
    return value in (None, "", [], {}, 0, False)


# --- LXC config ------------------------------------------------------------------------------

LXC_NET_SHARED = {"none": "host", "empty": "none", "veth": "bridge"}
_LXC_BIND_OPTIONS = {"bind", "rbind", "ro", "rw", "optional", "create=dir", "create=file", "defaults"}
# Set up by every ctr backend in its own way; the key still has no ctr field, so it is named.
_LXC_RUNTIME = {
    "lxc.autodev": "every ctr backend gives the container its own minimal /dev",
    "lxc.mount.auto": "every ctr backend mounts /proc, /sys and the cgroups itself",
    "lxc.tty.max": "ctr gives a container no getty ttys",
    "lxc.pty.max": "every ctr backend gives the container a devpts of its own",
    "lxc.console.path": "ctr decides the console from -t",
    "lxc.console.logfile": "ctr keeps logs itself (ctr logs)",
    "lxc.cgroup.memory.memsw.limit_in_bytes": "ctr derives the swap limit from the memory limit",
    "lxc.cgroup2.memory.swap.max": "ctr derives the swap limit from the memory limit",
}


def parse_lxc_config(text: str) -> list[tuple[str, str]]:
    """(key, value) pairs in file order; comments and blank lines skipped, quotes removed."""
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise InvalidSpec(f"lxc config line {n}: {line!r} is not 'key = value'")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        items.append((key.strip(), value))
    return items


def read_lxc(text: str, origin: str = "") -> Conversion:
    conv = Conversion()
    spec = conv.spec
    items = parse_lxc_config(text)
    if origin and os.path.basename(origin) == "config":
        name = os.path.basename(os.path.dirname(os.path.abspath(origin)))
        if name:
            spec["name"] = name
    values: dict[str, list[str]] = {}
    for key, value in items:
        values.setdefault(key, []).append(value)

    def last(key: str) -> str | None:
        return values[key][-1] if key in values else None

    done: set[str] = set()

    def take(key: str) -> str | None:
        done.add(key)
        return last(key)

    if (v := take("lxc.uts.name")) is not None:
        spec["hostname"] = v
    if (v := take("lxc.init.cmd")) is not None:
        spec["command"] = v.split()
    if (v := take("lxc.execute.cmd")) is not None:
        if "lxc.init.cmd" in values:
            conv.warn(f"lxc.execute.cmd = {v}", "no equivalent besides lxc.init.cmd, which ctr takes as the command")
        else:
            spec["command"] = v.split()
    if (v := take("lxc.init.cwd")) is not None:
        spec["workdir"] = v
    uid, gid = take("lxc.init.uid"), take("lxc.init.gid")
    spec["user"] = _user(uid, gid)
    for entry in values.get("lxc.environment", []):
        if "=" in entry and not entry.startswith("="):
            spec["env"].append(entry)
        else:
            conv.warn(f"lxc.environment = {entry}", "a variable taken from the environment of lxc-start has no "
                      "equivalent in a spec (give KEY=VALUE)")
    done.add("lxc.environment")
    for entry in values.get("lxc.mount.entry", []):
        _lxc_mount(conv, entry)
    done.add("lxc.mount.entry")
    if (v := take("lxc.rootfs.options")) is not None:
        opts = [o for o in v.split(",") if o]
        spec["read_only"] = "ro" in opts
        rest = [o for o in opts if o not in ("ro", "rw")]
        if rest:
            conv.warn(f"lxc.rootfs.options = {v}", f"only ro/rw have an equivalent (read_only); not {','.join(rest)}")
    if (v := take("lxc.rootfs.path")) is not None:
        conv.warn(f"lxc.rootfs.path = {v}", "a ctr container's root comes from its image (ctr adopt lxc:NAME "
                  "makes one from this directory)")
    _lxc_limits(conv, values, done)
    keep, drop = take("lxc.cap.keep"), take("lxc.cap.drop")
    if keep is not None:
        names = [] if keep.strip() == "none" else keep.split()
        spec["cap_add"], spec["cap_drop"] = _caps_from_set(_caps(conv, "lxc.cap.keep", names))
        if drop is not None:
            conv.warn(f"lxc.cap.drop = {drop}", "lxc.cap.keep is given too, and liblxc refuses both; the keep list is used")
    elif drop is not None:
        spec["cap_add"], spec["cap_drop"] = ["ALL"], _caps(conv, "lxc.cap.drop", drop.split())
    else:
        spec["cap_add"] = ["ALL"]  # liblxc keeps every capability unless told otherwise
    net_type = take("lxc.net.0.type")
    if net_type is None:
        spec["network"] = "none"  # liblxc's default: a new network namespace with lo only
    elif net_type in LXC_NET_SHARED:
        spec["network"] = LXC_NET_SHARED[net_type]
        if take("lxc.net.0.flags") not in (None, "up"):
            conv.warn(f"lxc.net.0.flags = {last('lxc.net.0.flags')}", "ctr always brings the interface up")
    else:
        spec["network"] = "bridge"
        conv.warn(f"lxc.net.0.type = {net_type}", "only none, empty and veth have equivalents (host, none, bridge); "
                  "taken as bridge")
    if (v := take("lxc.ephemeral")) is not None:
        spec["auto_remove"] = v.strip() == "1"
    if (v := take("lxc.no_new_privs")) is not None and v.strip() != "1":
        conv.warn(f"lxc.no_new_privs = {v}", "every ctr backend sets no_new_privs")
    for key, value in items:
        if key in done:
            continue
        why = _LXC_RUNTIME.get(key) or _lxc_reason(key)
        conv.warn(f"{key} = {value}" if value else key, why)
    return conv


def _lxc_reason(key: str) -> str:
    for prefix, why in (("lxc.net.", "ctr configures no network interfaces besides the mode (none, host, bridge)"),
                        ("lxc.apparmor.", "ctr sets no AppArmor profile"), ("lxc.seccomp.", "ctr sets no seccomp profile"),
                        ("lxc.selinux.", "ctr sets no SELinux context"), ("lxc.hook.", "ctr runs no hooks"),
                        ("lxc.cgroup", "only memory, cpu and pids limits have equivalents"),
                        ("lxc.signal.", "ctr stops with SIGTERM, then SIGKILL"), ("lxc.start.", "ctr starts nothing on boot"),
                        ("lxc.log.", "ctr keeps logs itself"), ("lxc.idmap", "ctr runs no user namespaces"),
                        ("lxc.prlimit.", "ctr sets no rlimits"), ("lxc.sysctl.", "ctr sets no sysctls"),
                        ("lxc.include", "included files are not read by ctr convert")):
        if key.startswith(prefix):
            return why
    return "no equivalent in a ctr spec"


def _caps(conv: Conversion, key: str, names: list[str]) -> list[str]:
    """The capabilities among `names` (any source's spelling); the rest become warnings."""
    out = []
    for name in names:
        try:
            out.append(parse_capability(name))
        except InvalidSpec:
            conv.warn(f"{key} {name}", "not a capability ctr knows")
    return out


def _lxc_mount(conv: Conversion, entry: str) -> None:
    fields = entry.split()
    if len(fields) < 4:
        conv.warn(f"lxc.mount.entry = {entry}", "not an fstab line")
        return
    src, dst, fstype, opts = (_fstab_unescape(f) for f in fields[:4])
    options = set(opts.split(","))
    if not options & {"bind", "rbind"}:
        conv.warn(f"lxc.mount.entry = {entry}", f"only bind mounts have an equivalent (volumes), not {fstype}")
        return
    if not src.startswith("/"):
        conv.warn(f"lxc.mount.entry = {entry}", "the source of a bind mount must be an absolute host path")
        return
    extra = sorted(options - _LXC_BIND_OPTIONS)
    if extra:
        conv.warn(f"lxc.mount.entry = {entry}", f"mount options {','.join(extra)} have no equivalent; the bind mount is kept")
    target = "/" + dst.lstrip("/")
    conv.spec["mounts"].append({"source": src, "target": target, "read_only": "ro" in options})
    if "optional" in options and not os.path.exists(src):
        conv.warn(f"lxc.mount.entry = {entry}", f"optional, and {src} does not exist on this host: ctr would refuse it")


def _lxc_limits(conv: Conversion, values: dict[str, list[str]], done: set[str]) -> None:
    spec = conv.spec

    def size(key: str) -> None:
        if key in values:
            done.add(key)
            try:
                spec["memory"] = parse_size(values[key][-1])
            except ValueError:
                conv.warn(f"{key} = {values[key][-1]}", "not a size")

    size("lxc.cgroup.memory.limit_in_bytes")
    size("lxc.cgroup2.memory.max")
    for key in ("lxc.cgroup2.cpu.max",):
        if key in values:
            done.add(key)
            quota, _, period = values[key][-1].partition(" ")
            if quota != "max":
                try:
                    spec["cpus"] = round(int(quota) / int(period or CPU_PERIOD), 4)
                except ValueError:
                    conv.warn(f"{key} = {values[key][-1]}", "not 'QUOTA PERIOD'")
    if "lxc.cgroup.cpu.cfs_quota_us" in values:
        done.update(("lxc.cgroup.cpu.cfs_quota_us", "lxc.cgroup.cpu.cfs_period_us"))
        quota = int(values["lxc.cgroup.cpu.cfs_quota_us"][-1])
        period = int((values.get("lxc.cgroup.cpu.cfs_period_us") or [CPU_PERIOD])[-1])
        if quota > 0:
            spec["cpus"] = round(quota / period, 4)
    for key in ("lxc.cgroup.pids.max", "lxc.cgroup2.pids.max"):
        if key in values:
            done.add(key)
            value = values[key][-1].strip()
            spec["pids_limit"] = -1 if value == "max" else int(value)


def _security_warnings(spec: dict, fmt: str) -> list[str]:
    """--privileged and --security-opt, which ctr's lxc and OCI writers do not translate:
    ctr's own backends apply them (ctr run --privileged / --security-opt)."""
    out = []
    if spec.get("privileged"):
        out.append(f"privileged = true: not carried into the {fmt}; ctr run --privileged applies it on every backend")
    for opt in spec.get("security_opt") or []:
        out.append(f"security_opt {opt}: not carried into the {fmt}; ctr run --security-opt applies it")
    return out


def write_lxc(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    from ctr.native.cgroups.mounted import controller_version

    warnings: list[str] = _security_warnings(spec, "lxc config")
    lines: list[str] = [f"# converted by ctr from a container spec{' for ' + spec['name'] if spec.get('name') else ''}"]

    def add(key: str, value: Any) -> None:
        lines.append(f"{key} = {value}")

    args, env, cwd, user, complete = _process(spec, resolve)
    if spec.get("image"):
        warnings.append(f"image = {spec['image']}: an LXC container's root is lxc.rootfs.path; unpack the image there")
    if spec.get("name"):
        warnings.append(f"name = {spec['name']}: an LXC container's name is its directory under the lxcpath, not a key")
    if spec.get("hostname"):
        add("lxc.uts.name", spec["hostname"])
    if args:
        if any(not a or re.search(r"\s", a) for a in args):
            warnings.append(f"command = {args}: liblxc splits lxc.init.cmd at blanks, so an empty argument or one "
                            "with blanks cannot be written; written as it splits")
        add("lxc.init.cmd", " ".join(args))
    if not complete:
        warnings.append(f"entrypoint/command: the image {spec.get('image')} adds to them at run time and is not in "
                        "this ctr's store; lxc.init.cmd holds only the spec's part")
    if cwd:
        add("lxc.init.cwd", cwd)
    if user:
        ids = _numeric_user(user)
        if ids is None:
            warnings.append(f"user = {user}: liblxc takes numeric lxc.init.uid/gid only")
        else:
            add("lxc.init.uid", ids[0])
            if ":" in user:
                add("lxc.init.gid", ids[1])
    for entry in env:
        add("lxc.environment", entry)
    for m in spec.get("mounts") or []:
        kind = "dir" if os.path.isdir(m["source"]) else "file"
        opts = "bind" + (",ro" if m.get("read_only") else "") + f",create={kind}"
        add("lxc.mount.entry", f"{_fstab_escape(m['source'])} {_fstab_escape(m['target'].lstrip('/'))} none {opts} 0 0")
    if spec.get("read_only"):
        add("lxc.rootfs.options", "ro")
    v2 = {c: controller_version(c) != 1 for c in ("memory", "cpu", "pids")}
    if spec.get("memory") is not None:
        add("lxc.cgroup2.memory.max" if v2["memory"] else "lxc.cgroup.memory.limit_in_bytes", spec["memory"])
    if spec.get("cpus") is not None:
        quota = round(spec["cpus"] * CPU_PERIOD)
        if v2["cpu"]:
            add("lxc.cgroup2.cpu.max", f"{quota} {CPU_PERIOD}")
        else:
            add("lxc.cgroup.cpu.cfs_period_us", CPU_PERIOD)
            add("lxc.cgroup.cpu.cfs_quota_us", quota)
    if spec.get("pids_limit") is not None:
        value = "max" if spec["pids_limit"] == -1 else spec["pids_limit"]
        add("lxc.cgroup2.pids.max" if v2["pids"] else "lxc.cgroup.pids.max", value)
    cap_add, cap_drop = spec.get("cap_add") or [], spec.get("cap_drop") or []
    if "ALL" in cap_add:
        drops = [c for c in cap_drop if c != "ALL"]
        if drops:
            add("lxc.cap.drop", " ".join(c.removeprefix("CAP_").lower() for c in drops))
    else:
        caps = effective_caps(spec)
        add("lxc.cap.keep", " ".join(c.removeprefix("CAP_").lower() for c in caps) or "none")
    network = spec.get("network") or "none"
    if network == "host":
        add("lxc.net.0.type", "none")
    elif network == "bridge":
        add("lxc.net.0.type", "veth")
        add("lxc.net.0.flags", "up")
        lines.append("# lxc.net.0.link = lxcbr0   (the host bridge to attach to: choose one)")
    else:
        add("lxc.net.0.type", "empty")
    if spec.get("auto_remove"):
        add("lxc.ephemeral", 1)
    if spec.get("tty"):
        warnings.append("tty = true: liblxc gives PID 1 its console; there is no key for a pty per process")
    if spec.get("stdin"):
        warnings.append("stdin = true: whether stdin stays open is up to whoever starts the container")
    for k, v in (spec.get("labels") or {}).items():
        warnings.append(f"labels.{k} = {v}: LXC configs have no labels")
    return "\n".join(lines) + "\n", warnings


# --- docker inspect ---------------------------------------------------------------------------

# Values of `docker inspect` that describe the running (or once running) container, not its configuration.
DOCKER_STATE = ("Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath", "HostnamePath", "HostsPath",
                "LogPath", "RestartCount", "Driver", "Platform", "MountLabel", "ProcessLabel", "AppArmorProfile",
                "ExecIDs", "GraphDriver", "SizeRw", "SizeRootFs", "NetworkSettings", "Node")
# Docker's own defaults: equal to what ctr does, so nothing is lost.
DOCKER_DEFAULTS: dict[str, Any] = {
    "Config.AttachStdin": None, "Config.AttachStdout": None, "Config.AttachStderr": None, "Config.StdinOnce": None,
    "Config.Domainname": "", "HostConfig.NetworkMode": None, "HostConfig.RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "HostConfig.LogConfig": None, "HostConfig.ShmSize": 67108864, "HostConfig.CgroupnsMode": None,
    "HostConfig.ConsoleSize": None, "HostConfig.MaskedPaths": None, "HostConfig.ReadonlyPaths": None,
    "HostConfig.Isolation": "", "HostConfig.IpcMode": ("private", "shareable", ""), "HostConfig.PidMode": "",
    "HostConfig.UTSMode": "", "HostConfig.UsernsMode": "", "HostConfig.Cgroup": "", "HostConfig.CgroupParent": "",
    "HostConfig.Runtime": "runc", "HostConfig.OomKillDisable": (False, None), "HostConfig.MemorySwappiness": None,
    "HostConfig.KernelMemory": 0, "HostConfig.KernelMemoryTCP": 0, "HostConfig.CpuShares": 0,
    "HostConfig.VolumeDriver": "", "HostConfig.PublishAllPorts": False, "HostConfig.Privileged": False,
    "HostConfig.Links": None, "HostConfig.Dns": [], "HostConfig.DnsOptions": [], "HostConfig.DnsSearch": [],
    "HostConfig.BlkioWeight": 0, "HostConfig.CpuPeriod": 0, "HostConfig.CpuQuota": 0, "HostConfig.CpuRealtimePeriod": 0,
    "HostConfig.CpuRealtimeRuntime": 0, "HostConfig.CpusetCpus": "", "HostConfig.CpusetMems": "",
    "HostConfig.MemoryReservation": 0, "HostConfig.OomScoreAdj": 0, "HostConfig.ContainerIDFile": "",
    "HostConfig.Binds": None, "HostConfig.Mounts": None, "HostConfig.MemorySwap": None, "HostConfig.SecurityOpt": None,
    "HostConfig.DeviceCgroupRules": None, "HostConfig.DeviceRequests": None, "HostConfig.CpuCount": 0,
    "HostConfig.CpuPercent": 0, "HostConfig.IOMaximumIOps": 0, "HostConfig.IOMaximumBandwidth": 0,
}


def read_docker(text: str, origin: str = "") -> Conversion:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"docker inspect JSON {origin or '<stdin>'} is not valid JSON: {exc}") from None
    if isinstance(doc, list):
        if len(doc) != 1:
            raise InvalidSpec(f"docker inspect JSON {origin or '<stdin>'} holds {len(doc)} containers: convert one at a time")
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
    spec["cap_add"] = _caps(conv, "HostConfig.CapAdd", get(host, "HostConfig", "CapAdd") or [])
    spec["cap_drop"] = _caps(conv, "HostConfig.CapDrop", get(host, "HostConfig", "CapDrop") or [])
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
        conv.warn(f"HostConfig.LogConfig = {json.dumps(log)}", "ctr keeps logs in docker's json-file format, unconfigurable")
    used.update(("HostConfig.LogConfig", "HostConfig.SecurityOpt", "HostConfig.MemorySwap"))
    for section, sname in ((config, "Config"), (host, "HostConfig")):
        for key, value in section.items():
            path = f"{sname}.{key}"
            if path in used or _is_default(value) or _docker_default(path, value):
                continue
            if path == "Config.Volumes":
                continue  # handled with the mounts
            conv.warn(f"{path} = {json.dumps(value)}", "no equivalent in a ctr spec")
    state = [k for k in doc if k in DOCKER_STATE]
    other = [k for k in doc if k not in DOCKER_STATE and k not in ("Config", "HostConfig", "Name", "Mounts")
             and not _is_default(doc[k])]
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
            conv.warn("HostConfig.SecurityOpt seccomp={...}", "a custom profile's JSON text: save it to a file and "
                      "pass --security-opt seccomp=FILE")
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
            mounts.append({"Type": "bind" if parts[0].startswith("/") else "volume", "Source": parts[0],
                           "Name": parts[0], "Destination": parts[1] if len(parts) > 1 else parts[0],
                           "RW": not (len(parts) > 2 and "ro" in parts[2].split(","))})
        for m in host.get("Mounts") or []:
            mounts.append({"Type": m.get("Type"), "Source": m.get("Source"), "Name": m.get("Source"),
                           "Destination": m.get("Target"), "RW": not m.get("ReadOnly")})
    covered = set()
    for n, m in enumerate(mounts):
        kind, src, dst = m.get("Type"), m.get("Source") or "", m.get("Destination") or ""
        covered.add(dst)
        read_only = not m.get("RW", True)
        if kind == "bind":
            conv.spec["mounts"].append({"source": src, "target": dst, "read_only": read_only})
        elif kind == "volume" and volumes_as_binds and src.startswith("/"):
            conv.spec["mounts"].append({"source": src, "target": dst, "read_only": read_only})
            conv.warn(f"Mounts[{n}] (volume {m.get('Name')} at {dst})", f"ctr has no named volumes: a bind mount of "
                      f"its directory {src} instead")
        else:
            conv.warn(f"Mounts[{n}] ({kind} {m.get('Name') or src} at {dst})", "only bind mounts have an equivalent")
    for path in ((doc.get("Config") or {}).get("Volumes") or {}):
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
        service.append(("volumes", [f"{m['source']}:{m['target']}" + (":ro" if m.get("read_only") else "")
                                    for m in spec["mounts"]]))
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


# --- OCI runtime config.json -------------------------------------------------------------------

OCI_STANDARD_MOUNTS = ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup")


def read_oci(text: str, origin: str = "") -> Conversion:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"OCI config {origin or '<stdin>'} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "process" not in doc and "ociVersion" not in doc:
        raise InvalidSpec(f"{origin or '<stdin>'} is not an OCI runtime config.json (no ociVersion or process)")
    conv = Conversion()
    spec = conv.spec
    process = dict(doc.get("process") or {})
    args = list(process.pop("args", None) or [])
    spec["command"], spec["entrypoint"] = args, [] if args else None  # the full argv: no image entrypoint before it
    spec["env"] = list(process.pop("env", None) or [])
    cwd = process.pop("cwd", None)
    spec["workdir"] = cwd if cwd and cwd != "/" else None
    user = dict(process.pop("user", None) or {})
    uid, gid = user.pop("uid", 0), user.pop("gid", 0)
    spec["user"] = None if (uid, gid) == (0, 0) else f"{uid}:{gid}"
    for k, v in user.items():
        if not _is_default(v):
            conv.warn(f"process.user.{k} = {json.dumps(v)}", "ctr takes the groups from the image's /etc/group")
    spec["tty"] = bool(process.pop("terminal", False))
    caps = process.pop("capabilities", None)
    if caps is not None:
        bounding = caps.get("bounding") or caps.get("effective") or []
        spec["cap_add"], spec["cap_drop"] = _caps_from_set(_caps(conv, "process.capabilities", bounding))
        for k in ("effective", "permitted", "inheritable", "ambient"):
            if caps.get(k) and sorted(caps[k]) != sorted(bounding) and k != "inheritable":
                conv.warn(f"process.capabilities.{k}", "ctr gives one set as bounding, effective and permitted alike")
    if process.pop("noNewPrivileges", True) is not True:
        conv.warn("process.noNewPrivileges = false", "every ctr backend sets no_new_privs")
    for k, v in process.items():
        if k == "consoleSize":
            continue
        if not _is_default(v):
            conv.warn(f"process.{k} = {json.dumps(v)}", "no equivalent in a ctr spec")
    root = dict(doc.get("root") or {})
    spec["read_only"] = bool(root.get("readonly"))
    if root.get("path"):
        conv.warn(f"root.path = {root['path']}", "a ctr container's root comes from its image")
    spec["hostname"] = doc.get("hostname") or None
    for n, m in enumerate(doc.get("mounts") or []):
        options = m.get("options") or []
        dst = m.get("destination", "")
        if m.get("type") == "bind" or "bind" in options or "rbind" in options:
            spec["mounts"].append({"source": m.get("source", ""), "target": dst, "read_only": "ro" in options})
        elif dst not in OCI_STANDARD_MOUNTS:
            conv.warn(f"mounts[{n}] ({m.get('type')} at {dst})", "only bind mounts have an equivalent")
    linux = dict(doc.get("linux") or {})
    resources = dict(linux.pop("resources", None) or {})
    memory = (resources.pop("memory", None) or {})
    spec["memory"] = memory.get("limit") or None
    for k, v in memory.items():
        if k not in ("limit", "swap") and not _is_default(v):
            conv.warn(f"linux.resources.memory.{k}", "only the memory limit has an equivalent")
    cpu = resources.pop("cpu", None) or {}
    if cpu.get("quota") and cpu["quota"] > 0:
        spec["cpus"] = round(cpu["quota"] / (cpu.get("period") or CPU_PERIOD), 4)
    for k, v in cpu.items():
        if k not in ("quota", "period") and not _is_default(v):
            conv.warn(f"linux.resources.cpu.{k} = {json.dumps(v)}", "only the CPU quota has an equivalent (cpus)")
    pids = (resources.pop("pids", None) or {}).get("limit")
    spec["pids_limit"] = pids if pids not in (None, 0) else None
    resources.pop("devices", None)  # ctr applies Docker's default device rules on every backend
    for k, v in resources.items():
        if not _is_default(v):
            conv.warn(f"linux.resources.{k}", "no equivalent in a ctr spec")
    namespaces = {ns.get("type"): ns for ns in linux.pop("namespaces", None) or []}
    spec["network"] = "none" if "network" in namespaces else "host"
    if (namespaces.get("network") or {}).get("path"):
        conv.warn(f"linux.namespaces network path {namespaces['network']['path']}", "ctr makes a new network namespace")
    for ns in ("user",):
        if ns in namespaces:
            conv.warn(f"linux.namespaces {ns}", "ctr runs no user namespaces")
    for ns in ("pid", "ipc", "uts", "mount"):
        if ns not in namespaces:
            conv.warn(f"linux.namespaces (no {ns})", f"ctr always gives a container its own {ns} namespace")
    for k in ("maskedPaths", "readonlyPaths", "cgroupsPath", "seccomp", "uidMappings", "gidMappings", "sysctl",
              "devices", "rootfsPropagation", "mountLabel", "intelRdt", "personality"):
        v = linux.pop(k, None)
        if k in ("maskedPaths", "readonlyPaths", "cgroupsPath") or _is_default(v):
            continue  # ctr applies Docker's fixed lists; the cgroup path is ctr's choice
        conv.warn(f"linux.{k}", "no equivalent in a ctr spec")
    for k, v in linux.items():
        if not _is_default(v):
            conv.warn(f"linux.{k}", "no equivalent in a ctr spec")
    spec["labels"] = dict(doc.get("annotations") or {})
    for k in doc:
        if k not in ("ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations"):
            conv.warn(k, "no equivalent in a ctr spec")
    return conv


def write_oci(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    from ctr.native.rootfs import MASKED_PATHS, READONLY_PATHS

    warnings: list[str] = _security_warnings(spec, "OCI config")
    args, env, cwd, user, complete = _process(spec, resolve)
    if not any(e.startswith("PATH=") for e in env):
        env = [DEFAULT_PATH] + env
    if spec.get("image"):
        warnings.append(f"image = {spec['image']}: an OCI bundle has no image; unpack it into root.path (rootfs)")
    if not complete:
        warnings.append(f"entrypoint/command: the image {spec.get('image')} adds to them at run time and is not in "
                        "this ctr's store; process.args holds only the spec's part")
    ids = _numeric_user(user)
    if ids is None:
        warnings.append(f"user = {user}: an OCI config takes numeric ids; written as 0:0")
        ids = (0, 0)
    caps = effective_caps(spec)
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    for m in spec.get("mounts") or []:
        mounts.append({"destination": m["target"], "type": "bind", "source": m["source"],
                       "options": ["rbind", "ro" if m.get("read_only") else "rw"]})
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    network = spec.get("network") or "none"
    if network != "host":
        namespaces.append({"type": "network"})
    if network == "bridge":
        warnings.append("network = bridge: an OCI config has no network setup; the container gets a network "
                        "namespace with lo only, unless a hook adds an interface")
    resources: dict = {"devices": [{"allow": False, "access": "rwm"}]}
    if spec.get("memory") is not None:
        resources["memory"] = {"limit": spec["memory"]}
    if spec.get("cpus") is not None:
        resources["cpu"] = {"quota": round(spec["cpus"] * CPU_PERIOD), "period": CPU_PERIOD}
    if spec.get("pids_limit") is not None:
        resources["pids"] = {"limit": spec["pids_limit"]}
    doc = {
        "ociVersion": "1.0.2",
        "process": {"terminal": bool(spec.get("tty")), "user": {"uid": ids[0], "gid": ids[1]}, "args": args,
                    "env": env, "cwd": cwd or "/",
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": bool(spec.get("read_only"))},
        "hostname": spec.get("hostname") or "",
        "mounts": mounts,
        "linux": {"resources": resources, "namespaces": namespaces, "maskedPaths": list(MASKED_PATHS),
                  "readonlyPaths": list(READONLY_PATHS)},
    }
    if spec.get("labels"):
        doc["annotations"] = dict(spec["labels"])
    if spec.get("name"):
        warnings.append(f"name = {spec['name']}: the container id is given to the runtime (runc run ID), not in config.json")
    if spec.get("stdin"):
        warnings.append("stdin = true: whether stdin stays open is up to whoever runs the bundle")
    if spec.get("auto_remove"):
        warnings.append("auto_remove = true: `runc run` removes the container when it exits anyway; detached, "
                        "the caller deletes it")
    if not spec.get("hostname"):
        del doc["hostname"]
    return json.dumps(doc, indent=2) + "\n", warnings


# --- ctr spec ----------------------------------------------------------------------------------


def read_ctr(text: str, origin: str = "") -> Conversion:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"ctr spec {origin or '<stdin>'} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidSpec(f"ctr spec {origin or '<stdin>'} is not a JSON object")
    if isinstance(doc.get("spec"), dict):  # a record.json or a bundle's ctr-bundle.json
        doc = doc["spec"]
    conv = Conversion()
    for key, value in doc.items():
        if key in conv.spec:
            conv.spec[key] = value
        else:
            conv.warn(key, "not a field of a ctr spec")
    if conv.spec.get("image"):
        spec = ContainerSpec.from_dict(conv.spec)  # the same checks as for a container
        conv.spec = spec.to_dict()
    return conv


def write_ctr(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    warnings = []
    out = dict(spec)
    if out.get("image"):
        out = ContainerSpec.from_dict(out).to_dict()
    else:
        warnings.append("image: the source names none; set one before using this spec")
    return json.dumps(out, indent=2, sort_keys=True) + "\n", warnings


READERS: dict[str, Callable[[str, str], Conversion]] = {"lxc": read_lxc, "docker": read_docker, "oci": read_oci, "ctr": read_ctr}
WRITERS: dict[str, Callable[[dict, Callable[[str], Any] | None], tuple[str, list[str]]]] = {
    "lxc": write_lxc, "docker-run": write_docker_run, "compose": write_compose, "oci": write_oci, "ctr": write_ctr}


def spec_from(conv: Conversion, **overrides: Any) -> ContainerSpec:
    """The ContainerSpec of a conversion (mounts as Mount objects), with fields replaced."""
    d = {**conv.spec, **overrides}
    d["mounts"] = [m if isinstance(m, dict) else vars(m) for m in d.get("mounts") or []]
    return ContainerSpec.from_dict(d)


__all__ = ["Conversion", "READ_FORMATS", "WRITE_FORMATS", "blank_spec", "convert", "docker_to_spec",
           "parse_lxc_config", "read_lxc", "spec_from", "write_lxc"]
