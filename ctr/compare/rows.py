"""What `ctr compare` compares: the rows of its table, one per feature of the explain
documents (namespaces, cgroups, capabilities, security, root filesystem, keeper), the exit
code and the cost measurements, each with its readable cell and whether the backends differ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from ctr.spec import CAPABILITIES, DEFAULT_CAPS

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
CAP_SETS = (
    ("CapEff", "effective"),
    ("CapPrm", "permitted"),
    ("CapBnd", "bounding"),
    ("CapInh", "inheritable"),
    ("CapAmb", "ambient"),
)

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
    (
        "security.seccomp_profile",
        "security",
        "seccomp profile",
        lambda doc: (doc["security"].get("seccomp_profile") or {}).get("profile"),
    ),
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
    rows.append(
        _row(
            "run.exit_code",
            "run",
            "exit code",
            codes,
            {b: "-" if codes[b] is None else str(codes[b]) for b in names},
            ran,
        )
    )

    def cost(key: str, label: str, values: dict, fmt: Callable[[object], str]) -> None:
        rows.append(_row(key, "cost", label, values, {b: "-" if v is None else fmt(v) for b, v in values.items()}, []))

    for step in ("create", "start", "total"):
        cost(
            f"cost.{step}_ms",
            f"{step} (ms)" if step != "total" else "total run (ms)",
            {b: timings[b].get(f"{step}_ms") for b in names},
            lambda v: f"{v:.1f}",
        )
    keepers = {b: keeper_of(docs[b]) if docs[b] is not None else None for b in names}
    cost(
        "cost.keeper_rss_kb",
        "keeper RSS",
        {b: k["vm_rss_kb"] if k else None for b, k in keepers.items()},
        lambda v: human_bytes(v * 1024),
    )
    layers = {b: (results[b].get("explain") or {}).get("writable_layer") for b in names}
    cost(
        "cost.writable_layer_bytes",
        "writable layer",
        {b: layer["bytes"] if layer else None for b, layer in layers.items()},
        human_bytes,
    )
    after = {b: timings[b].get("writable_layer") for b in names}
    cost(
        "cost.writable_layer_after_bytes",
        "writable layer after CMD",
        {b: layer["bytes"] if layer else None for b, layer in after.items()},
        human_bytes,
    )
    return rows


def _row(key: str, group: str, label: str, values: dict, display: dict, compared: list[str]) -> dict:
    distinct = {json.dumps(values[b], sort_keys=True) for b in compared}
    return {
        "key": key,
        "group": group,
        "label": label,
        "compared": bool(compared) and group != "cost",
        "differs": len(distinct) > 1,
        "values": values,
        "display": display,
    }


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
    forms = [
        " ".join(
            [f"default {len(default)}"]
            + [f"-{c}" for c in short(default - have)]
            + [f"+{c}" for c in short(have - default)]
        )
    ]
    if last_cap is not None:
        known = set(CAPABILITIES[: last_cap + 1])
        if have <= known:
            forms.append(" ".join([f"all {len(known)}"] + [f"-{c}" for c in short(known - have)]))
    forms.append(" ".join(short(have)))
    return min(forms, key=lambda f: len(f.split()))  # min keeps the first of equals: default, all, names


def keeper_of(doc: dict) -> dict | None:
    """The keeper entry of an explain document's chain: {"pid", "comm", "cmdline", "vm_rss_kb"}."""
    for entry in doc["process"]["keeper"]["chain"]:
        if entry["keeper"]:
            return {k: entry[k] for k in ("pid", "comm", "cmdline", "vm_rss_kb")}
    return None
