"""The backend registry: one function picks the implementation.

Backend modules import their libraries (docker, lxc) lazily, so `ctr --help`
and the native path never pay for them.
"""

from __future__ import annotations

import importlib

from ctr.errors import BackendUnavailable, InvalidSpec

from .base import Backend, BackendInfo
from .paths import Paths

# name -> (module, class, how to make it usable)
REGISTRY: dict[str, tuple[str, str]] = {
    "native": ("ctr.backends.native", "NativeBackend"),
    "lxc": ("ctr.backends.lxc", "LxcBackend"),
    "docker": ("ctr.backends.docker", "DockerBackend"),
}
DEFAULT_BACKEND = "native"


def backend_class(name: str) -> type[Backend]:
    try:
        module_name, class_name = REGISTRY[name]
    except KeyError:
        raise InvalidSpec(f"unknown backend {name!r}: choose one of {', '.join(REGISTRY)}") from None
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def probe(name: str) -> BackendInfo:
    """Whether backend `name` is usable here; never raises for a known name."""
    try:
        cls = backend_class(name)
    except ImportError as exc:  # a backend module that cannot even be imported
        return BackendInfo(name, False, f"cannot import its module: {exc}")
    return cls.probe()


def get_backend(name: str, paths: Paths | None = None) -> Backend:
    """The backend called `name`, ready to use, or BackendUnavailable saying what is missing."""
    cls = backend_class(name)
    info = cls.probe()
    if not info.usable:
        raise BackendUnavailable(f"backend {name} is not usable: {info.reason}")
    return cls(paths)


__all__ = ["Backend", "BackendInfo", "Paths", "REGISTRY", "DEFAULT_BACKEND", "backend_class", "probe", "get_backend"]
