"""The cgroups section of `ctr explain`: a process's cgroups, limits and device policy, as the kernel holds them.

Read from /proc/PID/cgroup and the cgroup filesystem under `cgroup_root`, for v1, v2
and hybrid hosts alike, whichever runtime made the cgroup (docs/explain-schema.md).
"""

from __future__ import annotations

from pathlib import Path

from ctr.native.cgroups.limits import V1_UNLIMITED
from ctr.native.explain_files import read_optional


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


def cgroups_section(proc_cgroup: str, cgroup_root: Path) -> dict:
    """The document's "cgroups" from the text of /proc/PID/cgroup."""
    entries = parse_proc_cgroup(proc_cgroup)
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
        text = read_optional(v1_dir / "devices.list")
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
        doc["programs"].append(
            {"id": prog.id, "name": prog.name, "tag": prog.tag, "insns": prog.insns, "decoded": rules is not None}
        )
        decoded.append(rules)
    if len(decoded) == 1 and decoded[0] is not None:
        default, rules = decoded[0]
        # in devices.list terms: what a deny-all list would show, or every deny rule of an allow-all
        doc.update(default="allow" if default else "deny", rules=[str(r) for r in rules if r.allow != default])
    return doc


def cgroup_limits(v1: dict[str, Path], v2: Path | None) -> tuple[dict, dict]:
    """Limits and usage from the cgroup files, v1 controllers first, then the v2 directory.

    `v1` maps a controller name to its directory. Returns (limits, sources): every figure
    with the file it was read from; a figure whose file does not exist is None.
    """
    limits: dict = dict.fromkeys(
        (
            "memory",
            "memory_usage",
            "cpus",
            "cpu_quota_us",
            "cpu_period_us",
            "cpu_shares",
            "cpu_weight",
            "pids",
            "pids_current",
            "freezer",
        )
    )
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
        events = read_optional(v2 / "cgroup.events") or ""
        frozen = "frozen 1" in events.splitlines()
        limits["freezer"] = "thawed" if text == "0" else "frozen" if frozen else "freezing"

    if limits["cpu_quota_us"] is not None and limits["cpu_period_us"]:
        limits["cpus"] = round(limits["cpu_quota_us"] / limits["cpu_period_us"], 3)
    return limits, sources
