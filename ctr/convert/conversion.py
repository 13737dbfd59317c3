"""What every format of `ctr convert` converts through: the ctr spec as a dict (blank_spec),
a Conversion (that spec and a warning for each key that could not be carried), and the
parsing and deciding the formats share (sizes, users, capabilities, the command line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctr.errors import InvalidSpec
from ctr.spec import ContainerSpec, parse_capability

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000


def blank_spec() -> dict:
    """The ctr spec fields with their defaults; `image` empty until a format gives one."""
    return {
        "image": "",
        "command": [],
        "entrypoint": None,
        "env": [],
        "workdir": None,
        "user": None,
        "hostname": None,
        "mounts": [],
        "memory": None,
        "cpus": None,
        "pids_limit": None,
        "read_only": False,
        "cap_add": [],
        "cap_drop": [],
        "network": "none",
        "tty": False,
        "stdin": False,
        "name": None,
        "auto_remove": False,
        "labels": {},
    }


@dataclass
class Conversion:
    """A spec (ContainerSpec.to_dict form) and what could not be carried, key by key."""

    spec: dict = field(default_factory=blank_spec)
    warnings: list[str] = field(default_factory=list)

    def warn(self, key: str, why: str) -> None:
        self.warnings.append(f"{key}: {why}")


def spec_from(conv: Conversion, **overrides: Any) -> ContainerSpec:
    """The ContainerSpec of a conversion (mounts as Mount objects), with fields replaced."""
    d = {**conv.spec, **overrides}
    d["mounts"] = [m if isinstance(m, dict) else vars(m) for m in d.get("mounts") or []]
    return ContainerSpec.from_dict(d)


_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """A cgroup size ('268435456', '256M', '1g'); 'max' and -1 mean no limit (None)."""
    text = str(text).strip()
    if text in ("max", "-1", ""):
        return None
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]


def numeric_user(user: str | None) -> tuple[int, int] | None:
    """'1000:1000' or '1000' -> (uid, gid); None for names, which need the image's /etc/passwd."""
    if not user:
        return 0, 0
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid or 0)
    return None


def caps_from_set(caps: list[str]) -> tuple[list[str], list[str]]:
    """An explicit capability set as ctr's cap_add/cap_drop: drop ALL, add exactly these."""
    return list(caps), ["ALL"]


def effective_caps(spec: dict) -> list[str]:
    return list(_spec_obj(spec).capabilities())


def _spec_obj(spec: dict) -> ContainerSpec:
    """A ContainerSpec for rule-based questions (capabilities), whatever the image."""
    d = dict(spec)
    d["image"] = d.get("image") or "scratch"
    return ContainerSpec.from_dict(d)


def resolved_process(
    spec: dict, resolve: Callable[[str], Any] | None
) -> tuple[list[str], list[str], str | None, str | None, bool]:
    """(args, env, cwd, user, complete): the command line as the container runs it.

    With the image's config at hand (resolve), it is merged as every backend merges
    it. Without, only the spec's own parts; `complete` then says whether the image
    could still add to the command: it can unless the spec sets the entrypoint (which
    also clears the image's Cmd) or names no image at all."""
    from ctr.process import resolve_process

    config = resolve(spec["image"]) if spec.get("image") and resolve is not None else None
    if config is not None:
        try:
            p = resolve_process(_spec_obj(spec), config)
            return list(p.args), list(p.env), p.cwd, p.user or None, True
        except InvalidSpec:
            pass
    entry = spec.get("entrypoint")
    args = list(entry or []) + list(spec.get("command") or [])
    complete = not spec.get("image") or entry is not None
    return args, list(spec.get("env") or []), spec.get("workdir"), spec.get("user"), complete


def is_default(value: Any) -> bool:
    return value in (None, "", [], {}, 0, False)


def parse_caps(conv: Conversion, key: str, names: list[str]) -> list[str]:
    """The capabilities among `names` (any source's spelling); the rest become warnings."""
    out = []
    for name in names:
        try:
            out.append(parse_capability(name))
        except InvalidSpec:
            conv.warn(f"{key} {name}", "not a capability ctr knows")
    return out


def security_warnings(spec: dict, fmt: str) -> list[str]:
    """--privileged and --security-opt, which ctr's lxc and OCI writers do not translate:
    ctr's own backends apply them (ctr run --privileged / --security-opt)."""
    out = []
    if spec.get("privileged"):
        out.append(f"privileged = true: not carried into the {fmt}; ctr run --privileged applies it on every backend")
    for opt in spec.get("security_opt") or []:
        out.append(f"security_opt {opt}: not carried into the {fmt}; ctr run --security-opt applies it")
    return out
