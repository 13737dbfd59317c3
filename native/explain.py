"""What the kernel says about one process: namespaces, cgroups, capabilities, mounts, keeper.

Everything here is read from /proc and the cgroup filesystem, never from a runtime's own
state, so the same document can be produced for a process started by any backend (or by
none) and compared field by field. The document's layout is versioned and described in
docs/explain-schema.md; bump SCHEMA_VERSION when a field changes meaning or disappears.
This module assembles the document and reads the process itself (status, keeper chain,
namespaces, capabilities, security); the cgroup and mount sections have their own modules
(explain_cgroups, explain_mounts), and explain_table renders the document as text.

All reads go through `proc` and `cgroup_root`, so the unit tests point them at a fake tree.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ctr.errors import CtrError, NotFound
from ctr.native.caps import names as cap_names
from ctr.native.explain_cgroups import cgroups_section
from ctr.native.explain_files import read_optional, read_text
from ctr.native.explain_mounts import masked_paths, parse_mountinfo, readonly_paths, rootfs_of

SCHEMA_VERSION = 1

NAMESPACES = ("pid", "net", "mnt", "uts", "ipc", "user", "cgroup", "time")
CAP_SETS = ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}

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
            "cgroups": cgroups_section(read_text(base / "cgroup"), cgroup_root),
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


def _status(base: Path) -> dict[str, str]:
    out = {}
    for line in read_text(base / "status").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


# -- process and keeper ------------------------------------------------------------------


def _process(base: Path, pid: int, status: dict[str, str], proc: Path) -> dict:
    nspid = [int(p) for p in status["NSpid"].split()] if "NSpid" in status else None
    cmdline = _cmdline(read_text(base / "cmdline"))
    return {
        "pid": pid,
        "comm": read_text(base / "comm").rstrip("\n"),
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


def short_cmdline(args: list[str], comm: str) -> str:
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
            comm = read_text(base / "comm").rstrip("\n")
            args = _cmdline(read_text(base / "cmdline"))
        except OSError:
            break  # the ancestor exited while we walked: the chain ends where we lost it
        nspid = status.get("NSpid", "").split()
        inside = None if depth is None or not nspid else len(nspid) >= depth
        is_keeper = keeper is None and inside is False
        if is_keeper:
            keeper = pid
        rss = status.get("VmRSS")
        chain.append(
            {
                "pid": pid,
                "comm": comm,
                "cmdline": short_cmdline(args, comm),
                "vm_rss_kb": int(rss.split()[0]) if rss else None,
                "in_pid_namespace": inside,
                "keeper": is_keeper,
            }
        )
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


# -- capabilities and security -----------------------------------------------------------


def _capabilities(status: dict[str, str], proc: Path) -> dict:
    out: dict = {}
    for key in CAP_SETS:
        if key in status:
            value = int(status[key], 16)
            out[key] = {"hex": status[key], "names": cap_names(value)}
        else:
            out[key] = None  # CapAmb is missing before Linux 4.3
    last = read_optional(proc / "sys" / "kernel" / "cap_last_cap")
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


def _security(base: Path, status: dict[str, str]) -> dict:
    mode = int(status["Seccomp"]) if "Seccomp" in status else None
    uid_map = parse_id_map(read_optional(base / "uid_map"))
    gid_map = parse_id_map(read_optional(base / "gid_map"))
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


# -- mounts (made sense of in explain_mounts) ----------------------------------------------


def _mounts(base: Path, unreadable: list[str]) -> dict:
    """rootfs, masked_paths and readonly_paths, all None when mountinfo may not be read."""
    try:
        mounts = parse_mountinfo(read_text(base / "mountinfo"))
    except PermissionError as exc:
        unreadable.append(_why(exc))
        return dict.fromkeys(("rootfs", "masked_paths", "readonly_paths"))
    return {
        "rootfs": rootfs_of(mounts),
        "masked_paths": masked_paths(mounts, base / "root"),
        "readonly_paths": readonly_paths(mounts, base / "root"),
    }
