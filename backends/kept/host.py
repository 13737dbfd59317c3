"""What the host must offer the backends that build containers themselves (native, lxc)."""

from __future__ import annotations

from pathlib import Path


def has_filesystem(name: str) -> bool:
    """Whether the kernel knows filesystem `name` (/proc/filesystems)."""
    try:
        return any(line.split()[-1] == name for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False
