"""An LXC container's config file, as `ctr convert` reads it (read_lxc) and writes it (write_lxc):
each key ctr can express becomes its spec field; every other key is named in a warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from ctr.convert.conversion import (
    CPU_PERIOD,
    Conversion,
    caps_from_set,
    effective_caps,
    numeric_user,
    parse_caps,
    parse_size,
    resolved_process,
    security_warnings,
)
from ctr.errors import InvalidSpec

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


class _Keys:
    """An LXC config's values by key, in file order (the last one counts), and the keys taken."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.values: dict[str, list[str]] = {}
        for key, value in items:
            self.values.setdefault(key, []).append(value)
        self.done: set[str] = set()

    def last(self, key: str) -> str | None:
        return self.values[key][-1] if key in self.values else None

    def take(self, key: str) -> str | None:
        self.done.add(key)
        return self.last(key)


def read_lxc(text: str, origin: str = "") -> Conversion:
    conv = Conversion()
    spec = conv.spec
    items = parse_lxc_config(text)
    if origin and os.path.basename(origin) == "config":
        name = os.path.basename(os.path.dirname(os.path.abspath(origin)))
        if name:
            spec["name"] = name
    keys = _Keys(items)
    take = keys.take
    _read_lxc_process(conv, keys)
    _read_lxc_root(conv, keys)
    _lxc_limits(conv, keys.values, keys.done)
    _read_lxc_caps(conv, keys)
    _read_lxc_network(conv, keys)
    if (v := take("lxc.ephemeral")) is not None:
        spec["auto_remove"] = v.strip() == "1"
    if (v := take("lxc.no_new_privs")) is not None and v.strip() != "1":
        conv.warn(f"lxc.no_new_privs = {v}", "every ctr backend sets no_new_privs")
    for key, value in items:
        if key in keys.done:
            continue
        why = _LXC_RUNTIME.get(key) or _lxc_reason(key)
        conv.warn(f"{key} = {value}" if value else key, why)
    return conv


def _read_lxc_process(conv: Conversion, keys: _Keys) -> None:
    spec, take, values = conv.spec, keys.take, keys.values
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
            conv.warn(
                f"lxc.environment = {entry}",
                "a variable taken from the environment of lxc-start has no equivalent in a spec (give KEY=VALUE)",
            )
    keys.done.add("lxc.environment")


def _read_lxc_root(conv: Conversion, keys: _Keys) -> None:
    spec, take = conv.spec, keys.take
    for entry in keys.values.get("lxc.mount.entry", []):
        _lxc_mount(conv, entry)
    keys.done.add("lxc.mount.entry")
    if (v := take("lxc.rootfs.options")) is not None:
        opts = [o for o in v.split(",") if o]
        spec["read_only"] = "ro" in opts
        rest = [o for o in opts if o not in ("ro", "rw")]
        if rest:
            conv.warn(f"lxc.rootfs.options = {v}", f"only ro/rw have an equivalent (read_only); not {','.join(rest)}")
    if (v := take("lxc.rootfs.path")) is not None:
        conv.warn(
            f"lxc.rootfs.path = {v}",
            "a ctr container's root comes from its image (ctr adopt lxc:NAME makes one from this directory)",
        )


def _read_lxc_caps(conv: Conversion, keys: _Keys) -> None:
    spec, take = conv.spec, keys.take
    keep, drop = take("lxc.cap.keep"), take("lxc.cap.drop")
    if keep is not None:
        names = [] if keep.strip() == "none" else keep.split()
        spec["cap_add"], spec["cap_drop"] = caps_from_set(parse_caps(conv, "lxc.cap.keep", names))
        if drop is not None:
            conv.warn(
                f"lxc.cap.drop = {drop}", "lxc.cap.keep is given too, and liblxc refuses both; the keep list is used"
            )
    elif drop is not None:
        spec["cap_add"], spec["cap_drop"] = ["ALL"], parse_caps(conv, "lxc.cap.drop", drop.split())
    else:
        spec["cap_add"] = ["ALL"]  # liblxc keeps every capability unless told otherwise


def _read_lxc_network(conv: Conversion, keys: _Keys) -> None:
    spec, take, last = conv.spec, keys.take, keys.last
    net_type = take("lxc.net.0.type")
    if net_type is None:
        spec["network"] = "none"  # liblxc's default: a new network namespace with lo only
    elif net_type in LXC_NET_SHARED:
        spec["network"] = LXC_NET_SHARED[net_type]
        if take("lxc.net.0.flags") not in (None, "up"):
            conv.warn(f"lxc.net.0.flags = {last('lxc.net.0.flags')}", "ctr always brings the interface up")
    else:
        spec["network"] = "bridge"
        conv.warn(
            f"lxc.net.0.type = {net_type}",
            "only none, empty and veth have equivalents (host, none, bridge); taken as bridge",
        )


def _lxc_reason(key: str) -> str:
    for prefix, why in (
        ("lxc.net.", "ctr configures no network interfaces besides the mode (none, host, bridge)"),
        ("lxc.apparmor.", "ctr sets no AppArmor profile"),
        ("lxc.seccomp.", "ctr sets no seccomp profile"),
        ("lxc.selinux.", "ctr sets no SELinux context"),
        ("lxc.hook.", "ctr runs no hooks"),
        ("lxc.cgroup", "only memory, cpu and pids limits have equivalents"),
        ("lxc.signal.", "ctr stops with SIGTERM, then SIGKILL"),
        ("lxc.start.", "ctr starts nothing on boot"),
        ("lxc.log.", "ctr keeps logs itself"),
        ("lxc.idmap", "ctr runs no user namespaces"),
        ("lxc.prlimit.", "ctr sets no rlimits"),
        ("lxc.sysctl.", "ctr sets no sysctls"),
        ("lxc.include", "included files are not read by ctr convert"),
    ):
        if key.startswith(prefix):
            return why
    return "no equivalent in a ctr spec"


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
        conv.warn(
            f"lxc.mount.entry = {entry}", f"mount options {','.join(extra)} have no equivalent; the bind mount is kept"
        )
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


def write_lxc(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    warnings: list[str] = security_warnings(spec, "lxc config")
    lines: list[str] = [f"# converted by ctr from a container spec{' for ' + spec['name'] if spec.get('name') else ''}"]

    def add(key: str, value: Any) -> None:
        lines.append(f"{key} = {value}")

    _write_lxc_process(spec, resolve, add, warnings)
    for m in spec.get("mounts") or []:
        kind = "dir" if os.path.isdir(m["source"]) else "file"
        opts = "bind" + (",ro" if m.get("read_only") else "") + f",create={kind}"
        add("lxc.mount.entry", f"{_fstab_escape(m['source'])} {_fstab_escape(m['target'].lstrip('/'))} none {opts} 0 0")
    if spec.get("read_only"):
        add("lxc.rootfs.options", "ro")
    _write_lxc_limits(spec, add)
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


def _write_lxc_process(
    spec: dict, resolve: Callable[[str], Any] | None, add: Callable[[str, Any], None], warnings: list[str]
) -> None:
    args, env, cwd, user, complete = resolved_process(spec, resolve)
    if spec.get("image"):
        warnings.append(f"image = {spec['image']}: an LXC container's root is lxc.rootfs.path; unpack the image there")
    if spec.get("name"):
        warnings.append(f"name = {spec['name']}: an LXC container's name is its directory under the lxcpath, not a key")
    if spec.get("hostname"):
        add("lxc.uts.name", spec["hostname"])
    if args:
        if any(not a or re.search(r"\s", a) for a in args):
            warnings.append(
                f"command = {args}: liblxc splits lxc.init.cmd at blanks, so an empty argument or one "
                "with blanks cannot be written; written as it splits"
            )
        add("lxc.init.cmd", " ".join(args))
    if not complete:
        warnings.append(
            f"entrypoint/command: the image {spec.get('image')} adds to them at run time and is not in "
            "this ctr's store; lxc.init.cmd holds only the spec's part"
        )
    if cwd:
        add("lxc.init.cwd", cwd)
    if user:
        ids = numeric_user(user)
        if ids is None:
            warnings.append(f"user = {user}: liblxc takes numeric lxc.init.uid/gid only")
        else:
            add("lxc.init.uid", ids[0])
            if ":" in user:
                add("lxc.init.gid", ids[1])
    for entry in env:
        add("lxc.environment", entry)


def _write_lxc_limits(spec: dict, add: Callable[[str, Any], None]) -> None:
    """Memory, CPU and pids limits in the keys of the cgroup version each controller is mounted in here."""
    from ctr.native.cgroups.mounted import controller_version

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


def _user(uid: Any, gid: Any) -> str | None:
    if uid in (None, "") and gid in (None, ""):
        return None
    return f"{uid or 0}" + (f":{gid}" if gid not in (None, "") else "")


def _fstab_unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _fstab_escape(text: str) -> str:
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
