"""The image store: one OCI image layout that every backend runs from.

(Skeleton: the store's implementation is being written; the API below is fixed.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .paths import Paths


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that decide what a container runs."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""

    @classmethod
    def from_oci(cls, config: dict) -> "ImageConfig":
        """From an OCI/Docker image config JSON document (its "config" member)."""
        c = config.get("config") or {}
        return cls(
            entrypoint=tuple(c.get("Entrypoint") or ()),
            cmd=tuple(c.get("Cmd") or ()),
            env=tuple(c.get("Env") or ()),
            workdir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
        )

    def to_oci(self) -> dict:
        """The "config" member of an OCI image config."""
        out: dict = {}
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.env:
            out["Env"] = list(self.env)
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.user:
            out["User"] = self.user
        return out


@dataclass(frozen=True)
class Image:
    name: str  # normalized reference, e.g. "busybox:latest"
    digest: str  # manifest digest, "sha256:..."
    config_digest: str
    config: ImageConfig
    diff_ids: tuple[str, ...]  # uncompressed layer digests, bottom layer first
    layer_digests: tuple[str, ...]  # blob digests of the layers, bottom first


class ImageStore:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def get(self, ref: str) -> Image:
        raise NotImplementedError

    def layer_paths(self, image: Image) -> list[Path]:
        raise NotImplementedError

    def list(self) -> list[Image]:
        raise NotImplementedError

    def export_docker_archive(self, image: Image, out: BinaryIO) -> None:
        raise NotImplementedError
