"""The mount sections of `ctr explain`: the root filesystem, and the paths Docker masks or makes read-only.

Everything is derived from the process's /proc/PID/mountinfo (ctr.native.mountinfo
parses it), plus whether a path exists in the process's root.
"""

from __future__ import annotations

import os
from pathlib import Path

from ctr.native import mountinfo
from ctr.native.rootfs import MASKED_PATHS, READONLY_PATHS  # what the native runtime hides: what explain looks for


def parse_mountinfo(text: str) -> list[dict]:
    """/proc/PID/mountinfo, in order, as explain's JSON has it; paths are as the process sees them."""
    return [
        {
            "mount_id": e.mount_id,
            "parent_id": e.parent_id,
            "root": e.root,
            "mount_point": e.mount_point,
            "mount_options": list(e.mount_options),
            "fstype": e.fstype,
            "source": e.source,
            "super_options": list(e.super_options),
        }
        for e in mountinfo.parse(text)
    ]


def _covering(mounts: list[dict], path: str) -> dict | None:
    """The mount `path` lies on: the longest mount point above it, the last one when stacked."""
    best = None
    for m in mounts:
        mp = m["mount_point"]
        if path == mp or mp == "/" or path.startswith(mp + "/"):
            if best is None or len(mp) >= len(best["mount_point"]):
                best = m
    return best


def _read_only(m: dict) -> bool:
    return "ro" in m["mount_options"] or "ro" in m["super_options"]


def rootfs_of(mounts: list[dict]) -> dict | None:
    root = [m for m in mounts if m["mount_point"] == "/"]
    if not root:
        return None  # a chroot into a directory that is no mount point: no mount at "/"
    m = root[-1]
    overlay = None
    if m["fstype"] == "overlay":
        opts = dict(o.split("=", 1) for o in m["super_options"] if "=" in o)
        overlay = {
            "lowerdir": opts["lowerdir"].split(":") if "lowerdir" in opts else [],
            "upperdir": opts.get("upperdir"),
            "workdir": opts.get("workdir"),
        }
    return {
        "fstype": m["fstype"],
        "source": m["source"],
        "root": m["root"],
        "mount_options": m["mount_options"],
        "super_options": m["super_options"],
        "read_only": _read_only(m),
        "overlay": overlay,
    }


def _present(root: Path, path: str) -> bool | None:
    """Does `path` exist in the process's root (Docker masks only what exists)?"""
    try:
        os.lstat(root / path.lstrip("/"))
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return None


def masked_paths(mounts: list[dict], root: Path) -> list[dict]:
    out = []
    for path in MASKED_PATHS:
        m = _covering(mounts, path)
        by = None
        if m is not None and m["mount_point"] == path:
            if m["root"].endswith("/null"):
                by = "/dev/null"
            elif m["fstype"] == "tmpfs":
                by = "tmpfs"
        out.append({"path": path, "present": _present(root, path), "masked": by is not None, "by": by})
    return out


def readonly_paths(mounts: list[dict], root: Path) -> list[dict]:
    out = []
    for path in READONLY_PATHS:
        m = _covering(mounts, path)
        out.append(
            {
                "path": path,
                "present": _present(root, path),
                "read_only": _read_only(m) if m else None,
                "mount_point": m["mount_point"] if m else None,
            }
        )
    return out
