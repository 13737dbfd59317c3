"""Capabilities and no_new_privs for the container's process, as runc applies them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctr.spec import CAPABILITIES

if TYPE_CHECKING:
    from ctr.spec import ContainerSpec

from ctr.native import syscalls


def mask(names: tuple[str, ...] | list[str]) -> int:
    """Bit mask of capability names ('CAP_CHOWN' is bit 0)."""
    m = 0
    for name in names:
        m |= 1 << CAPABILITIES.index(name)
    return m


def names(m: int) -> list[str]:
    """Capability names in mask `m`, unknown bits as 'cap_N'."""
    out = []
    for bit in range(64):
        if m >> bit & 1:
            out.append(CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"cap_{bit}")
    return out


def drop_bounding_set(keep: int) -> None:
    """Remove every capability not in `keep` from the bounding set; needs CAP_SETPCAP, so call first."""
    for bit in range(syscalls.cap_last_cap() + 1):
        if not keep >> bit & 1:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, bit)


def apply(keep: int, uid: int) -> None:
    """Final capability sets: root keeps `keep` as effective and permitted; any other
    uid gets empty sets (Docker's behaviour for non-root users); inheritable and
    ambient are always empty (the fix for CVE-2022-24769)."""
    if uid == 0:
        syscalls.capset(keep, keep, 0)
    else:
        syscalls.capset(0, 0, 0)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)


def set_no_new_privs() -> None:
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def own_bounding_set() -> int:
    """The bounding set of this process (CapBnd of /proc/self/status): the most a child can hold."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    raise OSError(2, "no CapBnd line", "/proc/self/status")


def grantable(m: int) -> int:
    """`m` less what this process cannot pass on: a privileged container gets every
    capability the kernel knows and ctr holds (a host that lacks one, as a sandbox whose
    bounding set has no CAP_SYS_RESOURCE, cannot give it to any container; Podman's
    --privileged follows the same rule)."""
    return m & own_bounding_set() & ((1 << (syscalls.cap_last_cap() + 1)) - 1)


def container_mask(spec: ContainerSpec) -> int:
    """The capability mask of a container's root: its spec's set, or under --privileged
    every capability this process can pass on."""
    m = mask(spec.capabilities())
    return grantable(m) if spec.privileged else m
