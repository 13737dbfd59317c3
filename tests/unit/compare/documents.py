"""Synthetic explain documents and compare results, for the compare tests."""

from __future__ import annotations

from ctr.compare.rows import build_rows, keeper_of
from ctr.spec import CAPABILITIES, DEFAULT_CAPS, ContainerSpec

NO_NET_RAW = [c for c in CAPABILITIES if c in DEFAULT_CAPS and c != "CAP_NET_RAW"]


def make_doc(
    *,
    memory: object = 64 << 20,
    pids: object = 50,
    caps: list[str] = NO_NET_RAW,
    seccomp: str = "disabled",
    filters: int = 0,
    keeper: str = "ctr",
    rss_kb: int = 20480,
    own_user_ns: bool = False,
) -> dict:
    """The parts of an explain document (docs/explain-schema.md) that the rows read."""
    shared = {"user", "time"} - ({"user"} if own_user_ns else set())
    cap_set = {"hex": "0", "names": caps}
    identity = [[0, 0, 4294967295]]
    return {
        "schema_version": 1,
        "pid": 4242,
        "process": {
            "pid": 4242,
            "comm": "sleep",
            "keeper": {
                "pid": 4240,
                "chain": [
                    {
                        "pid": 4240,
                        "comm": keeper,
                        "cmdline": keeper,
                        "vm_rss_kb": rss_kb,
                        "in_pid_namespace": False,
                        "keeper": True,
                    },
                    {
                        "pid": 1,
                        "comm": "systemd",
                        "cmdline": "/sbin/init",
                        "vm_rss_kb": 9000,
                        "in_pid_namespace": False,
                        "keeper": False,
                    },
                ],
            },
        },
        "namespaces": {
            ns: {"inode": 1, "host_inode": 1 if ns in shared else 2, "shared_with_host": ns in shared}
            for ns in ("pid", "net", "mnt", "uts", "ipc", "user", "cgroup", "time")
        },
        "cgroups": {
            "mode": "v2",
            "limits": {
                "memory": memory,
                "memory_usage": 1 << 20,
                "cpus": None,
                "cpu_quota_us": None,
                "cpu_period_us": 100000,
                "cpu_shares": None,
                "cpu_weight": 100,
                "pids": pids,
                "pids_current": 1,
                "freezer": "thawed",
            },
        },
        "capabilities": {
            "CapEff": cap_set,
            "CapPrm": cap_set,
            "CapBnd": cap_set,
            "CapInh": {"hex": "0", "names": []},
            "CapAmb": {"hex": "0", "names": []},
            "last_cap": 40,
        },
        "security": {
            "seccomp_mode": 2 if seccomp == "filter" else 0,
            "seccomp": seccomp,
            "seccomp_filters": filters,
            "no_new_privs": True,
            "uid": {"real": 0, "effective": 0, "saved": 0, "filesystem": 0},
            "gid": {"real": 0, "effective": 0, "saved": 0, "filesystem": 0},
            "uid_map": identity,
            "uid_map_identity": True,
            "gid_map": identity,
            "gid_map_identity": True,
        },
        "rootfs": {"fstype": "overlay", "read_only": False},
        "masked_paths": [
            {"path": "/proc/kcore", "present": True, "masked": True, "by": "/dev/null"},
            {"path": "/proc/scsi", "present": False, "masked": False, "by": None},
        ],
        "readonly_paths": [{"path": "/proc/sys", "present": True, "read_only": True, "mount_point": "/proc/sys"}],
        "unreadable": [],
    }


def make_result(doc: dict | None, exit_code: int | None = 0, total: float | None = 100.0) -> dict:
    keeper = keeper_of(doc) if doc else None
    layer = {"path": "/x/upper", "bytes": 4096, "files": 1, "reason": None}
    return {
        "backend": "?",
        "versions": {},
        "explain": {
            "name": "e",
            "pid": 4242 if doc else None,
            "doc": doc,
            "keeper": keeper,
            "writable_layer": layer if doc else None,
        },
        "timing": {
            "name": "r",
            "create_ms": 2.5,
            "start_ms": 40.0,
            "total_ms": total,
            "exit_code": exit_code,
            "start_error": None,
            "writable_layer": layer,
        },
        "errors": [],
    }


def rows_by_key(rows: list[dict]) -> dict[str, dict]:
    return {r["key"]: r for r in rows}


def result_with_difference() -> dict:
    results = {
        "native": make_result(make_doc()),
        "lxc": make_result(make_doc()),
        "docker": make_result(make_doc(seccomp="filter", filters=1), total=None),
    }
    results["docker"]["timing"]["total_ms"] = None  # a missing bar
    rows = build_rows(results)
    return {
        "schema_version": 1,
        "spec": ContainerSpec(
            image="busybox", command=("sleep", "1"), memory=64 << 20, pids_limit=50, cap_drop=("NET_RAW",)
        ).to_dict(),
        "name_prefix": "compare-x",
        "explain_command": ["sleep", "600"],
        "machine": {
            "hostname": "h",
            "kernel": "6.1.0",
            "arch": "x86_64",
            "os": "Debian",
            "cgroup": "v2",
            "cpus": 2,
            "memory_bytes": 1 << 30,
            "date": "2024-01-01T00:00:00+00:00",
            "ctr_version": "0.1.0",
        },
        "backends": list(results),
        "results": results,
        "rows": rows,
        "differences": [r["key"] for r in rows if r["differs"]],
    }
