"""The facts of the machine a run measured on (CPU, memory, kernel, cgroup version, the versions
of ctr and every runtime, load average), so results from different sittings can be compared."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from harness import Bench, NotAvailable


def first_line(b: Bench, argv: list[str]) -> str:
    """The first line a command prints (a version banner), or n/a and why."""
    try:
        r = b.sh(argv, timeout=15, check=argv[0] != "busybox")  # bare `busybox` prints its banner, exits 1
    except NotAvailable as exc:
        return f"n/a: {exc}"
    lines = (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()
    return lines[0].strip() if lines else "n/a: printed nothing"


def load_average() -> str:
    """1, 5 and 15 minute load: other work on the machine shows up as noise in every number."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cgroup_version() -> str:
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    if any(m[1] == "/sys/fs/cgroup" and m[2] == "cgroup2" for m in mounts):
        return "v2 (unified)"
    if any(m[2] == "cgroup2" for m in mounts):
        return "v1 (hybrid: v1 controllers, v2 at /sys/fs/cgroup/unified)"
    return "v1"


def machine(b: Bench) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M).group(1))
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', os_release, re.M)
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / (1 << 20), 1),
        "os": pretty.group(1) if pretty else "unknown",
        "kernel": platform.release(),
        "cgroup": cgroup_version(),
        "python": platform.python_version(),
        "ctr": first_line(b, b.ctr + ["--version"]),
        "runc": first_line(b, ["runc", "--version"]),
        "lxc": first_line(b, ["lxc-execute", "--version"]),
        "docker client": first_line(b, ["docker", "version", "--format", "{{.Client.Version}}"]),
        "docker engine": first_line(b, ["docker", "version", "--format", "{{.Server.Version}}"]),
        "busybox": first_line(b, ["busybox"]),
        "python bytecode": (
            f"as the environment has it (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')})"
            if b.args.no_bytecode_cache
            else "cached in a private PYTHONPYCACHEPREFIX"
        ),
        "load average at start": load_average(),
    }
