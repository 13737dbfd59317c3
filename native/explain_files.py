"""How `ctr explain` reads the kernel's files: whatever bytes they hold, and files that may be absent.

Shared by the document's sections (ctr.native.explain, ctr.native.explain_cgroups).
"""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path) -> str:
    # comm and cmdline are whatever bytes the process chose: never fail on them
    return path.read_text(errors="replace")


def read_optional(path: Path) -> str | None:
    """A file the kernel may not have (old kernel, controller not enabled): None when absent."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None
