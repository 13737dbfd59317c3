"""Where ctr keeps things: one data root (images, container records) and one run root.

Default as in the design: /var/lib/ctr for what must survive a reboot, /run/ctr
for runtime state that must not. `--root DIR` (or CTR_ROOT) puts both under DIR,
which is what tests and side-by-side installs want.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    data: Path
    run: Path

    @classmethod
    def default(cls, root: str | os.PathLike | None = None) -> "Paths":
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
