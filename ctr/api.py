"""Containers as Python objects: what `ctr.connect()` returns, and `ctr.migrate()`.

    import ctr

    lxc = ctr.connect("lxc")
    web = lxc.containers.run(ctr.ContainerSpec("busybox", command=["sleep", "600"], name="web"))
    web.exec(["touch", "/tmp/x"])
    moved = ctr.migrate(web, to="docker", stop=True)   # same name, now on docker, running
    print(moved.backend.name, moved.status)

connect() gives a Client, as docker-py's DockerClient over its APIClient: `.containers`
holds Container objects, `.backend` is the Backend (backends/base.py) the CLI uses, and
every other attribute is the Backend's own (run, create, list, name, paths ...), so code
written against the Backend keeps working. A Container is a handle: name and client. Its status, spec and id are read from
ctr's record when asked (refresh() re-reads), and every method delegates to the
backend, which raises CtrError subclasses (NotFound, Conflict, Unsupported...).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctr.spec import ContainerSpec

if TYPE_CHECKING:
    from ctr.backends.base import Backend
    from ctr.state.logs import LogEntry
    from ctr.state.records import Record


@dataclass(frozen=True)
class ExecResult:
    """What exec_output() captured."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class Container:
    """One container of one backend."""

    def __init__(self, backend: Backend | Client, record: Record) -> None:
        self.backend = backend
        self._record = record

    # what it is

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def short_id(self) -> str:
        return self._record.short_id

    @property
    def record(self) -> Record:
        """ctr's record as last read (refresh() reads it again)."""
        return self._record

    @property
    def spec(self) -> ContainerSpec:
        return ContainerSpec.from_dict(self._record.spec)

    @property
    def image(self) -> str:
        return self._record.image or self._record.spec.get("image", "")

    @property
    def status(self) -> str:
        """'created', 'running', 'paused' or 'exited', read live from the backend."""
        return self.refresh()._record.status

    @property
    def exit_code(self) -> int | None:
        return self._record.exit_code

    def refresh(self) -> Container:
        self._record = self.backend.get(self._record.name)
        return self

    def __repr__(self) -> str:
        return f"<Container {self.name} on {self.backend.name} ({self._record.status})>"

    # what it does

    def start(self) -> Container:
        from ctr.transfer.migrate import start

        start(_backend_of(self.backend), self.name)  # with this process's garbage collected first: see there
        return self.refresh()

    def stop(self, timeout: float | None = None) -> Container:
        """--stop-signal, then SIGKILL after `timeout` seconds (None: the container's --stop-timeout, else 10)."""
        self.backend.stop(self.name, timeout)
        return self.refresh()

    def kill(self, signal: int = 9) -> None:
        self.backend.kill(self.name, signal)

    def remove(self, force: bool = False) -> None:
        self.backend.remove(self.name, force=force)

    def wait(self) -> int:
        """Until it exits; its exit code."""
        return self.backend.wait(self.name)

    def exec(
        self, args: Sequence[str], *, env: Sequence[str] = (), workdir: str | None = None, user: str | None = None
    ) -> int:
        """Run a further process in it (on the caller's stdio); its exit code."""
        from ctr.process import ExecSpec

        return self.backend.exec(self.name, ExecSpec(args=tuple(args), env=tuple(env), workdir=workdir, user=user))

    def exec_output(self, args: Sequence[str], **kw) -> ExecResult:
        """exec() with stdout and stderr captured. Backends hand a process the caller's
        file descriptors 1 and 2, so these are pointed at files meanwhile: do not call it
        while other threads of the program write to stdout."""
        with _captured() as (out, err):
            code = self.exec(args, **kw)
        return ExecResult(code, out.read(), err.read())

    def logs(self, follow: bool = False, tail: int | None = None) -> Iterator[LogEntry]:
        return self.backend.logs(self.name, follow=follow, tail=tail)

    def output(self) -> bytes:
        """Everything it wrote to stdout and stderr so far, in order."""
        return b"".join(entry.data for entry in self.logs())

    def inspect(self) -> dict:
        from ctr.inspect import inspect_document

        return inspect_document(_backend_of(self.backend), self.name)


def _backend_of(handle: Backend | Client) -> Backend:
    return handle.backend if isinstance(handle, Client) else handle


class _captured:
    """fds 0, 1 and 2 -> /dev/null and two temp files, restored afterwards."""

    def __enter__(self):
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        self.files = (tempfile.TemporaryFile(), tempfile.TemporaryFile())
        self.saved = [os.dup(fd) for fd in (0, 1, 2)]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(self.files[0].fileno(), 1)
        os.dup2(self.files[1].fileno(), 2)
        return self.files

    def __exit__(self, *exc) -> None:
        for fd, saved in zip((0, 1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        for f in self.files:
            f.seek(0)


class Client:
    """One backend, ready to use: `.containers` are its containers as objects, `.backend` the
    Backend itself; any other attribute is the Backend's."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.containers = Containers(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def __repr__(self) -> str:
        return f"<ctr.Client {self.backend.name}>"


class Containers:
    """The containers of one backend: `client.containers`."""

    def __init__(self, backend: Backend | Client) -> None:
        self.backend = backend

    def list(self, all: bool = True) -> list[Container]:
        """This backend's containers (with `all=False`, only running or paused ones)."""
        return [Container(self.backend, r) for r in self.backend.list() if all or r.status in ("running", "paused")]

    def get(self, name: str) -> Container:
        """NotFound when there is none; a container of another backend is NotFound here too."""
        from ctr.errors import NotFound

        record = self.backend.get(name)
        if record.backend != self.backend.name:
            raise NotFound(f"no such container on the {self.backend.name} backend: {name} (it is on {record.backend})")
        return Container(self.backend, record)

    def create(self, spec: ContainerSpec) -> Container:
        """Created, not started."""
        return Container(self.backend, self.backend.create(spec))

    def run(self, spec: ContainerSpec) -> Container:
        """Created and started in the background (a foreground run is backend.run(spec))."""
        import gc

        gc.collect()  # before the backend forks its monitor: see migrate.start
        record = self.backend.run_detached(spec)
        return Container(self.backend, record).refresh()

    def __iter__(self) -> Iterator[Container]:
        return iter(self.list())


def migrate(
    container: Container, to: str = "docker", keep: bool = False, name: str | None = None, stop: bool = False
) -> Container:
    """Move `container` to the backend `to`, filesystem and spec, checked by tree digest.

    A running container needs stop=True (it is stopped, then started on the target).
    keep=True leaves the source (stopped) and needs another `name`. On any failure the
    source is left as it was and nothing is left on the target. Returns the new container."""
    from ctr.backends import get_backend
    from ctr.transfer.migrate import migrate as _migrate

    result = _migrate(container.backend.paths, container.name, to, keep=keep, new_name=name, stop=stop)
    target = Client(get_backend(result.target_backend, container.backend.paths))
    return Container(target, result.record)


__all__ = ["Client", "Container", "Containers", "ExecResult", "migrate"]
