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


def resolve_user(spec: str, etc: str = "/etc", group_add: tuple[str, ...] = ()) -> User:
    """As runc's user.GetExecUser: numeric ids need no passwd entry, names must have one.

    `groups` is what Docker hands runc as the additional gids: the primary gid, the groups
    the user is a member of in /etc/group (unless a group was given), then --group-add
    (names or gids), each once."""
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
    extra = [gid]
    if username and not group_part:  # an explicit group replaces the supplementary ones, as in runc
        extra += [int(e[2]) for e in group if len(e) > 3 and username in e[3].split(",")]
    extra += additional_groups(group_add, group)
    return User(uid=uid, gid=gid, groups=tuple(dict.fromkeys(extra)), home=home or "/")


def additional_groups(names: tuple[str, ...], group: list[list[str]]) -> list[int]:
    """--group-add as runc's GetAdditionalGroups: a group's name or gid from /etc/group, else a bare number."""
    out = []
    for name in names:
        g = next((e for e in group if e[0] == name or e[2] == name), None)
        if g is not None:
            out.append(int(g[2]))
        elif name.isdigit() and int(name) <= 0x7FFFFFFF:
            out.append(int(name))
        else:
            raise InvalidSpec(f"Unable to find group {name}: no matching entries in group file")
    return out
