"""ContainerSpec: everything a user can ask of a container, for every backend.

All parsing of user-typed text ("256m", "0.5", "src:dst:ro", "NET_RAW") lives
here, so that the CLI, the Python API and every backend agree on what it means.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal as _signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ctr.errors import InvalidSpec, os_reason

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_MAX = 128
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less than 6 MiB, and so do we
NETWORK_MODES = ("none", "host", "bridge")

# Docker's default capability set (moby oci/caps/defaults.go), in the kernel's names.
DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Capability numbers from linux/capability.h; the order defines the bit masks.
CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path into the container."""

    source: str
    target: str
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


@dataclass(frozen=True)
class ContainerSpec:
    """What to run and how; backends translate it, none of them extends it.

    `command` and `entrypoint` override the image's Cmd and Entrypoint as in
    Docker (an empty entrypoint tuple clears the image's). `env` holds
    "KEY=VALUE" strings added to the image's Env. `memory` is in bytes.
    """

    image: str
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    mounts: tuple[Mount, ...] = ()
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    network: str = "none"
    tty: bool = False
    stdin: bool = False
    name: str | None = None
    auto_remove: bool = False
    labels: tuple[tuple[str, str], ...] = field(default=())
    security_opt: tuple[str, ...] = ()
    privileged: bool = False
    extra_hosts: tuple[str, ...] = ()  # --add-host, each "NAME:IP" (or NAME:host-gateway)
    group_add: tuple[str, ...] = ()  # --group-add: group names or gids, each once
    stop_signal: str | None = None  # --stop-signal, canonical ("SIGUSR1", or a number)
    stop_timeout: int | None = None  # --stop-timeout, seconds; negative: wait for ever
    cidfile: str | None = None  # --cidfile: the id is written there once the container exists

    def __post_init__(self) -> None:
        # Accept lists and dicts from Python callers; store tuples so the spec stays hashable.
        for attr in ("command", "env", "mounts", "cap_add", "cap_drop", "security_opt", "extra_hosts", "group_add"):
            value = getattr(self, attr)
            if isinstance(value, str):
                raise InvalidSpec(f"{attr} must be a sequence, not the string {value!r}")
            object.__setattr__(self, attr, tuple(value))
        if self.entrypoint is not None:
            if isinstance(self.entrypoint, str):
                object.__setattr__(self, "entrypoint", (self.entrypoint,))
            else:
                object.__setattr__(self, "entrypoint", tuple(self.entrypoint))
        if isinstance(self.labels, Mapping):
            object.__setattr__(self, "labels", tuple(sorted(self.labels.items())))
        object.__setattr__(self, "cap_add", tuple(parse_capability(c) for c in self.cap_add))
        object.__setattr__(self, "cap_drop", tuple(parse_capability(c) for c in self.cap_drop))
        object.__setattr__(self, "security_opt", tuple(parse_security_opt(o) for o in self.security_opt))
        object.__setattr__(self, "extra_hosts", tuple(parse_add_host(h) for h in self.extra_hosts))
        object.__setattr__(self, "group_add", parse_group_add(self.group_add))
        if self.stop_signal is not None:
            object.__setattr__(self, "stop_signal", parse_stop_signal(self.stop_signal))
        if self.stop_timeout is not None:
            object.__setattr__(self, "stop_timeout", parse_stop_timeout(self.stop_timeout))
        if self.cidfile is not None:
            object.__setattr__(self, "cidfile", os.path.abspath(self.cidfile))
        self.validate()

    def validate(self) -> None:
        """Refuse values no backend could honour, naming the field at fault."""
        if not self.image:
            raise InvalidSpec("no image given")
        if self.name is not None:
            validate_name(self.name)
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise InvalidSpec(f"memory {self.memory}: minimum memory limit is 6m")
        if self.cpus is not None:
            check_cpus(self.cpus)
        if self.pids_limit is not None and self.pids_limit < -1:
            raise InvalidSpec(f"pids limit {self.pids_limit}: must be positive, or -1 for unlimited")
        if self.pids_limit == 0:
            raise InvalidSpec("pids limit 0: must be positive, or -1 for unlimited")
        if self.network not in NETWORK_MODES:
            raise InvalidSpec(f"network {self.network!r}: must be one of {', '.join(NETWORK_MODES)}")
        if self.workdir is not None and not self.workdir.startswith("/"):
            raise InvalidSpec(f"working directory {self.workdir!r}: must be an absolute path")
        if self.hostname is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", self.hostname):
            raise InvalidSpec(f"hostname {self.hostname!r}: not a valid hostname")
        for entry in self.env:
            if "=" not in entry or entry.startswith("="):
                raise InvalidSpec(f"environment entry {entry!r}: must be KEY=VALUE")
        for m in self.mounts:
            if not m.target.startswith("/"):
                raise InvalidSpec(f"volume {m}: container path must be absolute")
        if self.user is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?", self.user):
            raise InvalidSpec(f"user {self.user!r}: must be name|uid[:group|gid]")

    def with_changes(self, **changes) -> ContainerSpec:
        """A copy with some fields replaced (the spec itself is frozen)."""
        return replace(self, **changes)

    def capabilities(self) -> tuple[str, ...]:
        """The capability set of the container's root, by Docker's rules (TweakCapabilities):
        --cap-add ALL keeps all but the drops; --cap-drop ALL keeps only the adds;
        otherwise the default 14 minus drops plus adds (an add beats a drop).
        --privileged: every capability, whatever --cap-add and --cap-drop say (Docker
        20.10's TweakCapabilities returns them all before it looks at either; on a host whose
        bounding set lacks some, a backend grants what it can hold: ctr.native.caps.grantable)."""
        if self.privileged:
            return CAPABILITIES
        adds = [c for c in self.cap_add if c != "ALL"]
        if "ALL" in self.cap_add:
            caps = [c for c in CAPABILITIES if c not in self.cap_drop]
        elif "ALL" in self.cap_drop:
            caps = adds
        else:
            caps = [c for c in DEFAULT_CAPS if c not in self.cap_drop] + adds
        return tuple(sorted(set(caps), key=CAPABILITIES.index))

    def seccomp_profile(self) -> str:
        """The profile the container runs under: 'default', 'unconfined' or the absolute path
        of a profile file. --privileged is unconfined whatever seccomp= says, as the engine
        skips seccomp for a privileged container (moby WithSeccomp)."""
        return "unconfined" if self.privileged else self.requested_seccomp()

    def requested_seccomp(self) -> str:
        """What --security-opt seccomp= asked for (the last one wins, as in Docker), even
        under --privileged: a file named there is still read and checked, as the docker
        CLI reads it before the engine sees the flag."""
        chosen = "default"
        for opt in self.security_opt:
            if opt.startswith("seccomp="):
                chosen = opt.removeprefix("seccomp=")
        return chosen

    def no_new_privs(self) -> bool:
        """ctr sets no_new_privs unless told `--security-opt no-new-privileges=false`."""
        value = True
        for opt in self.security_opt:
            if opt.startswith("no-new-privileges="):
                value = opt == "no-new-privileges=true"
        return value

    def lsm_options(self) -> tuple[str, ...]:
        """The apparmor=... and label=... options: they need an LSM on the host."""
        return tuple(o for o in self.security_opt if o.startswith(("apparmor=", "label=")))

    def to_dict(self) -> dict:
        """A JSON-able form; from_dict() reverses it."""
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["mounts"] = [vars(m) for m in self.mounts]
        d["labels"] = dict(self.labels)
        for key in ("command", "env", "cap_add", "cap_drop", "security_opt", "extra_hosts", "group_add"):
            d[key] = list(d[key])
        if self.entrypoint is not None:
            d["entrypoint"] = list(self.entrypoint)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ContainerSpec:
        d = dict(d)
        d["mounts"] = tuple(Mount(**m) for m in d.get("mounts", ()))
        known = cls.__dataclass_fields__
        unknown = set(d) - set(known)
        if unknown:
            raise InvalidSpec(f"unknown spec fields: {', '.join(sorted(unknown))}")
        return cls(**d)


def validate_name(name: str) -> str:
    """Container names as runc validates IDs: no path tricks, no surprises in a shell."""
    if not NAME_RE.match(name) or len(name) > NAME_MAX:
        raise InvalidSpec(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_memory(text: str) -> int:
    """'256m' -> 268435456, as Docker's RAMInBytes: binary units, optional 'b' suffix."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgtp]?)b?\s*", str(text), re.IGNORECASE)
    if not m:
        raise InvalidSpec(f"invalid memory size {text!r}: use a number with an optional unit b, k, m or g")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < MIN_MEMORY:
        raise InvalidSpec(f"invalid memory size {text!r}: minimum memory limit is 6m")
    return value


def check_cpus(value: float) -> float:
    ncpu = os.cpu_count() or 1
    if not value > 0 or value > ncpu:
        raise InvalidSpec(
            f"invalid cpus {value}: range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available"
        )
    return value


def parse_cpus(text: str) -> float:
    """'0.5' -> 0.5 CPUs; must lie in (0, number of host CPUs] as Docker demands."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InvalidSpec(f"invalid cpus {text!r}: not a number") from None
    return check_cpus(value)


def parse_pids_limit(text: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InvalidSpec(f"invalid pids limit {text!r}: not an integer") from None
    if value == 0 or value < -1:
        raise InvalidSpec(f"invalid pids limit {text!r}: must be positive, or -1 for unlimited")
    return value


def parse_volume(text: str) -> Mount:
    """'src:dst[:ro|rw]' -> Mount; the source must be an existing absolute host path."""
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidSpec(f"invalid volume {text!r}: use /host/path:/container/path[:ro]")
    if mode not in ("ro", "rw"):
        raise InvalidSpec(f"invalid volume {text!r}: mode {mode!r} is not ro or rw")
    source, target = parts
    if not source.startswith("/"):
        raise InvalidSpec(f"invalid volume {text!r}: named volumes are not supported, give an absolute host path")
    if not target.startswith("/"):
        raise InvalidSpec(f"invalid volume {text!r}: container path must be absolute")
    if not os.path.exists(source):
        raise InvalidSpec(f"invalid volume {text!r}: source {source} does not exist")
    return Mount(os.path.abspath(source), os.path.normpath(target), mode == "ro")


def parse_env(entries: Iterable[str], environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """-e KEY=VALUE; a bare -e KEY takes the value from ctr's own environment, as Docker does."""
    environ = os.environ if environ is None else environ
    out = []
    for entry in entries:
        if entry.startswith("="):
            raise InvalidSpec(f"invalid environment variable {entry!r}")
        if "=" in entry:
            out.append(entry)
        elif entry in environ:
            out.append(f"{entry}={environ[entry]}")
    return tuple(out)


def parse_capability(text: str) -> str:
    """'net_raw', 'NET_RAW' or 'CAP_NET_RAW' -> 'CAP_NET_RAW'; 'ALL' stays 'ALL'."""
    name = str(text).strip().upper()
    if name == "ALL":
        return name
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in CAPABILITIES:
        raise InvalidSpec(f"unknown capability {text!r}")
    return name


def parse_label(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key:
        raise InvalidSpec(f"invalid label {text!r}: use KEY=VALUE")
    return key, value


def parse_security_opt(text: str) -> str:
    """One --security-opt, in Docker's spellings ('=' or the old ':'), made canonical:
    seccomp=unconfined | seccomp=/abs/profile.json, no-new-privileges=true|false,
    apparmor=PROFILE, label=VALUE. The profile file itself is read when the container is made."""
    text = str(text)
    key, sep, value = text.partition("=")
    if not sep:
        key, sep, value = text.partition(":")
    if key == "no-new-privileges":
        if not sep:
            return "no-new-privileges=true"
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidSpec(f"invalid --security-opt {text!r}: no-new-privileges takes true or false")
        return "no-new-privileges=" + ("true" if value.lower() in ("true", "1") else "false")
    if not sep or not value:
        raise InvalidSpec(
            f"invalid --security-opt {text!r}: use seccomp=unconfined|PROFILE.json, "
            "no-new-privileges[=true|false], apparmor=PROFILE or label=VALUE"
        )
    if key == "seccomp":
        if value == "unconfined":
            return "seccomp=unconfined"
        return "seccomp=" + os.path.abspath(value)
    if key in ("apparmor", "label"):
        return f"{key}={value}"
    raise InvalidSpec(
        f"invalid --security-opt {text!r}: unknown option {key!r} "
        "(seccomp, no-new-privileges, apparmor and label are known)"
    )


def parse_add_host(text: str) -> str:
    """--add-host as the docker CLI's ValidateExtraHost: NAME=IP or NAME:IP (split at the
    first '=', else the first ':', so an IPv6 address needs no brackets), the IP in [] or
    not, or the special host-gateway; made "NAME:IP" as the CLI hands it to the engine."""
    text = str(text)
    name, sep, ip = text.partition("=")
    if not sep:
        name, sep, ip = text.partition(":")
    if not sep or not name or ":" in name:
        raise InvalidSpec(f'bad format for add-host: "{text}"')
    if ip != HOST_GATEWAY:
        if ip.startswith("[") and ip.endswith("]"):
            ip = ip[1:-1]
        if not _is_ip(ip.strip()):
            raise InvalidSpec(f'invalid IP address in add-host: "{ip}"')
    return f"{name}:{ip}"


HOST_GATEWAY = "host-gateway"


def _is_ip(text: str) -> bool:
    """As Go's net.ParseIP: no zone (%eth0), which Python's ipaddress would take."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_group_add(groups: Iterable[str]) -> tuple[str, ...]:
    """--group-add NAME|GID, each once in the order given; resolved in the container's
    /etc/group when it starts (runc's rule, ctr.native.users.additional_groups)."""
    out = []
    for g in groups:
        g = str(g)
        if not g or ":" in g or "\n" in g:
            raise InvalidSpec(f"invalid --group-add {g!r}: a group name or gid")
        out.append(g)
    return tuple(dict.fromkeys(out))


_RT_SIGNAL = re.compile(r"RTM(IN|AX)([+-]\d+)?")


def parse_signal(text: str | int) -> int:
    """As moby's signal.ParseSignal: 'KILL', 'SIGKILL', 'kill', 'RTMIN+3' or a number -> int."""
    text = str(text)
    if text.isdigit():
        number = int(text)
        if not 0 < number <= _signal.SIGRTMAX:
            raise InvalidSpec(f"invalid signal {text!r}")
        return number
    name = text.upper().removeprefix("SIG")
    rt = _RT_SIGNAL.fullmatch(name)
    if rt:
        base = _signal.SIGRTMIN if rt.group(1) == "IN" else _signal.SIGRTMAX
        number = base + int(rt.group(2) or 0)
        if _signal.SIGRTMIN <= number <= _signal.SIGRTMAX:
            return number
    elif name and name not in ("RTMIN", "RTMAX"):
        try:
            return int(_signal.Signals["SIG" + name])
        except KeyError:
            pass
    raise InvalidSpec(f"invalid signal {text!r}")


def parse_stop_signal(text: str | int) -> str:
    """--stop-signal, canonical: the signal's name where Python knows it, else its number."""
    try:
        number = parse_signal(text)
    except InvalidSpec:
        raise InvalidSpec(f"invalid --stop-signal {str(text)!r}: not a signal name or number") from None
    try:
        return _signal.Signals(number).name
    except ValueError:
        return str(number)


def parse_stop_timeout(text: str | int) -> int:
    """--stop-timeout SECONDS, an integer as Docker's (strconv.ParseInt); negative waits for ever."""
    if isinstance(text, bool):
        raise InvalidSpec(f"invalid --stop-timeout {text!r}: an integer number of seconds")
    if isinstance(text, int):
        return text
    if not re.fullmatch(r"[+-]?[0-9]+", str(text)):  # int() would take " 1" and "1_0"
        raise InvalidSpec(f"invalid --stop-timeout {str(text)!r}: an integer number of seconds")
    return int(text)


_ENV_WHITESPACE = " \t"


def parse_env_file(path: str, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """--env-file as the docker CLI's parseKeyValueFile: blank lines and lines starting
    with '#' (after leading whitespace) skipped, NAME=VALUE with the value as it is, a bare
    NAME taken from ctr's environment or dropped when unset; whitespace in a name is an error."""
    environ = os.environ if environ is None else environ
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidSpec(f"invalid --env-file {path}: {os_reason(exc)}") from None
    out = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        raw = raw.removesuffix(b"\r")  # as Go's bufio.ScanLines
        try:
            line = raw.decode("utf-8").lstrip()
        except UnicodeDecodeError:
            raise InvalidSpec(f"invalid --env-file {path}: invalid utf8 bytes at line {number}") from None
        if not line or line.startswith("#"):
            continue
        variable, sep, value = line.partition("=")
        variable = variable.lstrip(_ENV_WHITESPACE)
        if any(c in variable for c in _ENV_WHITESPACE):
            raise InvalidSpec(f"invalid --env-file {path}: variable '{variable}' contains whitespaces")
        if not variable:
            raise InvalidSpec(f"invalid --env-file {path}: no variable name on line '{line}'")
        if sep:
            out.append(f"{variable}={value}")
        elif variable in environ:
            out.append(f"{variable}={environ[variable]}")
    return tuple(out)
