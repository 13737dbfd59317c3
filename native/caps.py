"""Capabilities and no_new_privs for the container's process, as runc applies them."""

from __future__ import annotations

from ctr.spec import CAPABILITIES

from . import syscalls


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
