"""`--change` lines of `ctr image import`: the Dockerfile instructions (CMD, ENTRYPOINT,
ENV, LABEL, USER, WORKDIR) that give an imported root filesystem its image config,
read by Docker's rules (shell words, $VAR expansion).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence

from ctr.errors import InvalidSpec
from ctr.images.model import ImageConfig

CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "LABEL", "USER", "WORKDIR")


def parse_changes(changes: Sequence[str]) -> tuple[ImageConfig, dict[str, str]]:
    """`--change` lines, in Dockerfile syntax, as (image config, labels).

    CMD and ENTRYPOINT take the JSON (exec) form `["sh", "-c", "x"]` or the
    shell form, which becomes `/bin/sh -c '...'`; ENV takes `K=V K2="v 2"` or
    the legacy `K some value`; ENV, LABEL, USER and WORKDIR expand $VAR and
    ${VAR} (also ${VAR:-default}, ${VAR:+alt}) from the ENV lines before them; a
    relative WORKDIR is taken from the previous one.
    """
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    workdir, user = "", ""
    for change in changes:
        line = change.strip()
        if not line:
            continue
        instr, _, rest = line.replace("\t", " ").partition(" ")
        instr, rest = instr.upper(), line[len(instr) :].strip()
        if instr not in CHANGE_INSTRUCTIONS:
            raise InvalidSpec(
                f"--change {change!r}: {instr} is not supported; use one of {', '.join(CHANGE_INSTRUCTIONS)}"
            )
        if not rest and instr not in ("CMD", "ENTRYPOINT"):
            raise InvalidSpec(f"--change {change!r}: {instr} needs an argument")
        if instr in ("CMD", "ENTRYPOINT"):
            args = _exec_or_shell(rest, change)
            if instr == "CMD":
                cmd = args
            else:
                entrypoint = args
        elif instr in ("ENV", "LABEL"):
            pairs = _key_values(rest, env, change, instr)
            (env if instr == "ENV" else labels).update(pairs)
        elif instr == "WORKDIR":
            path = _words(rest, env, change, split=False)[0]
            workdir = posixpath.normpath(posixpath.join(workdir or "/", path))
        else:
            user = _words(rest, env, change, split=False)[0]
            if not user:
                raise InvalidSpec(f"--change {change!r}: USER needs a user name or uid")
    config = ImageConfig(
        entrypoint=entrypoint, cmd=cmd, env=tuple(f"{k}={v}" for k, v in env.items()), workdir=workdir, user=user
    )
    return config, labels


def _exec_or_shell(rest: str, change: str) -> tuple[str, ...]:
    if rest.startswith("["):
        try:
            args = json.loads(rest)
        except ValueError:
            args = None  # Docker too treats a malformed JSON array as the shell form
        if isinstance(args, list) and all(isinstance(a, str) for a in args):
            return tuple(args)
    if not rest:
        raise InvalidSpec(f'--change {change!r}: needs a command, in JSON form ["cmd", "arg"] or shell form')
    return ("/bin/sh", "-c", rest)


def _key_values(rest: str, env: dict[str, str], change: str, instr: str) -> dict[str, str]:
    first, *more = rest.split(None, 1)
    if "=" not in first:  # the legacy form: ENV KEY the rest of the line
        key, value = first, (more[0] if more else "")
        if not value.strip():
            raise InvalidSpec(f"--change {change!r}: {instr} needs KEY=VALUE (or KEY VALUE)")
        return {key: _words(value.strip(), env, change, split=False)[0]}
    out: dict[str, str] = {}
    for word in _words(rest, env, change, split=True):
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidSpec(f"--change {change!r}: {word!r} is not KEY=VALUE")
        out[key] = value
    return out


def _words(text: str, env: dict[str, str], change: str, split: bool) -> list[str]:
    """Docker's shell-word rules: quotes, backslash escapes, $VAR expansion (not in single quotes)."""
    words: list[str] = []
    cur: list[str] = []
    started = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if split and ch in " \t":
            if started:
                words.append("".join(cur))
                cur, started = [], False
            i += 1
            continue
        started = True
        if ch == "\\":
            if i + 1 < n:
                cur.append(text[i + 1])
                i += 2
            else:
                cur.append(ch)
                i += 1
        elif ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise InvalidSpec(f"--change {change!r}: unterminated single quote")
            cur.append(text[i + 1 : end])
            i = end + 1
        elif ch == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$':
                    cur.append(text[i + 1])
                    i += 2
                elif text[i] == "$":
                    value, i = _expand(text, i, env, change)
                    cur.append(value)
                else:
                    cur.append(text[i])
                    i += 1
            if i >= n:
                raise InvalidSpec(f"--change {change!r}: unterminated double quote")
            i += 1
        elif ch == "$":
            value, i = _expand(text, i, env, change)
            cur.append(value)
        else:
            cur.append(ch)
            i += 1
    if started or not split:
        words.append("".join(cur))
    return words


def _expand(text: str, i: int, env: dict[str, str], change: str) -> tuple[str, int]:
    """Expand the variable at text[i] == '$'; returns (value, index after it)."""
    import re

    if text.startswith("${", i):
        end = text.find("}", i)
        if end < 0:
            raise InvalidSpec(f"--change {change!r}: missing '}}' in {text[i:]!r}")
        body = text[i + 2 : end]
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?", body, re.S)
        if not m:
            raise InvalidSpec(f"--change {change!r}: bad substitution ${{{body}}}")
        name, op, word = m.groups()
        value = env.get(name, "")
        if op == "-":
            value = value or word
        elif op == "+":
            value = word if value else ""
        return value, end + 1
    m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, i + 1)
    if not m:
        return "$", i + 1
    return env.get(m.group(0), ""), m.end()
