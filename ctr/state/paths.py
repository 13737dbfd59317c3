"""Where ctr keeps things: one data root (images, container records) and one run root.

Default as in the design: /var/lib/ctr for what must survive a reboot, /run/ctr
for runtime state that must not. `--root DIR` (or CTR_ROOT) puts both under DIR,
which is what tests and side-by-side installs want.
"""

from __future__ import annotations

import os
from pathlib import Path


class Paths:
    """A plain class, not a dataclass: every command builds one, and dataclasses costs start-up time."""

    __slots__ = ("data", "run")

    def __init__(self, data: Path, run: Path) -> None:
        self.data = Path(data)
        self.run = Path(run)

    def __repr__(self) -> str:
        return f"Paths(data={self.data!r}, run={self.run!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and (self.data, self.run) == (other.data, other.run)

    def __hash__(self) -> int:
        return hash((self.data, self.run))

    @classmethod
    def default(cls, root: str | os.PathLike | None = None) -> Paths:
        root = root or os.environ.get("CTR_ROOT")
        if root:
            root = Path(root).absolute()
            return cls(data=root, run=root / "run")
        return cls(data=Path("/var/lib/ctr"), run=Path("/run/ctr"))

    @property
    def images(self) -> Path:
        """The OCI image layout (blobs, index.json) shared by every backend."""
        return self.data / "images"

    @property
    def layers(self) -> Path:
        """Unpacked layers, one directory per layer diff_id, shared by native and lxc."""
        return self.data / "layers"

    @property
    def containers(self) -> Path:
        """Per-container records: spec, writable layer."""
        return self.data / "containers"

    @property
    def runtime(self) -> Path:
        """Per-container runtime state: pids, locks, mount points."""
        return self.run / "containers"
