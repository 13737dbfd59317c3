"""Resource limits of a container's cgroup, as both drivers take them, and their kernel units.

Limits is what the native backend asks for (from --memory, --cpus, --pids-limit); the
checks and the CPU quota arithmetic are the same for v1 and v2, only the files differ.
V1_UNLIMITED is also how `ctr explain` recognises v1's "no memory limit".
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr.errors import InvalidSpec

CPU_PERIOD_US = 100_000  # Docker's period: --cpus 0.5 is a 50 ms quota every 100 ms


# The kernel reports "no memory limit" as PAGE_COUNTER_MAX pages in bytes, which depends on
# the page size (9223372036854771712 with 4 KiB pages); nothing this large is a real limit.
V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Limits:
    """Resource limits; None leaves the kernel's default (no limit)."""

    memory: int | None = None  # bytes
    cpus: float | None = None  # 0.5 -> quota 50000 / period 100000
    pids: int | None = None  # -1 = unlimited


def check_limits(limits: Limits) -> None:
    if limits.memory is not None and limits.memory <= 0:
        raise InvalidSpec(f"memory limit {limits.memory}: must be positive")
    if limits.cpus is not None and limits.cpus <= 0:
        raise InvalidSpec(f"cpus {limits.cpus}: must be positive")
    if limits.pids is not None and limits.pids != -1 and limits.pids <= 0:
        raise InvalidSpec(f"pids limit {limits.pids}: must be positive, or -1 for unlimited")


def cpu_quota(cpus: float) -> int:
    return round(cpus * CPU_PERIOD_US)
