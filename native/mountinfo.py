"""/proc/PID/mountinfo, parsed in one place for all who read it: the cgroup drivers,
`ctr explain`, and liblxc's cgroup lookups. proc(5) gives the format; the kernel
escapes space, tab, newline and backslash (and ',' in options) as \\ooo."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    device: str  # "major:minor": the same filesystem mounted twice has the same one
    root: str  # the path inside the filesystem that is mounted here
    mount_point: str  # as the reading process sees it
    mount_options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]


def unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse(text: str) -> list[MountEntry]:
    """Every mount, in the kernel's order (a later mount on the same point hides earlier ones)."""
    entries = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 6:
            continue  # not a mountinfo line
        fstype, source, super_opts = (right.split(" ") + ["", ""])[:3]
        entries.append(
            MountEntry(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                device=fields[2],
                root=unescape(fields[3]),
                mount_point=unescape(fields[4]),
                mount_options=tuple(fields[5].split(",")),
                fstype=fstype,
                source=unescape(source),
                super_options=tuple(unescape(o) for o in super_opts.split(",")) if super_opts else (),
            )
        )
    return entries


def visible(entries: list[MountEntry]) -> dict[str, MountEntry]:
    """Mount point -> the mount visible there: the last one mounted on it."""
    return {e.mount_point: e for e in entries}
