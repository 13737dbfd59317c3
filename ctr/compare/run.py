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
which the backends differ marked; the CLI only renders it.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ctr.errors import (
    BackendUnavailable, CommandNotExecutable, CommandNotFound, Conflict, CtrError, InvalidSpec, NotFound, Unsupported,
)
from ctr.spec import CAPABILITIES, DEFAULT_CAPS, ContainerSpec, validate_name

from ctr.backends import REGISTRY, backend_class, probe
from ctr.backends.base import Backend, BackendInfo
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


def compare(spec: ContainerSpec, backends: Sequence[str] | None = None, paths: Paths | None = None,
            on_step: Step | None = None) -> dict:
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
        explained = explain_run(backend, spec.with_changes(
            name=explain_name, command=EXPLAIN_COMMAND, entrypoint=(), auto_remove=False), errors)
        on_step(info.name, "timing run")
        timing = timing_run(backend, spec.with_changes(name=run_name, auto_remove=False), errors)
        results[info.name] = {"backend": info.name, "versions": dict(info.versions),
                              "explain": explained, "timing": timing, "errors": errors}

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
                raise CommandNotFound(f"{exc} (the explain run runs `{' '.join(EXPLAIN_COMMAND)}`: "
                                      "the image needs a sleep command)") from None
            record = backend.get(spec.name)
            if not record.pid:
                raise CtrError(f"container {spec.name} has no process after start: it is {record.status}")
            out["pid"] = record.pid
            _await_exec(record.pid, spec.command)
            try:
                doc = explain_pid(record.pid)
            except NotFound:
                status = backend.get(spec.name).status
                raise CtrError(f"the process of container {spec.name} (pid {record.pid}) ended before it could "
                               f"be read: the container is {status}, though it runs `{' '.join(spec.command)}`") from None
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
    out: dict = {"name": spec.name, "create_ms": None, "start_ms": None, "total_ms": None,
                 "exit_code": None, "start_error": None, "writable_layer": None}
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


def keeper_of(doc: dict) -> dict | None:
    """The keeper entry of an explain document's chain: {"pid", "comm", "cmdline", "vm_rss_kb"}."""
    for entry in doc["process"]["keeper"]["chain"]:
        if entry["keeper"]:
            return {k: entry[k] for k in ("pid", "comm", "cmdline", "vm_rss_kb")}
    return None


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
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "ctr_version": _ctr_version(),
    }


def cgroup_version(root: Path = Path("/sys/fs/cgroup")) -> str:
    """"v2", "hybrid" (v1 plus cgroup2 at unified/) or "v1", in explain's words."""
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


# -- the rows --------------------------------------------------------------------------

GROUPS = {
    "namespaces": "Namespaces",
    "cgroups": "Cgroups",
    "capabilities": "Capabilities",
    "security": "Security",
    "rootfs": "Root filesystem",
    "keeper": "Keeper",
    "run": "Run",
    "cost": "Cost",
}
NAMESPACES = ("pid", "net", "mnt", "uts", "ipc", "user", "cgroup", "time")
CAP_SETS = (("CapEff", "effective"), ("CapPrm", "permitted"), ("CapBnd", "bounding"),
            ("CapInh", "inheritable"), ("CapAmb", "ambient"))

# A feature: (key, group, label, value(doc)); display() makes the value readable.
Feature = tuple[str, str, str, Callable[[dict], object]]


def _ns(ns: str) -> Callable[[dict], object]:
    def value(doc: dict) -> object:
        info = doc["namespaces"].get(ns)
        if not info or info["shared_with_host"] is None:
            return None
        return "host" if info["shared_with_host"] else "own"
    return value


def _limit(key: str) -> Callable[[dict], object]:
    return lambda doc: doc["cgroups"]["limits"].get(key)


def _cpus(doc: dict) -> object:
    lim = doc["cgroups"]["limits"]
    if lim.get("cpus") is not None:
        return lim["cpus"]
    return "unlimited" if lim.get("cpu_period_us") is not None else None


def _caps(key: str) -> Callable[[dict], object]:
    def value(doc: dict) -> object:
        caps = doc["capabilities"].get(key)
        return None if caps is None else caps["names"]
    return value


def _sec(key: str) -> Callable[[dict], object]:
    return lambda doc: doc["security"].get(key)


def _user(doc: dict) -> object:
    uid, gid = doc["security"].get("uid"), doc["security"].get("gid")
    if uid is None or gid is None:
        return None
    return f"{uid['effective']}:{gid['effective']}"


def _rootfs(key: str) -> Callable[[dict], object]:
    return lambda doc: None if doc.get("rootfs") is None else doc["rootfs"][key]


def _covered(list_key: str, flag: str) -> Callable[[dict], object]:
    """Of Docker's paths that exist in the container, how many are masked (read-only)."""
    def value(doc: dict) -> object:
        entries = doc.get(list_key)
        if entries is None:
            return None
        present = [e for e in entries if e["present"] is not False or e[flag]]
        return {flag: sum(1 for e in present if e[flag]), "present": len(present)}
    return value


def _devices(doc: dict) -> object:
    """The device policy as the kernel holds it, order aside: (default, sorted rules)."""
    dev = doc["cgroups"].get("devices")
    if not dev or dev.get("rules") is None:
        return None
    return {"default": dev["default"], "rules": sorted(dev["rules"])}


def _keeper_comm(doc: dict) -> object:
    keeper = keeper_of(doc)
    return None if keeper is None else keeper["comm"]


FEATURES: list[Feature] = [
    *[(f"namespace.{ns}", "namespaces", ns, _ns(ns)) for ns in NAMESPACES],
    ("cgroup.version", "cgroups", "version", lambda doc: doc["cgroups"]["mode"]),
    ("cgroup.memory", "cgroups", "memory limit", _limit("memory")),
    ("cgroup.cpus", "cgroups", "cpus", _cpus),
    ("cgroup.pids", "cgroups", "pids limit", _limit("pids")),
    ("cgroup.freezer", "cgroups", "freezer", _limit("freezer")),
    ("cgroup.devices", "cgroups", "device policy", _devices),
    *[(f"caps.{label}", "capabilities", label, _caps(key)) for key, label in CAP_SETS],
    ("security.seccomp", "security", "seccomp", _sec("seccomp")),
    ("security.seccomp_filters", "security", "seccomp filters", _sec("seccomp_filters")),
    ("security.seccomp_profile", "security", "seccomp profile", lambda doc: (doc["security"].get("seccomp_profile") or {}).get("profile")),
    ("security.no_new_privs", "security", "no_new_privs", _sec("no_new_privs")),
    ("security.user", "security", "uid:gid", _user),
    ("security.uid_map", "security", "uid map", _sec("uid_map")),
    ("security.gid_map", "security", "gid map", _sec("gid_map")),
    ("rootfs.fstype", "rootfs", "fstype", _rootfs("fstype")),
    ("rootfs.read_only", "rootfs", "read-only", _rootfs("read_only")),
    ("rootfs.masked_paths", "rootfs", "masked paths", _covered("masked_paths", "masked")),
    ("rootfs.readonly_paths", "rootfs", "read-only paths", _covered("readonly_paths", "read_only")),
    ("keeper.comm", "keeper", "process", _keeper_comm),
]


def build_rows(results: dict[str, dict]) -> list[dict]:
    """The side-by-side rows, a column per backend in `results`' order.

    Feature rows come from each backend's explain document, the exit code and the cost
    rows from its timing run. A feature or exit-code row `differs` when the backends
    that have a value source (an explain document, a finished timing run) disagree;
    a backend without one shows "-" and is left out of the comparison. Cost rows are
    measurements: shown, never marked.
    """
    names = list(results)
    docs = {b: (results[b].get("explain") or {}).get("doc") for b in names}
    timings = {b: results[b].get("timing") or {} for b in names}
    rows = []
    for key, group, label, value in FEATURES:
        values = {b: value(docs[b]) if docs[b] is not None else None for b in names}
        display = {b: display_value(key, values[b], docs[b]) if docs[b] is not None else "-" for b in names}
        rows.append(_row(key, group, label, values, display, [b for b in names if docs[b] is not None]))

    ran = [b for b in names if timings[b].get("exit_code") is not None]
    codes = {b: timings[b].get("exit_code") for b in names}
    rows.append(_row("run.exit_code", "run", "exit code", codes,
                     {b: "-" if codes[b] is None else str(codes[b]) for b in names}, ran))

    def cost(key: str, label: str, values: dict, fmt: Callable[[object], str]) -> None:
        rows.append(_row(key, "cost", label, values, {b: "-" if v is None else fmt(v) for b, v in values.items()}, []))

    for step in ("create", "start", "total"):
        cost(f"cost.{step}_ms", f"{step} (ms)" if step != "total" else "total run (ms)",
             {b: timings[b].get(f"{step}_ms") for b in names}, lambda v: f"{v:.1f}")
    keepers = {b: keeper_of(docs[b]) if docs[b] is not None else None for b in names}
    cost("cost.keeper_rss_kb", "keeper RSS",
         {b: k["vm_rss_kb"] if k else None for b, k in keepers.items()}, lambda v: human_bytes(v * 1024))
    layers = {b: (results[b].get("explain") or {}).get("writable_layer") for b in names}
    cost("cost.writable_layer_bytes", "writable layer",
         {b: l["bytes"] if l else None for b, l in layers.items()}, human_bytes)
    after = {b: timings[b].get("writable_layer") for b in names}
    cost("cost.writable_layer_after_bytes", "writable layer after CMD",
         {b: l["bytes"] if l else None for b, l in after.items()}, human_bytes)
    return rows


def _row(key: str, group: str, label: str, values: dict, display: dict, compared: list[str]) -> dict:
    distinct = {json.dumps(values[b], sort_keys=True) for b in compared}
    return {"key": key, "group": group, "label": label, "compared": bool(compared) and group != "cost",
            "differs": len(distinct) > 1, "values": values, "display": display}


# -- making values readable ------------------------------------------------------------


def display_value(key: str, value: object, doc: dict | None = None) -> str:
    """The text of one cell; None (the kernel did not say) is "-"."""
    if value is None:
        return "-"
    if key == "cgroup.memory":
        return value if isinstance(value, str) else docker_size(value)
    if key.startswith("caps."):
        last = doc["capabilities"].get("last_cap") if doc else None
        return cap_summary(value, last)
    if key in ("security.uid_map", "security.gid_map"):
        if value == [[0, 0, 4294967295]]:
            return "identity"
        return ", ".join(" ".join(str(v) for v in r) for r in value) or "empty"
    if key == "cgroup.devices":
        n = len(value["rules"])
        if value["default"] == "deny":
            return f"deny all but {n} rule{'s' if n != 1 else ''}"
        return "allow all" + (f" but {n}" if n else "")
    if key == "rootfs.masked_paths":
        return f"{value['masked']} of {value['present']}"
    if key == "rootfs.readonly_paths":
        return f"{value['read_only']} of {value['present']}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def docker_size(n: int) -> str:
    """67108864 -> "64m": the largest binary unit that divides exactly, as one types it to Docker."""
    for unit, size in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}b"


def human_bytes(n: float) -> str:
    """4096 -> "4.0 KiB"; 0 -> "0 B"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def cap_summary(names: Sequence[str], last_cap: int | None = None) -> str:
    """A capability set in as few words as possible.

    "default 14" is Docker's default set; "default 14 -NET_RAW +SYS_ADMIN" differs from it
    by those; "all 41 -SYS_ADMIN" is every capability the kernel knows (cap_last_cap) but
    those; otherwise the names themselves, "none" for the empty set.
    """
    if not names:
        return "none"
    order = {name: i for i, name in enumerate(CAPABILITIES)}

    def short(caps) -> list[str]:
        return [c.removeprefix("CAP_") for c in sorted(caps, key=lambda c: order.get(c, 1000 + len(c)))]

    have = set(names)
    default = set(DEFAULT_CAPS)
    forms = [" ".join([f"default {len(default)}"] + [f"-{c}" for c in short(default - have)]
                      + [f"+{c}" for c in short(have - default)])]
    if last_cap is not None:
        known = set(CAPABILITIES[: last_cap + 1])
        if have <= known:
            forms.append(" ".join([f"all {len(known)}"] + [f"-{c}" for c in short(known - have)]))
    forms.append(" ".join(short(have)))
    return min(forms, key=lambda f: len(f.split()))  # min keeps the first of equals: default, all, names
