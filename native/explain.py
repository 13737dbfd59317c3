"""What the kernel says about one process: namespaces, cgroups, capabilities, mounts, keeper.

Everything here is read from /proc and the cgroup filesystem, never from a runtime's own
state, so the same document can be produced for a process started by any backend (or by
none) and compared field by field. The document's layout is versioned and described in
docs/explain-schema.md; bump SCHEMA_VERSION when a field changes meaning or disappears.

All reads go through `proc` and `cgroup_root`, so the unit tests point them at a fake tree.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

from ctr.errors import CtrError, NotFound

from ctr.native import mountinfo
from ctr.native.caps import names as cap_names

SCHEMA_VERSION = 1

NAMESPACES = ("pid", "net", "mnt", "uts", "ipc", "user", "cgroup", "time")
CAP_SETS = ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}

# moby oci/defaults.go: paths Docker hides (bind of /dev/null, or an empty tmpfs for directories)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
# ... and the paths it mounts read-only.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# A v1 memory.limit_in_bytes this large is the kernel's "no limit" (PAGE_COUNTER_MAX pages,
# whose byte value depends on the page size); the same threshold as ctr.native.cgroups.
V1_UNLIMITED = 1 << 62
IDENTITY_MAP = [[0, 0, 4294967295]]
KEEPER_MAX_DEPTH = 64  # a PPid chain longer than this is a loop (a pid reused while we walk)
CMDLINE_SHORT = 120

# -- the document ------------------------------------------------------------------------


def explain_pid(pid: int, proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> dict:
    """The kernel's view of process `pid` as a JSON-able dict (schema: docs/explain-schema.md).

    Raises NotFound if the process does not exist or exits while it is being read, and
    CtrError naming the file for any other unreadable file (e.g. another user's process).
    """
    proc, cgroup_root = Path(proc), Path(cgroup_root)
    base = proc / str(pid)
    start = _start_time(base, pid)
    try:
        status = _status(base)
        unreadable: list[str] = []
        host_reference, namespaces = _namespaces(base, proc, unreadable)
        doc = {
            "schema_version": SCHEMA_VERSION,
            "pid": pid,
            "host_reference": host_reference,
            "process": _process(base, pid, status, proc),
            "namespaces": namespaces,
            "cgroups": _cgroups(base, cgroup_root),
            "capabilities": _capabilities(status, proc),
            "security": _security(base, status),
            **_mounts(base, unreadable),
            "unreadable": unreadable,
        }
    except OSError as exc:
        if not _alive(base, start):
            raise NotFound(f"no such process: {pid}") from None
        raise CtrError(f"cannot read {_why(exc)}") from None
    # A process that exited (or whose pid was reused) while we read gave us a mixed document.
    if not _alive(base, start):
        raise NotFound(f"no such process: {pid}")
    return doc


def _start_time(base: Path, pid: int) -> int:
    """Start time in clock ticks from /proc/PID/stat; NotFound for no process or a zombie."""
    try:
        stat = (base / "stat").read_text()
    except OSError:
        raise NotFound(f"no such process: {pid}") from None
    # comm (field 2) may contain spaces and parentheses: split after its last ')'
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: nothing left to explain
        raise NotFound(f"no such process: {pid}")
    return int(fields[19])


def _alive(base: Path, start: int) -> bool:
    try:
        fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == start


def _why(exc: OSError) -> str:
    """'/proc/1/ns/pid: permission denied' for the document and for error messages."""
    return f"{exc.filename}: {(exc.strerror or str(exc)).lower()}"


def _read(path: Path) -> str:
    # comm and cmdline are whatever bytes the process chose: never fail on them
    return path.read_text(errors="replace")


def _read_optional(path: Path) -> str | None:
    """A file the kernel may not have (old kernel, controller not enabled): None when absent."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


def _status(base: Path) -> dict[str, str]:
    out = {}
    for line in _read(base / "status").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


# -- process and keeper ------------------------------------------------------------------


def _process(base: Path, pid: int, status: dict[str, str], proc: Path) -> dict:
    nspid = [int(p) for p in status["NSpid"].split()] if "NSpid" in status else None
    cmdline = _cmdline(_read(base / "cmdline"))
    return {
        "pid": pid,
        "comm": _read(base / "comm").rstrip("\n"),
        "cmdline": cmdline,
        "state": status.get("State", "").split(" ")[0] or None,
        "ppid": int(status["PPid"]),
        "ns_pid": nspid[-1] if nspid else None,
        "nspid": nspid,
        "keeper": keeper_chain(proc, int(status["PPid"]), len(nspid) if nspid else None),
    }


def _cmdline(raw: str) -> list[str]:
    """NUL-terminated arguments; a kernel thread (or a zombie) has none."""
    if not raw:
        return []
    args = raw.split("\0")
    if raw.endswith("\0"):
        args.pop()
    return args


def _short_cmdline(args: list[str], comm: str) -> str:
    # kernel threads have no cmdline: ps shows [comm]; newlines would break a table row
    text = " ".join(" ".join(args).split()) if args else f"[{comm}]"
    return text if len(text) <= CMDLINE_SHORT else text[: CMDLINE_SHORT - 3] + "..."


def keeper_chain(proc: Path, ppid: int, depth: int | None) -> dict:
    """Ancestors from `ppid` up to PID 1 (or the top of the reader's pid namespace).

    The keeper is the nearest ancestor outside the process's pid namespace (containerd-shim,
    the lxc monitor, ctr): a parent can only be in the same pid namespace or an ancestor one,
    so an ancestor whose NSpid has fewer levels than the process's is outside it.
    """
    chain: list[dict] = []
    keeper = None
    pid = ppid
    while pid > 0 and len(chain) < KEEPER_MAX_DEPTH:
        base = proc / str(pid)
        try:
            status = _status(base)
            comm = _read(base / "comm").rstrip("\n")
            args = _cmdline(_read(base / "cmdline"))
        except OSError:
            break  # the ancestor exited while we walked: the chain ends where we lost it
        nspid = status.get("NSpid", "").split()
        inside = None if depth is None or not nspid else len(nspid) >= depth
        is_keeper = keeper is None and inside is False
        if is_keeper:
            keeper = pid
        rss = status.get("VmRSS")
        chain.append({
            "pid": pid,
            "comm": comm,
            "cmdline": _short_cmdline(args, comm),
            "vm_rss_kb": int(rss.split()[0]) if rss else None,
            "in_pid_namespace": inside,
            "keeper": is_keeper,
        })
        if pid == 1:
            break
        pid = int(status.get("PPid", "0"))
    return {"pid": keeper, "chain": chain}


# -- namespaces --------------------------------------------------------------------------


def _ns_inode(link: str) -> int:
    """'pid:[4026531836]' -> 4026531836."""
    m = re.fullmatch(r"\w+:\[(\d+)\]", link)
    if not m:
        raise ValueError(f"unexpected namespace link {link!r}")
    return int(m.group(1))


def _host_namespaces(proc: Path) -> tuple[dict, dict[str, int | None]]:
    """The namespaces to call "host": PID 1's as this reader sees it, else the reader's own.

    PID 1's links can be unreadable even to root (a hardened or VM init); then the reader
    itself is the reference, which is the host when ctr runs on the host.
    """
    for ref in ("1", "self"):
        inodes: dict[str, int | None] = {}
        try:
            for ns in NAMESPACES:
                try:
                    inodes[ns] = _ns_inode(os.readlink(proc / ref / "ns" / ns))
                except FileNotFoundError:
                    inodes[ns] = None  # the kernel has no such namespace type (time < 5.6)
        except OSError as exc:
            reason = _why(exc)
            continue
        return {"path": str(proc / ref), "fallback_reason": None if ref == "1" else reason}, inodes
    raise CtrError(f"cannot read the host's namespaces: {reason}")


def _namespaces(base: Path, proc: Path, unreadable: list[str]) -> tuple[dict, dict]:
    """Each namespace's inode and whether it is the host's; a link we may not read is None."""
    reference, host = _host_namespaces(proc)
    out = {}
    for ns in NAMESPACES:
        inode = None
        if host[ns] is not None:
            try:
                inode = _ns_inode(os.readlink(base / "ns" / ns))
            except PermissionError as exc:  # another user's process, or a guarded init
                unreadable.append(_why(exc))
        out[ns] = {
            "inode": inode,
            "host_inode": host[ns],
            "shared_with_host": None if inode is None else inode == host[ns],
        }
    return reference, out


# -- cgroups -----------------------------------------------------------------------------


def parse_proc_cgroup(text: str) -> list[dict]:
    """Lines 'ID:CONTROLLERS:PATH' of /proc/PID/cgroup; v2 is '0::PATH'."""
    out = []
    for line in text.splitlines():
        if not line:
            continue
        hid, controllers, path = line.split(":", 2)
        out.append({"id": int(hid), "controllers": controllers.split(",") if controllers else [], "path": path})
    return out


def _v1_mount_dir(cgroup_root: Path, controllers: list[str]) -> Path | None:
    """Where a v1 hierarchy is mounted: 'cpu,cpuacct' (or its 'cpu' link), 'name=systemd' -> 'systemd'."""
    names = [",".join(controllers)] + [c.removeprefix("name=") for c in controllers]
    for name in names:
        if (cgroup_root / name).is_dir():
            return cgroup_root / name
    return None


def _v2_mount_dir(cgroup_root: Path) -> Path | None:
    """Pure v2: cgroup_root itself; hybrid: cgroup_root/unified."""
    for d in (cgroup_root, cgroup_root / "unified"):
        if (d / "cgroup.controllers").exists():
            return d
    return None


def _host_dir(mount_dir: Path | None, path: str) -> Path | None:
    # A path with '..' lies outside the reader's cgroup namespace: it has no directory here.
    parts = [p for p in path.split("/") if p]
    if mount_dir is None or ".." in parts:
        return None
    d = mount_dir.joinpath(*parts)
    return d if d.is_dir() else None


def _cgroups(base: Path, cgroup_root: Path) -> dict:
    entries = parse_proc_cgroup(_read(base / "cgroup"))
    v1 = [e for e in entries if e["id"] != 0]
    v2 = next((e for e in entries if e["id"] == 0 and not e["controllers"]), None)
    hierarchies = []
    v1_dirs: dict[str, Path] = {}
    v2_dir = None
    for e in entries:
        if e is v2:
            d = v2_dir = _host_dir(_v2_mount_dir(cgroup_root), e["path"])
        else:
            d = _host_dir(_v1_mount_dir(cgroup_root, e["controllers"]), e["path"])
            if d is not None:
                v1_dirs.update(dict.fromkeys(e["controllers"], d))
        hierarchies.append({**e, "host_dir": str(d) if d else None})
    limits, sources = cgroup_limits(v1_dirs, v2_dir)
    return {
        "mode": "hybrid" if v1 and v2 else "v1" if v1 else "v2",
        "hierarchies": hierarchies,
        "unified_path": v2["path"] if v2 else None,
        "limits": limits,
        "sources": sources,
        "devices": device_policy_of(v1_dirs.get("devices"), v2_dir),
    }


def device_policy_of(v1_dir: Path | None, v2_dir: Path | None) -> dict:
    """The device policy the kernel holds for a cgroup: the v1 devices.list when it restricts
    anything, else the BPF device programs in effect on the v2 cgroup (its own and its
    ancestors'), each decoded to rules where it has the shape ctr's own programs have. On a
    hybrid host a runtime may use either (ctr's v2 driver leaves the v1 devices cgroup alone).

    {"enforced_by": "devices.list" | "bpf" | null, "default": "allow" | "deny" | null,
     "rules": ["c 1:3 rwm", ...] or null, "source": path, "programs": [...], "error": str | null}
    """
    doc: dict = {"enforced_by": None, "default": None, "rules": None, "source": None, "programs": [], "error": None}
    if v1_dir is not None:
        doc.update(enforced_by="devices.list", source=str(v1_dir / "devices.list"))
        text = _read_optional(v1_dir / "devices.list")
        if text is None:
            doc["error"] = "devices.list unreadable or gone"
            return doc
        listed = [line.strip() for line in text.splitlines() if line.strip()]
        # v1 lists "a *:* rwm" when everything is allowed, else the allowed exceptions to deny-all
        if listed != ["a *:* rwm"]:
            doc.update(default="deny", rules=listed)
            return doc
        doc.update(default="allow", rules=[])
    if v2_dir is None:
        return doc
    from ctr.native import bpf_devices

    try:
        ids = bpf_devices.query(v2_dir, effective_too=True)
        programs = [bpf_devices.info(i) for i in ids]
    except OSError as exc:  # not root (EPERM), no bpf(2) here, or the cgroup went away
        if doc["enforced_by"] is None:
            doc.update(source=str(v2_dir), error=f"BPF_PROG_QUERY: {exc.strerror}")
        return doc
    if not programs:
        if doc["enforced_by"] is None:
            doc.update(default="allow", rules=[], source=str(v2_dir))  # no program: every device
        return doc
    doc.update(enforced_by="bpf", source=str(v2_dir), default=None, rules=None)
    decoded = []
    for prog in programs:
        rules = bpf_devices.decode(prog.code) if prog.code else None
        doc["programs"].append({"id": prog.id, "name": prog.name, "tag": prog.tag, "insns": prog.insns,
                                "decoded": rules is not None})
        decoded.append(rules)
    if len(decoded) == 1 and decoded[0] is not None:
        default, rules = decoded[0]
        # in devices.list terms: what a deny-all list would show, or every deny rule of an allow-all
        doc.update(default="allow" if default else "deny",
                   rules=[str(r) for r in rules if r.allow != default])
    return doc


def cgroup_limits(v1: dict[str, Path], v2: Path | None) -> tuple[dict, dict]:
    """Limits and usage from the cgroup files, v1 controllers first, then the v2 directory.

    `v1` maps a controller name to its directory. Returns (limits, sources): every figure
    with the file it was read from; a figure whose file does not exist is None.
    """
    limits: dict = dict.fromkeys((
        "memory", "memory_usage", "cpus", "cpu_quota_us", "cpu_period_us", "cpu_shares",
        "cpu_weight", "pids", "pids_current", "freezer",
    ))
    sources: dict[str, str] = {}

    def read(key: str, d: Path | None, name: str) -> str | None:
        if d is None or limits[key] is not None:
            return None
        try:
            text = (d / name).read_text().strip()
        except OSError:  # not enabled here, or the cgroup went away: no figure, not an error
            return None
        sources[key] = str(d / name)
        return text

    if (text := read("memory", v1.get("memory"), "memory.limit_in_bytes")) is not None:
        limits["memory"] = "unlimited" if int(text) >= V1_UNLIMITED else int(text)
    if (text := read("memory_usage", v1.get("memory"), "memory.usage_in_bytes")) is not None:
        limits["memory_usage"] = int(text)
    cpu = v1.get("cpu")
    quota, period = read("cpu_quota_us", cpu, "cpu.cfs_quota_us"), read("cpu_period_us", cpu, "cpu.cfs_period_us")
    if quota is not None and period is not None:
        limits["cpu_quota_us"] = None if int(quota) < 0 else int(quota)
        limits["cpu_period_us"] = int(period)
        sources["cpus"] = sources["cpu_quota_us"]
    if (text := read("cpu_shares", cpu, "cpu.shares")) is not None:
        limits["cpu_shares"] = int(text)
    if (text := read("pids", v1.get("pids"), "pids.max")) is not None:
        limits["pids"] = "unlimited" if text == "max" else int(text)
    if (text := read("pids_current", v1.get("pids"), "pids.current")) is not None:
        limits["pids_current"] = int(text)
    if (text := read("freezer", v1.get("freezer"), "freezer.state")) is not None:
        limits["freezer"] = text.lower()

    if (text := read("memory", v2, "memory.max")) is not None:
        limits["memory"] = "unlimited" if text == "max" else int(text)
    if (text := read("memory_usage", v2, "memory.current")) is not None:
        limits["memory_usage"] = int(text)
    if limits["cpu_period_us"] is None and (text := read("cpu_period_us", v2, "cpu.max")) is not None:
        quota, period = (text.split() + ["100000"])[:2]
        limits["cpu_quota_us"] = None if quota == "max" else int(quota)
        limits["cpu_period_us"] = int(period)
        sources["cpu_quota_us"] = sources["cpus"] = sources["cpu_period_us"]
    if (text := read("cpu_weight", v2, "cpu.weight")) is not None:
        limits["cpu_weight"] = int(text)
    if (text := read("pids", v2, "pids.max")) is not None:
        limits["pids"] = "unlimited" if text == "max" else int(text)
    if (text := read("pids_current", v2, "pids.current")) is not None:
        limits["pids_current"] = int(text)
    if (text := read("freezer", v2, "cgroup.freeze")) is not None:
        # cgroup.freeze is what was asked; cgroup.events 'frozen' says whether it happened
        events = _read_optional(v2 / "cgroup.events") or ""
        frozen = "frozen 1" in events.splitlines()
        limits["freezer"] = "thawed" if text == "0" else "frozen" if frozen else "freezing"

    if limits["cpu_quota_us"] is not None and limits["cpu_period_us"]:
        limits["cpus"] = round(limits["cpu_quota_us"] / limits["cpu_period_us"], 3)
    return limits, sources


# -- capabilities and security -----------------------------------------------------------


def _capabilities(status: dict[str, str], proc: Path) -> dict:
    out: dict = {}
    for key in CAP_SETS:
        if key in status:
            value = int(status[key], 16)
            out[key] = {"hex": status[key], "names": cap_names(value)}
        else:
            out[key] = None  # CapAmb is missing before Linux 4.3
    last = _read_optional(proc / "sys" / "kernel" / "cap_last_cap")
    out["last_cap"] = int(last) if last else None
    return out


def _id_line(text: str | None) -> dict | None:
    if text is None:
        return None
    real, effective, saved, fs = (int(v) for v in text.split())
    return {"real": real, "effective": effective, "saved": saved, "filesystem": fs}


def parse_id_map(text: str | None) -> list[list[int]] | None:
    if text is None:
        return None
    return [[int(v) for v in line.split()] for line in text.splitlines() if line.strip()]


def seccomp_profile_text(p: dict) -> str:
    """'default: refuses 75 of 368 syscalls, 2 by argument' (ctr's record, not the kernel's)."""
    if "refused" not in p:
        return p["profile"]
    return f"{p['profile']}: refuses {p['refused']} of {p['syscalls']} syscalls, {p['by_argument']} by argument"


def _security(base: Path, status: dict[str, str]) -> dict:
    mode = int(status["Seccomp"]) if "Seccomp" in status else None
    uid_map = parse_id_map(_read_optional(base / "uid_map"))
    gid_map = parse_id_map(_read_optional(base / "gid_map"))
    return {
        "seccomp_mode": mode,
        "seccomp": SECCOMP_MODES.get(mode) if mode is not None else None,
        "seccomp_filters": int(status["Seccomp_filters"]) if "Seccomp_filters" in status else None,
        "no_new_privs": status["NoNewPrivs"] == "1" if "NoNewPrivs" in status else None,
        "uid": _id_line(status.get("Uid")),
        "gid": _id_line(status.get("Gid")),
        "uid_map": uid_map,
        "uid_map_identity": uid_map == IDENTITY_MAP if uid_map is not None else None,
        "gid_map": gid_map,
        "gid_map_identity": gid_map == IDENTITY_MAP if gid_map is not None else None,
    }


# -- mounts ------------------------------------------------------------------------------


def parse_mountinfo(text: str) -> list[dict]:
    """/proc/PID/mountinfo, in order, as explain's JSON has it; paths are as the process sees them."""
    return [{
        "mount_id": e.mount_id,
        "parent_id": e.parent_id,
        "root": e.root,
        "mount_point": e.mount_point,
        "mount_options": list(e.mount_options),
        "fstype": e.fstype,
        "source": e.source,
        "super_options": list(e.super_options),
    } for e in mountinfo.parse(text)]


def _covering(mounts: list[dict], path: str) -> dict | None:
    """The mount `path` lies on: the longest mount point above it, the last one when stacked."""
    best = None
    for m in mounts:
        mp = m["mount_point"]
        if path == mp or mp == "/" or path.startswith(mp + "/"):
            if best is None or len(mp) >= len(best["mount_point"]):
                best = m
    return best


def _read_only(m: dict) -> bool:
    return "ro" in m["mount_options"] or "ro" in m["super_options"]


def _mounts(base: Path, unreadable: list[str]) -> dict:
    """rootfs, masked_paths and readonly_paths, all None when mountinfo may not be read."""
    try:
        mounts = parse_mountinfo(_read(base / "mountinfo"))
    except PermissionError as exc:
        unreadable.append(_why(exc))
        return dict.fromkeys(("rootfs", "masked_paths", "readonly_paths"))
    return {
        "rootfs": _rootfs(mounts),
        "masked_paths": _masked(mounts, base / "root"),
        "readonly_paths": _readonly(mounts, base / "root"),
    }


def _rootfs(mounts: list[dict]) -> dict | None:
    root = [m for m in mounts if m["mount_point"] == "/"]
    if not root:
        return None  # a chroot into a directory that is no mount point: no mount at "/"
    m = root[-1]
    overlay = None
    if m["fstype"] == "overlay":
        opts = dict(o.split("=", 1) for o in m["super_options"] if "=" in o)
        overlay = {
            "lowerdir": opts["lowerdir"].split(":") if "lowerdir" in opts else [],
            "upperdir": opts.get("upperdir"),
            "workdir": opts.get("workdir"),
        }
    return {
        "fstype": m["fstype"],
        "source": m["source"],
        "root": m["root"],
        "mount_options": m["mount_options"],
        "super_options": m["super_options"],
        "read_only": _read_only(m),
        "overlay": overlay,
    }


def _present(root: Path, path: str) -> bool | None:
    """Does `path` exist in the process's root (Docker masks only what exists)?"""
    try:
        os.lstat(root / path.lstrip("/"))
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return None


def _masked(mounts: list[dict], root: Path) -> list[dict]:
    out = []
    for path in MASKED_PATHS:
        m = _covering(mounts, path)
        by = None
        if m is not None and m["mount_point"] == path:
            if m["root"].endswith("/null"):
                by = "/dev/null"
            elif m["fstype"] == "tmpfs":
                by = "tmpfs"
        out.append({"path": path, "present": _present(root, path), "masked": by is not None, "by": by})
    return out


def _readonly(mounts: list[dict], root: Path) -> list[dict]:
    out = []
    for path in READONLY_PATHS:
        m = _covering(mounts, path)
        out.append({
            "path": path,
            "present": _present(root, path),
            "read_only": _read_only(m) if m else None,
            "mount_point": m["mount_point"] if m else None,
        })
    return out


# -- the table ---------------------------------------------------------------------------

_WIDTH = 78
_LABEL = 16


def _devices_text(dev: dict | None) -> str:
    """'deny all but 12 (devices.list)', 'bpf: 2 programs, not ctr's', 'allow all' and the like."""
    if not dev or (dev["enforced_by"] is None and dev["default"] is None):
        return f"- ({dev['error']})" if dev and dev["error"] else "-"
    where = f" ({dev['enforced_by']})" if dev["enforced_by"] else ""
    if dev["rules"] is None:
        n = len(dev["programs"])
        return f"{n} bpf program{'s' if n != 1 else ''}, not in a shape ctr decodes" + where
    if dev["default"] == "deny":
        return f"deny all but {len(dev['rules'])} rule{'s' if len(dev['rules']) != 1 else ''}{where}"
    return ("allow all" + (f" but {len(dev['rules'])}" if dev["rules"] else "")) + where


def render_table(doc: dict) -> str:
    """Plain-text rendering of an explain document, one section per kernel feature."""
    lines: list[str] = []
    p = doc["process"]

    def row(label: str, value: object) -> None:
        text = f"  {label:<{_LABEL}}{value}"
        lines.append(text.rstrip())

    def wrapped(label: str, words: list[str]) -> None:
        body = textwrap.wrap(" ".join(words) or "none", _WIDTH - _LABEL - 2) or ["none"]
        row(label, body[0])
        for more in body[1:]:
            row("", more)

    lines.append(f"Process {p['pid']}")
    ns_pid = f"  (pid {p['ns_pid']} in its pid namespace)" if p["ns_pid"] not in (None, p["pid"]) else ""
    row("comm", f"{p['comm']}{ns_pid}")
    row("cmdline", _short_cmdline(p["cmdline"], p["comm"])[: _WIDTH - _LABEL - 2])

    ref = doc["host_reference"]
    lines += ["", f"Namespaces (host = {ref['path']})"]
    if ref["fallback_reason"]:
        row("note", f"pid 1 unreadable ({ref['fallback_reason']})")
    for ns, info in doc["namespaces"].items():
        if info["inode"] is None:
            why = "not supported by this kernel" if info["host_inode"] is None else "unreadable"
            lines.append(f"  {ns:<8}{'-':<12}{why}")
        else:
            lines.append(f"  {ns:<8}{info['inode']:<12}{'host' if info['shared_with_host'] else 'own'}")

    cg = doc["cgroups"]
    lines += ["", f"Cgroups ({cg['mode']})"]
    # v1 hierarchies usually share one path: one row per path, its controllers below it
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for h in cg["hierarchies"]:
        key = ("v2 path" if h["id"] == 0 else "v1 path", h["path"], h["host_dir"] is not None)
        groups.setdefault(key, []).extend(h["controllers"])
    for (label, path, found), controllers in groups.items():
        row(label, path + ("" if found else "  (no directory on this host)"))
        if controllers:
            wrapped("", controllers)
    lim = cg["limits"]
    row("memory", f"{_bytes(lim['memory_usage'])} used of {_bytes(lim['memory'])}")
    cpus = "unlimited" if lim["cpus"] is None else f"{lim['cpus']:g}"
    if lim["cpu_period_us"] is not None:
        quota = "max" if lim["cpu_quota_us"] is None else lim["cpu_quota_us"]
        cpus += f"  (quota {quota} / period {lim['cpu_period_us']} us)"
    if lim["cpu_period_us"] is None and lim["cpu_shares"] is None and lim["cpu_weight"] is None:
        cpus = "-"
    row("cpus", cpus)
    if lim["cpu_shares"] is not None:
        row("cpu shares", lim["cpu_shares"])
    if lim["cpu_weight"] is not None:
        row("cpu weight", lim["cpu_weight"])
    row("pids", f"{_or_dash(lim['pids_current'])} of {_or_dash(lim['pids'])}")
    row("freezer", _or_dash(lim["freezer"]))
    dev = cg.get("devices")
    row("devices", _devices_text(dev))
    if dev and dev["default"] == "deny" and dev["rules"]:
        line = ""
        for rule in dev["rules"]:  # a rule is never split over two lines
            if line and len(line) + len(rule) + 2 > _WIDTH - _LABEL - 2:
                row("", line + ",")
                line = ""
            line += (", " if line else "") + rule
        row("", line)

    caps = doc["capabilities"]
    lines += ["", "Capabilities"]
    labels = {"CapEff": "effective", "CapPrm": "permitted", "CapBnd": "bounding",
              "CapInh": "inheritable", "CapAmb": "ambient"}
    for key, label in labels.items():
        if caps[key] is None:
            row(label, "-")
            continue
        same = next((labels[k] for k in CAP_SETS[: CAP_SETS.index(key)] if caps[k] == caps[key] and caps[k]["names"]), None)
        if same:
            row(label, f"same as {same}")
        else:
            wrapped(label, _cap_words(caps[key]["names"], caps["last_cap"]))

    sec = doc["security"]
    lines += ["", "Security"]
    seccomp = _or_dash(sec["seccomp"])
    if sec["seccomp_filters"]:
        seccomp += f" ({sec['seccomp_filters']} filter{'s' if sec['seccomp_filters'] != 1 else ''})"
    row("seccomp", seccomp)
    if sec.get("seccomp_profile"):
        row("  profile", seccomp_profile_text(sec["seccomp_profile"]))
    row("no_new_privs", _yes_no(sec["no_new_privs"]))
    for key in ("uid", "gid"):
        ids = sec[key]
        row(key, "-" if ids is None else " ".join(str(v) for v in ids.values()) + "  (real effective saved fs)")
    for key in ("uid_map", "gid_map"):
        m = sec[key]
        if m is None:
            row(key, "-")
        else:
            text = ", ".join(" ".join(str(v) for v in r) for r in m)
            row(key, ("identity  " if sec[f"{key}_identity"] else "") + f"({text})")

    lines += ["", "Root filesystem"]
    rootfs = doc["rootfs"]
    if doc["masked_paths"] is None:
        row("mountinfo", "unreadable")
    elif rootfs is None:
        row("/", "no mount at / (chroot into a plain directory)")
    else:
        row("fstype", f"{rootfs['fstype']}  {'read-only' if rootfs['read_only'] else 'read-write'}")
        row("source", rootfs["source"])
        if rootfs["overlay"]:
            ov = rootfs["overlay"]
            for i, layer in enumerate(ov["lowerdir"]):
                row("lowerdir" if i == 0 else "", layer)
            row("upperdir", _or_dash(ov["upperdir"]))
    if doc["masked_paths"] is not None:
        masked, ro = doc["masked_paths"], doc["readonly_paths"]
        wrapped("masked", [m["path"] for m in masked if m["masked"]])
        wrapped("not masked", [m["path"] for m in masked if not m["masked"] and m["present"] is not False])
        wrapped("read-only", [r["path"] for r in ro if r["read_only"]])
        wrapped("writable", [r["path"] for r in ro if not r["read_only"] and r["present"] is not False])
        # Docker masks or protects only what exists; paths this kernel lacks need neither
        absent = [m["path"] for m in masked if not m["masked"] and m["present"] is False]
        absent += [r["path"] for r in ro if not r["read_only"] and r["present"] is False]
        if absent:
            wrapped("absent", absent)

    keeper = p["keeper"]
    if keeper["pid"] is not None:
        lines += ["", "Keeper"]
    elif keeper["chain"]:
        lines += ["", "Keeper  (none: every ancestor shares its pid namespace)"]
    else:
        lines += ["", "Keeper  (none: no ancestors)"]
    for a in keeper["chain"]:
        rss = "-" if a["vm_rss_kb"] is None else f"{a['vm_rss_kb'] / 1024:.1f}M"
        mark = "keeper" if a["keeper"] else ""
        line = f"  {a['pid']:<8}{a['comm'][:15]:<16}{rss:>8}  {mark:<7}{a['cmdline']}"
        lines.append(line[:_WIDTH + 40].rstrip())
    if doc["unreadable"]:
        lines += ["", "Unreadable (shown as -)"]
        lines += [f"  {u}" for u in doc["unreadable"]]
    return "\n".join(lines) + "\n"


def _cap_words(names: list[str], last_cap: int | None) -> list[str]:
    short = [n.removeprefix("CAP_") for n in names]
    if last_cap is not None and len(short) > (last_cap + 1) // 2:
        from ctr.spec import CAPABILITIES

        known = [c.removeprefix("CAP_") for c in CAPABILITIES[: last_cap + 1]]
        missing = [c for c in known if c not in short]
        extra = [c for c in short if c not in known]
        if not extra:
            return ["all"] + (["but"] + missing if missing else [f"({len(short)})"])
    return short


def _bytes(value: object) -> str:
    if value is None:
        return "-"
    if not isinstance(value, int):
        return str(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(value)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"
