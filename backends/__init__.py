"""The backend registry: one function picks the implementation.

Backend modules import their libraries (docker, lxc) lazily, so `ctr --help`
and the native path never pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ctr.errors import CtrError, InvalidSpec, NotFound
from ctr.state.paths import Paths

if TYPE_CHECKING:
    from ctr.backends.base import Backend, BackendInfo


def __getattr__(name: str):
    # The interface module pulls in the spec and the image store; only load it when used.
    if name in ("Backend", "BackendInfo"):
        from ctr.backends import base

        return getattr(base, name)
    raise AttributeError(f"module 'ctr.backends' has no attribute {name!r}")


# name -> (module, class, how to make it usable)
REGISTRY: dict[str, tuple[str, str]] = {
    "native": ("ctr.backends.native.backend", "NativeBackend"),
    "lxc": ("ctr.backends.lxc.backend", "LxcBackend"),
    "docker": ("ctr.backends.docker.backend", "DockerBackend"),
}
DEFAULT_BACKEND = "native"
# Backends that move a container's processes into cgroups themselves (the engine does its
# own): the CLI primes the kernel's first cgroup attach for them (ctr.native.cgroups).
ATTACHES_CGROUPS = frozenset({"native", "lxc"})


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
        from ctr.backends.base import BackendInfo  # at run time too: the TYPE_CHECKING import is not

        return BackendInfo(name, False, f"cannot import its module: {exc}")
    return cls.probe()


def get_backend(name: str, paths: Paths | None = None) -> Backend:
    """The backend called `name`, ready to use, or BackendUnavailable saying what is missing."""
    return backend_class(name).ready(paths)


def backend_for(name: str, paths: Paths) -> Backend:
    """The backend that made container `name`, read from ctr's record of it."""
    from ctr.state.records import RecordStore

    return get_backend(RecordStore(paths).load(name).backend, paths)


def all_records(paths: Paths, backend: str | None = None):
    """Every container of ctr's, each with its status read live by its own backend.

    A backend that is unusable right now (engine down) still lists its containers,
    with status "unknown", rather than hiding them."""
    from ctr.state.records import RecordStore

    records = RecordStore(paths).list()
    backends: dict = {}
    out = []
    for record in records:
        if backend and record.backend != backend:
            continue
        if record.backend not in backends:
            try:
                backends[record.backend] = get_backend(record.backend, paths)
            except CtrError:
                backends[record.backend] = None
        b = backends[record.backend]
        if b is None:
            record.status = "unknown"
            out.append(record)
            continue
        try:
            out.append(b.get(record.name))
        except NotFound:
            continue  # removed while we listed
    return out


__all__ = [
    "Backend",
    "BackendInfo",
    "Paths",
    "REGISTRY",
    "DEFAULT_BACKEND",
    "ATTACHES_CGROUPS",
    "backend_class",
    "probe",
    "get_backend",
    "backend_for",
    "all_records",
]
