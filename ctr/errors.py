"""The one exception tree of ctr.

Every error a user can see derives from CtrError and carries the exit code the
CLI should return, following Docker: 125 for ctr's own failures, 126 when the
command cannot be executed, 127 when it does not exist.
"""

from __future__ import annotations


class CtrError(Exception):
    """Root of ctr's errors; the message is one lower-case line naming the culprit."""

    exit_code = 125


class NotFound(CtrError):
    """A container, image or file that was asked for does not exist."""


class Conflict(CtrError):
    """The object exists already, or is in a state that forbids the operation."""


class InvalidSpec(CtrError):
    """User input (a flag, a name, a size) is malformed or out of range."""


class BackendUnavailable(CtrError):
    """A backend cannot be used on this machine; the message says how to fix that."""


class Unsupported(CtrError):
    """A backend cannot honour a feature; it says so instead of ignoring it."""

    def __init__(self, backend: str, feature: str, detail: str = "") -> None:
        self.backend = backend
        self.feature = feature
        msg = f"the {backend} backend does not support {feature}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class CommandNotFound(CtrError):
    """The container's command does not exist in its root filesystem."""

    exit_code = 127


class CommandNotExecutable(CtrError):
    """The container's command exists but cannot be executed."""

    exit_code = 126


def os_reason(exc: OSError) -> str:
    """The OS's words for a failed call, lower-case as ctr's messages give them:
    "no such file or directory" (an OSError made without strerror: its text)."""
    return (exc.strerror or str(exc)).lower()


__all__ = [
    "CtrError",
    "NotFound",
    "Conflict",
    "InvalidSpec",
    "BackendUnavailable",
    "Unsupported",
    "CommandNotFound",
    "CommandNotExecutable",
    "os_reason",
]
