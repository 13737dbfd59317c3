"""`ctr explain`'s table: the explain document as plain text, one section per kernel feature.

Rendering only: the document comes from ctr.native.explain.explain_pid (or from JSON that
it wrote), and every row here is derived from its fields (docs/explain-schema.md).
"""

from __future__ import annotations

import textwrap

from ctr.native.explain import CAP_SETS, short_cmdline
from ctr.spec import CAPABILITIES

_WIDTH = 78
_LABEL = 16


class _Table:
    """The lines rendered so far, and the two row shapes: one value, or words wrapped under a label."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def row(self, label: str, value: object) -> None:
        text = f"  {label:<{_LABEL}}{value}"
        self.lines.append(text.rstrip())

    def wrapped(self, label: str, words: list[str]) -> None:
        body = textwrap.wrap(" ".join(words) or "none", _WIDTH - _LABEL - 2) or ["none"]
        self.row(label, body[0])
        for more in body[1:]:
            self.row("", more)


def render_table(doc: dict) -> str:
    """Plain-text rendering of an explain document, one section per kernel feature."""
    t = _Table()
    p = doc["process"]
    _process_rows(t, p)
    _namespace_rows(t, doc["host_reference"], doc["namespaces"])
    _cgroup_rows(t, doc["cgroups"])
    _capability_rows(t, doc["capabilities"])
    _security_rows(t, doc["security"])
    _rootfs_rows(t, doc)
    _keeper_rows(t, p["keeper"])
    if doc["unreadable"]:
        t.lines += ["", "Unreadable (shown as -)"]
        t.lines += [f"  {u}" for u in doc["unreadable"]]
    return "\n".join(t.lines) + "\n"


def _process_rows(t: _Table, p: dict) -> None:
    t.lines.append(f"Process {p['pid']}")
    ns_pid = f"  (pid {p['ns_pid']} in its pid namespace)" if p["ns_pid"] not in (None, p["pid"]) else ""
    t.row("comm", f"{p['comm']}{ns_pid}")
    t.row("cmdline", short_cmdline(p["cmdline"], p["comm"])[: _WIDTH - _LABEL - 2])


def _namespace_rows(t: _Table, ref: dict, namespaces: dict) -> None:
    t.lines += ["", f"Namespaces (host = {ref['path']})"]
    if ref["fallback_reason"]:
        t.row("note", f"pid 1 unreadable ({ref['fallback_reason']})")
    for ns, info in namespaces.items():
        if info["inode"] is None:
            why = "not supported by this kernel" if info["host_inode"] is None else "unreadable"
            t.lines.append(f"  {ns:<8}{'-':<12}{why}")
        else:
            t.lines.append(f"  {ns:<8}{info['inode']:<12}{'host' if info['shared_with_host'] else 'own'}")


def _cgroup_rows(t: _Table, cg: dict) -> None:
    t.lines += ["", f"Cgroups ({cg['mode']})"]
    # v1 hierarchies usually share one path: one row per path, its controllers below it
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for h in cg["hierarchies"]:
        key = ("v2 path" if h["id"] == 0 else "v1 path", h["path"], h["host_dir"] is not None)
        groups.setdefault(key, []).extend(h["controllers"])
    for (label, path, found), controllers in groups.items():
        t.row(label, path + ("" if found else "  (no directory on this host)"))
        if controllers:
            t.wrapped("", controllers)
    _limit_rows(t, cg["limits"])
    _device_rows(t, cg.get("devices"))


def _limit_rows(t: _Table, lim: dict) -> None:
    t.row("memory", f"{_bytes(lim['memory_usage'])} used of {_bytes(lim['memory'])}")
    cpus = "unlimited" if lim["cpus"] is None else f"{lim['cpus']:g}"
    if lim["cpu_period_us"] is not None:
        quota = "max" if lim["cpu_quota_us"] is None else lim["cpu_quota_us"]
        cpus += f"  (quota {quota} / period {lim['cpu_period_us']} us)"
    if lim["cpu_period_us"] is None and lim["cpu_shares"] is None and lim["cpu_weight"] is None:
        cpus = "-"
    t.row("cpus", cpus)
    if lim["cpu_shares"] is not None:
        t.row("cpu shares", lim["cpu_shares"])
    if lim["cpu_weight"] is not None:
        t.row("cpu weight", lim["cpu_weight"])
    t.row("pids", f"{_or_dash(lim['pids_current'])} of {_or_dash(lim['pids'])}")
    t.row("freezer", _or_dash(lim["freezer"]))


def _device_rows(t: _Table, dev: dict | None) -> None:
    t.row("devices", devices_text(dev))
    if dev and dev["default"] == "deny" and dev["rules"]:
        line = ""
        for rule in dev["rules"]:  # a rule is never split over two lines
            if line and len(line) + len(rule) + 2 > _WIDTH - _LABEL - 2:
                t.row("", line + ",")
                line = ""
            line += (", " if line else "") + rule
        t.row("", line)


def devices_text(dev: dict | None) -> str:
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


def _capability_rows(t: _Table, caps: dict) -> None:
    t.lines += ["", "Capabilities"]
    labels = {
        "CapEff": "effective",
        "CapPrm": "permitted",
        "CapBnd": "bounding",
        "CapInh": "inheritable",
        "CapAmb": "ambient",
    }
    for key, label in labels.items():
        if caps[key] is None:
            t.row(label, "-")
            continue
        same = next(
            (labels[k] for k in CAP_SETS[: CAP_SETS.index(key)] if caps[k] == caps[key] and caps[k]["names"]), None
        )
        if same:
            t.row(label, f"same as {same}")
        else:
            t.wrapped(label, _cap_words(caps[key]["names"], caps["last_cap"]))


def _security_rows(t: _Table, sec: dict) -> None:
    t.lines += ["", "Security"]
    seccomp = _or_dash(sec["seccomp"])
    if sec["seccomp_filters"]:
        seccomp += f" ({sec['seccomp_filters']} filter{'s' if sec['seccomp_filters'] != 1 else ''})"
    t.row("seccomp", seccomp)
    if sec.get("seccomp_profile"):
        t.row("  profile", seccomp_profile_text(sec["seccomp_profile"]))
    t.row("no_new_privs", _yes_no(sec["no_new_privs"]))
    for key in ("uid", "gid"):
        ids = sec[key]
        t.row(key, "-" if ids is None else " ".join(str(v) for v in ids.values()) + "  (real effective saved fs)")
    for key in ("uid_map", "gid_map"):
        m = sec[key]
        if m is None:
            t.row(key, "-")
        else:
            text = ", ".join(" ".join(str(v) for v in r) for r in m)
            t.row(key, ("identity  " if sec[f"{key}_identity"] else "") + f"({text})")


def seccomp_profile_text(p: dict) -> str:
    """'default: refuses 75 of 368 syscalls, 2 by argument' (ctr's record, not the kernel's)."""
    if "refused" not in p:
        return p["profile"]
    return f"{p['profile']}: refuses {p['refused']} of {p['syscalls']} syscalls, {p['by_argument']} by argument"


def _rootfs_rows(t: _Table, doc: dict) -> None:
    t.lines += ["", "Root filesystem"]
    rootfs = doc["rootfs"]
    if doc["masked_paths"] is None:
        t.row("mountinfo", "unreadable")
    elif rootfs is None:
        t.row("/", "no mount at / (chroot into a plain directory)")
    else:
        t.row("fstype", f"{rootfs['fstype']}  {'read-only' if rootfs['read_only'] else 'read-write'}")
        t.row("source", rootfs["source"])
        if rootfs["overlay"]:
            ov = rootfs["overlay"]
            for i, layer in enumerate(ov["lowerdir"]):
                t.row("lowerdir" if i == 0 else "", layer)
            t.row("upperdir", _or_dash(ov["upperdir"]))
    if doc["masked_paths"] is not None:
        _protected_path_rows(t, doc["masked_paths"], doc["readonly_paths"])


def _protected_path_rows(t: _Table, masked: list[dict], ro: list[dict]) -> None:
    t.wrapped("masked", [m["path"] for m in masked if m["masked"]])
    t.wrapped("not masked", [m["path"] for m in masked if not m["masked"] and m["present"] is not False])
    t.wrapped("read-only", [r["path"] for r in ro if r["read_only"]])
    t.wrapped("writable", [r["path"] for r in ro if not r["read_only"] and r["present"] is not False])
    # Docker masks or protects only what exists; paths this kernel lacks need neither
    absent = [m["path"] for m in masked if not m["masked"] and m["present"] is False]
    absent += [r["path"] for r in ro if not r["read_only"] and r["present"] is False]
    if absent:
        t.wrapped("absent", absent)


def _keeper_rows(t: _Table, keeper: dict) -> None:
    if keeper["pid"] is not None:
        t.lines += ["", "Keeper"]
    elif keeper["chain"]:
        t.lines += ["", "Keeper  (none: every ancestor shares its pid namespace)"]
    else:
        t.lines += ["", "Keeper  (none: no ancestors)"]
    for a in keeper["chain"]:
        rss = "-" if a["vm_rss_kb"] is None else f"{a['vm_rss_kb'] / 1024:.1f}M"
        mark = "keeper" if a["keeper"] else ""
        line = f"  {a['pid']:<8}{a['comm'][:15]:<16}{rss:>8}  {mark:<7}{a['cmdline']}"
        t.lines.append(line[: _WIDTH + 40].rstrip())


def _cap_words(names: list[str], last_cap: int | None) -> list[str]:
    short = [n.removeprefix("CAP_") for n in names]
    if last_cap is not None and len(short) > (last_cap + 1) // 2:
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
