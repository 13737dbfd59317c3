"""ContainerSpec: everything a user can ask of a container, for every backend.

All parsing of user-typed text ("256m", "0.5", "src:dst:ro", "NET_RAW") lives
here, so that the CLI, the Python API and every backend agree on what it means.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from ctr.errors import InvalidSpec

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_MAX = 128
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less than 6 MiB, and so do we
NETWORK_MODES = ("none", "host", "bridge")

# Docker's default capability set (moby oci/caps/defaults.go), in the kernel's names.
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# Capability numbers from linux/capability.h; the order defines the bit masks.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
    "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
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

    def __post_init__(self) -> None:
        # Accept lists and dicts from Python callers; store tuples so the spec stays hashable.
        for attr in ("command", "env", "mounts", "cap_add", "cap_drop", "security_opt"):
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

    def with_changes(self, **changes) -> "ContainerSpec":
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
        for key in ("command", "env", "cap_add", "cap_drop", "security_opt"):
            d[key] = list(d[key])
        if self.entrypoint is not None:
            d["entrypoint"] = list(self.entrypoint)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ContainerSpec":
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
        raise InvalidSpec(f"invalid cpus {value}: range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")
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
        raise InvalidSpec(f"invalid --security-opt {text!r}: use seccomp=unconfined|PROFILE.json, "
                          "no-new-privileges[=true|false], apparmor=PROFILE or label=VALUE")
    if key == "seccomp":
        if value == "unconfined":
            return "seccomp=unconfined"
        return "seccomp=" + os.path.abspath(value)
    if key in ("apparmor", "label"):
        return f"{key}={value}"
    raise InvalidSpec(f"invalid --security-opt {text!r}: unknown option {key!r} "
                      "(seccomp, no-new-privileges, apparmor and label are known)")
