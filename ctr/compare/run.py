"""`ctr compare`: one ContainerSpec on several backends, and what the kernel says about each.

For every backend, two containers are made from the same spec:

- the explain run: the spec with its command replaced by `sleep 600` (entrypoint
  cleared), so that even `true` stays up long enough to be read. It is started
  detached; its main pid (backend.get(name).pid) is explained from /proc by
  ctr.native.explain.explain_pid, its keeper's resident memory is taken from the
  explain document's keeper chain, and its writable layer is measured on disk.
  It goes first, so that one-time costs (the image loaded into an engine, pages
  read from disk) do not land in the timings;
- the timing run: the spec as given, create -> start -> wait, each step timed.

Both are removed whatever happens (an error, Ctrl-C). Their names are fixed here
before anything is made, so a container whose create() was interrupted half-way
is still found and removed by name.

The result is one JSON-able dict (docs/compare-schema.md) holding the explain
documents, the timings, and the rows of the side-by-side table with the rows on
which the backends differ marked (ctr.compare.rows); render_text and render_html render it.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ctr.backends import REGISTRY, backend_class, probe
from ctr.backends.base import Backend, BackendInfo
from ctr.compare.rows import build_rows, keeper_of
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
from ctr.spec import ContainerSpec, validate_name
from ctr.state.paths import Paths
from ctr.state.records import RecordStore, process_start_time

SCHEMA_VERSION = 1

# What the explain run runs instead of the spec's command: long enough to be read at
# leisure, short enough that a container leaked by a SIGKILLed ctr ends by itself.
EXPLAIN_COMMAND = ("sleep", "600")
EXEC_WAIT = 10.0  # seconds to wait for the explain run's pid to become the sleep

Step = Callable[[str, str], None]  # on_step(backend, what is starting)

# -- running ---------------------------------------------------------------------------


def select_backends(names: Sequence[str] | None) -> list[BackendInfo]:
    """The backends to compare: those named (each must be usable), else every usable one.

    A named backend that is unknown raises InvalidSpec, one that is unusable here
    BackendUnavailable with the probe's reason; both are exit code 125 in the CLI.
    """
    if names:
        infos = []
        for name in dict.fromkeys(names):  # once each, in the order given
            backend_class(name)  # InvalidSpec for a name that is no backend
            info = probe(name)
            if not info.usable:
                raise BackendUnavailable(f"backend {name} is not usable: {info.reason}")
            infos.append(info)
        return infos
    infos = [probe(name) for name in REGISTRY]
    usable = [i for i in infos if i.usable]
    if not usable:
        reasons = "; ".join(f"{i.name}: {i.reason}" for i in infos)
        raise BackendUnavailable(f"no backend is usable here ({reasons})")
    return usable


def container_names(prefix: str, backend: str) -> tuple[str, str]:
    """(explain run, timing run) names for one backend: PREFIX-BACKEND-explain, PREFIX-BACKEND-run."""
    return validate_name(f"{prefix}-{backend}-explain"), validate_name(f"{prefix}-{backend}-run")


def compare(
    spec: ContainerSpec, backends: Sequence[str] | None = None, paths: Paths | None = None, on_step: Step | None = None
) -> dict:
    """Run `spec` on each backend (all usable ones when None) and compare them.

    spec.name, when given, is the prefix of the containers' names; spec.auto_remove is
    ignored (compare removes everything it made). A failure on one backend is recorded
    in its `errors` and the others still run; KeyboardInterrupt propagates after the
    containers made so far are removed.
    """
    if spec.tty or spec.stdin:
        raise InvalidSpec("compare runs its containers detached, with no terminal and no stdin: drop -t and -i")
    paths = paths or Paths.default()
    infos = select_backends(backends)
    prefix = spec.name or f"compare-{uuid.uuid4().hex[:8]}"
    _check_names_free(paths, prefix, [i.name for i in infos])
    on_step = on_step or (lambda backend, what: None)

    results: dict[str, dict] = {}
    for info in infos:
        backend = backend_class(info.name)(paths)
        explain_name, run_name = container_names(prefix, info.name)
        errors: list[dict] = []
        on_step(info.name, "explain run")
        explained = explain_run(
            backend,
            spec.with_changes(name=explain_name, command=EXPLAIN_COMMAND, entrypoint=(), auto_remove=False),
            errors,
        )
        on_step(info.name, "timing run")
        timing = timing_run(backend, spec.with_changes(name=run_name, auto_remove=False), errors)
        results[info.name] = {
            "backend": info.name,
            "versions": dict(info.versions),
            "explain": explained,
            "timing": timing,
            "errors": errors,
        }

    rows = build_rows(results)
    return {
        "schema_version": SCHEMA_VERSION,
        "spec": spec.to_dict(),
        "name_prefix": prefix,
        "explain_command": list(EXPLAIN_COMMAND),
        "machine": machine_info(),
        "backends": [i.name for i in infos],
        "results": results,
        "rows": rows,
        "differences": [r["key"] for r in rows if r["differs"]],
    }


def _check_names_free(paths: Paths, prefix: str, backends: list[str]) -> None:
    """Refuse up front if a name is taken: cleanup removes by name, and must never hit a stranger."""
    store = RecordStore(paths)
    for backend in backends:
        for name in container_names(prefix, backend):
            if store.dir(name).exists():
                raise Conflict(f'container name "{name}" is already in use: choose another --name prefix')


def _error(phase: str, exc: BaseException) -> dict:
    return {"phase": phase, "message": str(exc), "exit_code": getattr(exc, "exit_code", 125)}


@contextmanager
def _removed(backend: Backend, name: str, errors: list[dict]) -> Iterator[None]:
    """Remove container `name` on the way out, however the block ends.

    A Conflict from create() means the name is somebody else's: that container is
    left alone; a backend that cannot create made nothing to remove. A second Ctrl-C
    during the removal is taken as impatience, not as leave-it-behind: the removal is
    tried once more before the interrupt goes on.
    """
    ours = True
    try:
        yield
    except CtrError as exc:
        if isinstance(exc, Conflict) or (isinstance(exc, Unsupported) and exc.feature == "create"):
            ours = False
        raise
    finally:
        if ours:
            try:
                _remove(backend, name, errors)
            except KeyboardInterrupt:
                _remove(backend, name, errors)
                raise


def _remove(backend: Backend, name: str, errors: list[dict]) -> None:
    try:
        backend.remove(name, force=True)
    except NotFound:
        pass  # never made, or run_detached removed it already
    except CtrError as exc:
        errors.append(_error("cleanup", exc))


def explain_run(backend: Backend, spec: ContainerSpec, errors: list[dict]) -> dict:
    """Start `spec` (a long sleep) detached, explain its pid, measure its keeper and disk, remove it."""
    from ctr.native.explain import explain_pid

    out: dict = {"name": spec.name, "pid": None, "doc": None, "keeper": None, "writable_layer": None}
    try:
        with _removed(backend, spec.name, errors):
            try:
                backend.run_detached(spec)
            except CommandNotFound as exc:
                raise CommandNotFound(
                    f"{exc} (the explain run runs `{' '.join(EXPLAIN_COMMAND)}`: the image needs a sleep command)"
                ) from None
            record = backend.get(spec.name)
            if not record.pid:
                raise CtrError(f"container {spec.name} has no process after start: it is {record.status}")
            out["pid"] = record.pid
            _await_exec(record.pid, spec.command)
            try:
                doc = explain_pid(record.pid)
            except NotFound:
                status = backend.get(spec.name).status
                raise CtrError(
                    f"the process of container {spec.name} (pid {record.pid}) ended before it could "
                    f"be read: the container is {status}, though it runs `{' '.join(spec.command)}`"
                ) from None
            from ctr.security import installed_seccomp

            doc["security"]["seccomp_profile"] = installed_seccomp(record)
            out["doc"] = doc
            out["keeper"] = keeper_of(doc)
            out["writable_layer"] = writable_layer(backend, spec.name)
    except CtrError as exc:
        errors.append(_error("explain", exc))
    return out


def _await_exec(pid: int, args: Sequence[str]) -> None:
    """Until the process runs `args`: a backend may report PID 1 while it still sets itself
    up before execve (liblxc, runc), and capabilities and seccomp are final only after it."""
    want = "\0".join(args) + "\0"
    deadline = time.monotonic() + EXEC_WAIT
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/cmdline").read_text(errors="replace") == want:
                return
            if process_start_time(pid) is None:
                return  # exited (a zombie has no cmdline): explain_pid says so
        except OSError:
            return
        time.sleep(0.01)


def timing_run(backend: Backend, spec: ContainerSpec, errors: list[dict]) -> dict:
    """create, start, wait: each timed with a monotonic clock, then the container removed.

    start() returns once the backend reports the process started; total_ms runs from
    before create() until wait() returns the exit code. A command that cannot be
    executed (126, 127) is the spec's outcome, not a failure of the compare.
    """
    out: dict = {
        "name": spec.name,
        "create_ms": None,
        "start_ms": None,
        "total_ms": None,
        "exit_code": None,
        "start_error": None,
        "writable_layer": None,
    }
    try:
        with _removed(backend, spec.name, errors):
            t0 = time.perf_counter()
            backend.create(spec)
            t1 = time.perf_counter()
            out["create_ms"] = _ms(t1 - t0)
            try:
                backend.start(spec.name)
            except (CommandNotFound, CommandNotExecutable) as exc:
                out["exit_code"], out["start_error"] = exc.exit_code, str(exc)
                out["total_ms"] = _ms(time.perf_counter() - t0)
            else:
                t2 = time.perf_counter()
                out["start_ms"] = _ms(t2 - t1)
                out["exit_code"] = _wait(backend, spec.name)
                out["total_ms"] = _ms(time.perf_counter() - t0)
            out["writable_layer"] = writable_layer(backend, spec.name)
    except CtrError as exc:
        errors.append(_error("timing", exc))
    return out


def _wait(backend: Backend, name: str) -> int:
    """backend.wait(), asked again while the container has exited but its exit code is not
    recorded yet: native's wait() raises "has no exit code" when PID 1 is gone and the
    monitor has not written the end (a race a wait right after start hits)."""
    deadline = time.monotonic() + EXEC_WAIT
    while True:
        try:
            return backend.wait(name)
        except NotFound:
            raise
        except CtrError:
            record = backend.get(name)
            if not (record.status == "exited" and record.exit_code is None) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def writable_layer(backend: Backend, name: str) -> dict:
    """Bytes of the files in the container's writable layer (rootfs.upper of its inspect view)."""
    out = {"path": None, "bytes": None, "files": None, "reason": None}
    try:
        view = backend.inspect(name)
    except CtrError as exc:
        out["reason"] = f"cannot inspect container {name}: {exc}"
        return out
    upper = (view.get("rootfs") or {}).get("upper")
    if not upper:
        out["reason"] = f"the {backend.name} backend does not report a writable layer (rootfs.upper)"
        return out
    out["path"] = str(upper)
    try:
        out["bytes"], out["files"] = tree_size(Path(upper))
    except OSError as exc:
        out["reason"] = f"cannot measure {upper}: {(exc.strerror or str(exc)).lower()}"
    return out


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes, entries) of everything under `root` but directories, by lstat: symlinks are not
    followed, an overlay whiteout (a 0:0 character device) counts as an entry of 0 bytes."""
    if not root.is_dir():
        raise FileNotFoundError(2, "No such directory", str(root))
    total = count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                st = os.lstat(os.path.join(dirpath, entry))
            except FileNotFoundError:
                continue  # removed while we walked
            total += st.st_size
            count += 1
    return total, count


# -- the machine -----------------------------------------------------------------------


def machine_info(sys_fs_cgroup: Path = Path("/sys/fs/cgroup")) -> dict:
    """What the report says about where it ran: kernel, cgroup version, date."""
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "os": _os_name(),
        "cgroup": cgroup_version(sys_fs_cgroup),
        "cpus": os.cpu_count(),
        "memory_bytes": _mem_total(),
        "date": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
        "ctr_version": _ctr_version(),
    }


def cgroup_version(root: Path = Path("/sys/fs/cgroup")) -> str:
    """ "v2", "hybrid" (v1 plus cgroup2 at unified/) or "v1", in explain's words."""
    if (root / "cgroup.controllers").exists():
        return "v2"
    if (root / "unified" / "cgroup.controllers").exists():
        return "hybrid"
    return "v1"


def _os_name() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _ctr_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ctr")
    except Exception:  # running from a source tree that was never installed
        return None
