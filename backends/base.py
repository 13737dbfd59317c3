"""The Backend interface: three implementations (native, lxc, docker) of one contract.

A backend takes a ContainerSpec and makes the container with its own machinery;
what the process inside sees (command, env, cwd, user) is decided once, here,
by resolve_process(), so that the image's config means the same on all three.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from ctr.errors import InvalidSpec
from ctr.spec import ContainerSpec

from .images import ImageConfig
from .paths import Paths


@dataclass(frozen=True)
class BackendInfo:
    """What `ctr backends` prints: whether it is usable here, and the versions behind it."""

    name: str
    usable: bool
    reason: str = ""
    versions: dict[str, str] = field(default_factory=dict)


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


def resolve_process(spec: ContainerSpec, config: ImageConfig) -> Process:
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
    env = merge_env(config.env, spec.env)
    if not any(e.startswith("PATH=") for e in env):
        env = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",) + env
    if spec.hostname and not any(e.startswith("HOSTNAME=") for e in env):
        env = env + (f"HOSTNAME={spec.hostname}",)
    return Process(
        args=args,
        env=env,
        cwd=spec.workdir or config.workdir or "/",
        user=spec.user if spec.user is not None else (config.user or ""),
    )


def check_mount_sources(spec: ContainerSpec) -> None:
    """Docker would create a missing source; ctr refuses it, since a typo should not make a directory."""
    for m in spec.mounts:
        if not os.path.exists(m.source):
            raise InvalidSpec(f"invalid volume {m}: source {m.source} does not exist")


class Backend(ABC):
    """One container implementation. Methods raise CtrError subclasses, never return False."""

    name: ClassVar[str]

    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths.default()

    @classmethod
    @abstractmethod
    def probe(cls) -> BackendInfo:
        """Whether this backend can run here, and why not; never raises."""

    @abstractmethod
    def run(self, spec: ContainerSpec) -> int:
        """Run a container in the foreground on ctr's own stdin/stdout/stderr.

        Returns the exit status with Docker's conventions (128+N for signal N).
        Errors before the command starts raise CtrError (exit_code 125/126/127).
        """
