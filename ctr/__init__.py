"""ctr: run one container spec on several container implementations.

The public API: connect() to a backend, ContainerSpec, and the errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctr.errors import (
    BackendUnavailable,
    CommandNotExecutable,
    CommandNotFound,
    Conflict,
    CtrError,
    InvalidSpec,
    NotFound,
    Unsupported,
)

if TYPE_CHECKING:
    from ctr.spec import ContainerSpec, Mount


def __getattr__(name: str):
    # ContainerSpec pulls in dataclasses (and with it inspect): only pay for it when used,
    # so that `ctr --help` and commands that never build a spec start faster.
    if name in ("ContainerSpec", "Mount"):
        from ctr import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'ctr' has no attribute {name!r}")


def migrate(container, to: str = "docker", keep: bool = False, name: str | None = None, stop: bool = False):
    """Move a Container to backend `to`, files and spec, checked; returns the new Container."""
    from ctr.api import migrate as _migrate

    return _migrate(container, to=to, keep=keep, name=name, stop=stop)


def connect(backend: str = "native", root: str | None = None):
    """A Client of the backend called `backend` ('native', 'lxc' or 'docker'), ready to run
    containers: `.containers` as objects, the Backend's own methods beside them."""
    from ctr.api import Client
    from ctr.backends import get_backend
    from ctr.state.paths import Paths

    return Client(get_backend(backend, Paths.default(root)))


__all__ = [
    "connect",
    "migrate",
    "ContainerSpec",
    "Mount",
    "CtrError",
    "NotFound",
    "Conflict",
    "InvalidSpec",
    "BackendUnavailable",
    "Unsupported",
    "CommandNotFound",
    "CommandNotExecutable",
]
