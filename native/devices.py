"""The device policy every backend puts a container under: Docker's default, as rules.

A rule is what the v1 devices controller takes in devices.allow / devices.deny
("c 1:3 rwm"); the v2 driver compiles the same list into a BPF device program
(bpf_devices). One list for every backend and both cgroup versions, so that a
device node that came with an image is usable, or not, the same way everywhere.

device_policy() is the one place the list is made: deny everything, then
Docker's allowances, then whatever the caller adds (--privileged passes
PRIVILEGED as `extra`, a later --device its rules; a later rule overrides an earlier one,
as a later write to devices.allow/deny does).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from ctr.errors import InvalidSpec

ACCESS = "rwm"
_RULE_RE = re.compile(r"([abc]) (\*|\d+):(\*|\d+) ([rwm]{1,3})")


@dataclass(frozen=True)
class DeviceRule:
    """One device cgroup rule. major/minor None is the wildcard '*'; type 'a' is every device."""

    allow: bool
    type: str  # "a", "b" or "c"
    major: int | None = None
    minor: int | None = None
    access: str = ACCESS  # a subset of "rwm", in that order

    def __post_init__(self) -> None:
        if self.type not in ("a", "b", "c"):
            raise InvalidSpec(f"device rule type {self.type!r}: must be a, b or c")
        if not self.access or set(self.access) - set(ACCESS) or len(set(self.access)) != len(self.access):
            raise InvalidSpec(f"device rule access {self.access!r}: must be some of r, w, m")
        for n in (self.major, self.minor):
            if n is not None and not 0 <= n < 1 << 32:
                raise InvalidSpec(f"device number {n}: out of range")
        object.__setattr__(self, "access", "".join(c for c in ACCESS if c in self.access))

    @property
    def is_everything(self) -> bool:
        """'a' with every access: what resets the v1 list, and the v2 program's default."""
        return self.type == "a" and self.access == ACCESS

    def __str__(self) -> str:
        """devices.allow syntax: 'c 1:3 rwm'; 'a' for every device."""
        if self.type == "a":
            return "a" if self.access == ACCESS else f"a *:* {self.access}"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def parse_rule(text: str, allow: bool = True) -> DeviceRule:
    """'c 1:3 rwm', 'b *:* m' or 'a', as devices.allow and devices.list write them."""
    text = text.strip()
    if text == "a" or text == "a *:* rwm":
        return DeviceRule(allow, "a")
    m = _RULE_RE.fullmatch(text)
    if not m:
        raise InvalidSpec(f"device rule {text!r}: expected TYPE MAJOR:MINOR ACCESS, e.g. 'c 1:3 rwm'")
    kind, major, minor, access = m.groups()
    return DeviceRule(allow, kind, None if major == "*" else int(major), None if minor == "*" else int(minor), access)


# Docker's default (moby oci/defaults.go, runc AllowedDevices): mknod of any node (useless
# without read or write), read and write only of these character devices; no block device.
DEFAULT_ALLOW = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # /dev/null
    "c 1:5 rwm",  # /dev/zero
    "c 1:7 rwm",  # /dev/full
    "c 1:8 rwm",  # /dev/random
    "c 1:9 rwm",  # /dev/urandom
    "c 5:0 rwm",  # /dev/tty
    "c 5:1 rwm",  # /dev/console
    "c 5:2 rwm",  # /dev/ptmx
    "c 136:* rwm",  # /dev/pts/*
    "c 10:200 rwm",  # /dev/net/tun
)


def device_policy(extra: Sequence[DeviceRule] = ()) -> tuple[DeviceRule, ...]:
    """Deny all, Docker's default allowances, then `extra` (e.g. from --device), in order."""
    return (DeviceRule(False, "a"), *(parse_rule(r) for r in DEFAULT_ALLOW), *extra)


# --privileged: every device, every access (Docker's privileged device rule, 'a *:* rwm').
PRIVILEGED = (DeviceRule(True, "a"),)


def container_policy(privileged: bool) -> tuple[DeviceRule, ...]:
    """The policy a container gets: Docker's default, or under --privileged every device."""
    return device_policy(PRIVILEGED if privileged else ())


@dataclass(frozen=True)
class HostDevice:
    """A device node of the host's /dev, as a privileged container gets it: its path under
    /dev, its number, and the host node's permission bits and owner."""

    path: str  # relative to /dev: "loop0", "net/tun"
    type: str  # "b" or "c"
    major: int
    minor: int
    mode: int  # permission bits only
    uid: int
    gid: int


# What runc's GetDevices (libcontainer/devices) leaves out of a privileged container's /dev:
# these directories are the container's own mounts or links, /dev/console is its terminal.
_SKIP_DIRS = frozenset(("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"))


def host_devices(root: str = "/dev") -> list[HostDevice]:
    """Every block and character device under the host's /dev, as Docker's --privileged
    puts them into the container's /dev (runc GetDevices: symlinks, fifos, sockets and
    /dev/console are not devices it copies; /dev/ptmx stays the container's devpts link)."""
    out: list[HostDevice] = []

    def walk(rel: str) -> None:
        try:
            entries = sorted(os.scandir(os.path.join(root, rel)), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            path = os.path.join(rel, entry.name) if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIP_DIRS:
                    walk(path)
                continue
            if entry.name == "console" or path == "ptmx":
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
                kind = "b" if stat.S_ISBLK(st.st_mode) else "c"
                out.append(
                    HostDevice(
                        path,
                        kind,
                        os.major(st.st_rdev),
                        os.minor(st.st_rdev),
                        stat.S_IMODE(st.st_mode),
                        st.st_uid,
                        st.st_gid,
                    )
                )

    walk("")
    return out


def v1_writes(rules: Sequence[DeviceRule]) -> list[tuple[str, str]]:
    """(file, value) writes that put `rules` into a v1 devices cgroup, in order."""
    return [("devices.allow" if r.allow else "devices.deny", str(r)) for r in rules]


def effective(rules: Sequence[DeviceRule]) -> tuple[bool, list[DeviceRule]]:
    """(default allow, the rules after the last 'a' rule): what the list means, as v1 keeps it."""
    default, kept = True, []  # a new cgroup allows everything until told otherwise
    for r in rules:
        if r.is_everything:
            default, kept = r.allow, []
        else:
            kept.append(r)
    return default, kept


__all__ = [
    "DeviceRule",
    "parse_rule",
    "device_policy",
    "container_policy",
    "v1_writes",
    "effective",
    "DEFAULT_ALLOW",
    "PRIVILEGED",
    "HostDevice",
    "host_devices",
]
