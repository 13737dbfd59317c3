"""Turn `-u name|uid[:group|gid]` into numbers using the container's own /etc files."""

from __future__ import annotations

from dataclasses import dataclass

from ctr.errors import InvalidSpec


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _read(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def resolve_user(spec: str, etc: str = "/etc") -> User:
    """As runc's user.GetExecUser: numeric ids need no passwd entry, names must have one."""
    passwd = [e for e in _read(f"{etc}/passwd") if len(e) >= 7]
    group = [e for e in _read(f"{etc}/group") if len(e) >= 3]
    user_part, _, group_part = (spec or "0").partition(":")

    entry = None
    if user_part.isdigit():
        uid = int(user_part)
        entry = next((e for e in passwd if e[2] == user_part), None)
    else:
        entry = next((e for e in passwd if e[0] == user_part), None)
        if entry is None:
            raise InvalidSpec(f"unable to find user {user_part}: no matching entries in passwd file")
        uid = int(entry[2])
    gid = int(entry[3]) if entry else 0
    home = entry[5] if entry else "/"
    username = entry[0] if entry else None

    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((e for e in group if e[0] == group_part), None)
            if g is None:
                raise InvalidSpec(f"unable to find group {group_part}: no matching entries in group file")
            gid = int(g[2])
    extra: tuple[int, ...] = ()
    if username and not group_part:  # an explicit group replaces the supplementary ones, as in runc
        extra = tuple(int(e[2]) for e in group if len(e) > 3 and username in e[3].split(",") and int(e[2]) != gid)
    return User(uid=uid, gid=gid, groups=extra, home=home or "/")
