"""What a container runs, as Docker decides it: the image config merged with the spec
(entrypoint, command, env, workdir, user), the process of an `exec`, a wait status as
an exit code, and how `stop` ends a container. Every backend shares these rules, so
they live below the backends."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from ctr.errors import InvalidSpec
from ctr.spec import ContainerSpec, parse_signal


class ImageDefaults(Protocol):
    """What an image says a container runs (ctr.images' ImageConfig has these fields)."""

    @property
    def entrypoint(self) -> tuple[str, ...]: ...
    @property
    def cmd(self) -> tuple[str, ...]: ...
    @property
    def env(self) -> tuple[str, ...]: ...
    @property
    def workdir(self) -> str: ...
    @property
    def user(self) -> str: ...


@dataclass(frozen=True)
class Process:
    """The process a container runs, after the image config and the spec are merged."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str  # "" for root, else "uid[:gid]" or "name[:group]" resolved in the container's root


def merge_env(base: tuple[str, ...] | list[str], override: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Docker's rule: the spec's KEY=VALUE replaces the image's entry of the same KEY."""
    merged: dict[str, str] = {}
    for entry in list(base) + list(override):
        key, _, value = entry.partition("=")
        merged[key] = value
    return tuple(f"{k}={v}" for k, v in merged.items())


def resolve_process(spec: ContainerSpec, config: ImageDefaults) -> Process:
    """Combine image config and spec as `docker run` does: --entrypoint clears the image's Cmd."""
    entrypoint = list(spec.entrypoint) if spec.entrypoint is not None else list(config.entrypoint)
    if spec.command:
        cmd = list(spec.command)
    elif spec.entrypoint is not None:
        cmd = []
    else:
        cmd = list(config.cmd)
    args = tuple(entrypoint + cmd)
    if not args:
        raise InvalidSpec(f"no command specified: image {spec.image} has no Cmd or Entrypoint")
    # The engine's order: its default PATH and HOSTNAME first, then the image's and the
    # spec's entries, each replacing one of the same name where it stands.
    defaults = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    if spec.hostname:
        defaults.append(f"HOSTNAME={spec.hostname}")
    env = merge_env(defaults, merge_env(config.env, spec.env))
    return Process(
        args=args,
        env=env,
        cwd=spec.workdir or config.workdir or "/",
        user=spec.user if spec.user is not None else (config.user or ""),
    )


DEFAULT_STOP_TIMEOUT = 10


def stop_plan(spec: dict, timeout: float | None) -> tuple[int, float | None]:
    """How `stop` ends a container whose record holds `spec`, as the engine's: its stop
    signal (SIGTERM), then SIGKILL after `timeout`, else its stop timeout, else 10 seconds;
    a negative one waits for ever (None)."""
    sig = parse_signal(spec["stop_signal"]) if spec.get("stop_signal") else 15
    if timeout is None:
        timeout = spec.get("stop_timeout")
        timeout = DEFAULT_STOP_TIMEOUT if timeout is None else timeout
    return sig, (None if timeout < 0 else timeout)


@dataclass(frozen=True)
class ExecSpec:
    """`ctr exec`: a further process in a running container; None means the container's own value."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    stdin: bool = False


def exit_status(status: int) -> int:
    """waitpid status -> Docker's exit code: the code itself, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)
