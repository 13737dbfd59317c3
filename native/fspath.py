"""Resolve a path inside a container root without ever leaving it.

Symlinks are followed as the container would see them: an absolute link
restarts at the root, `..` stops at the root (the rule of runc's securejoin and
of `docker cp`). Used for mount targets, workdir and cp.
"""

from __future__ import annotations

import os

MAX_LINKS = 255


def resolve_in_root(root: str, path: str) -> str:
    """Host path for container `path` under `root`; never outside `root`."""
    root = os.path.abspath(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            links += 1
            if links > MAX_LINKS:
                raise OSError(40, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)
