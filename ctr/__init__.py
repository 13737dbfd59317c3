"""ctr: run one container spec on several container implementations.

The public API: connect() to a backend, ContainerSpec, and the errors.
"""

from __future__ import annotations

from .errors import BackendUnavailable, CommandNotExecutable, CommandNotFound, Conflict, CtrError, InvalidSpec, NotFound, Unsupported
from .spec import ContainerSpec, Mount


def connect(backend: str = "native", root: str | None = None):
    """The backend called `backend` ('native', 'lxc' or 'docker'), ready to run containers."""
    from ctr.backends import get_backend
    from ctr.backends.paths import Paths

    return get_backend(backend, Paths.default(root))


__all__ = [
    "connect", "ContainerSpec", "Mount", "CtrError", "NotFound", "Conflict", "InvalidSpec",
    "BackendUnavailable", "Unsupported", "CommandNotFound", "CommandNotExecutable",
]
