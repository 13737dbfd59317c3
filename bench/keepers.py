"""Section 3: memory of the process that keeps one detached container (ctr's native monitor,
LXC's monitor, containerd-shim): the parent of the container's PID 1, read from /proc."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fixtures import SLEEP, docker_cleanup, engine_image, lxc_config, require_backend
from harness import Bench, NotAvailable, last_line, na
from sweep import parent_of

MONITORS = [
    ("ctr native", {"native"}),
    ("ctr lxc", {"lxc"}),
    ("ctr docker", {"docker"}),
    ("lxc-start -d (LXC monitor)", {"lxc", "refs"}),
    ("docker run -d (containerd-shim)", {"docker", "refs"}),
]


def proc_memory(pid: int) -> dict:
    """VmRSS and PSS (kB) of a process, with what it is."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) if "VmRSS" in status else 0
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    pss = int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return {
        "pid": pid,
        "process": cmdline[:300] or Path(f"/proc/{pid}/comm").read_text().strip(),
        "rss_kib": rss,
        "pss_kib": pss,
    }


def find_pid(doc: object) -> int | None:
    """The first positive integer under a key called pid/Pid anywhere in a JSON document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key.lower() == "pid" and isinstance(value, int) and value > 0:
                return value
        for value in doc.values():
            found = find_pid(value)
            if found:
                return found
    elif isinstance(doc, list):
        for value in doc:
            found = find_pid(value)
            if found:
                return found
    return None


def ctr_container_pid(b: Bench, backend: str, name: str) -> int:
    """PID 1 of a ctr container, host view: `ctr inspect`, else its record, else the engine."""
    r = b.sh(b.ctr_on(backend) + ["inspect", name], check=False)
    if r.returncode == 0:
        try:
            doc = json.loads(r.stdout)
            doc = doc[0] if isinstance(doc, list) and doc else doc
            pid = (doc.get("state") or {}).get("pid") or find_pid(doc)  # schema 1 has state.pid
            if pid:
                return pid
        except (ValueError, AttributeError):
            pass
    record = b.root / "containers" / name / "record.json"
    if record.exists():
        pid = find_pid(json.loads(record.read_text()))
        if pid:
            return pid
    if backend == "docker":
        r = b.sh(["docker", "inspect", "--format", "{{.State.Pid}}", name], check=False)
        if r.returncode == 0 and r.stdout.strip().isdigit() and int(r.stdout) > 0:
            return int(r.stdout)
    raise NotAvailable(f"cannot find PID 1 of container {name}: `ctr inspect` gave no pid ({last_line(r.stderr)})")


def keeper_memory(b: Bench, pid1: int, settle: float) -> dict:
    """Memory of PID 1's parent: the process that exists only to keep the container."""
    time.sleep(settle)  # let the keeper finish starting up before reading its memory
    keeper = parent_of(pid1)
    if keeper <= 1:
        return {
            "status": "ok",
            "rss_kib": 0,
            "pss_kib": 0,
            "process": "none: PID 1 is reparented to init",
            "container_pid": pid1,
        }
    return {"status": "ok", **proc_memory(keeper), "container_pid": pid1}


def monitor_ctr(b: Bench, backend: str, settle: float) -> dict:
    require_backend(b, backend)
    name = f"ctrbench-{b.run_id}-mon-{backend}"
    key = f"ctr {backend} container {name}"
    b.defer(key, lambda: b.quiet(b.ctr_on(backend) + ["rm", "-f", name]), skippable=True)
    if backend == "docker":
        docker_cleanup(b)
    try:
        b.sh(
            b.ctr_on(backend) + ["run", "-d", "--name", name, "-l", f"ctrbench={b.run_id}", "busybox", *SLEEP],
            timeout=120,
        )
        return keeper_memory(b, ctr_container_pid(b, backend, name), settle)
    finally:
        r = b.quiet(b.ctr_on(backend) + ["rm", "-f", name], timeout=30)
        if r and r.returncode == 0:
            b.done(key)


def monitor_lxc(b: Bench, settle: float) -> dict:
    lxcpath, conf = lxc_config(b)
    name = f"ctrbench-{b.run_id}-mon"
    stop = ["lxc-stop", "-P", str(lxcpath), "-n", name, "-k"]
    try:
        b.sh(
            [
                "lxc-start",
                "-P",
                str(lxcpath),
                "-n",
                name,
                "-f",
                str(conf),
                "-d",
                "-o",
                str(b.tmp / "lxc-start.log"),
                "-l",
                "ERROR",
                "--",
                "/bin/sleep",
                "600",
            ]
        )
        r = b.sh(["lxc-info", "-P", str(lxcpath), "-n", name, "-p", "-H"])
        return keeper_memory(b, int(r.stdout), settle)
    finally:
        b.quiet(stop)


def monitor_docker(b: Bench, settle: float) -> dict:
    image = engine_image(b)
    docker_cleanup(b)
    r = b.sh(["docker", "run", "-d", "--rm", "--network", "none", "--label", f"ctrbench={b.run_id}", image, *SLEEP])
    cid = r.stdout.decode().strip()
    try:
        r = b.sh(["docker", "inspect", "--format", "{{.State.Pid}}", cid])
        return keeper_memory(b, int(r.stdout), settle)
    finally:
        b.quiet(["docker", "rm", "-f", cid])


def measure_monitors(b: Bench) -> dict[str, dict]:
    settle = 0.3 if b.args.quick else 1.0
    makers = {
        "ctr native": lambda: monitor_ctr(b, "native", settle),
        "ctr lxc": lambda: monitor_ctr(b, "lxc", settle),
        "ctr docker": lambda: monitor_ctr(b, "docker", settle),
        "lxc-start -d (LXC monitor)": lambda: monitor_lxc(b, settle),
        "docker run -d (containerd-shim)": lambda: monitor_docker(b, settle),
    }
    out = {}
    for label, tags in MONITORS:
        if not b.selected(tags | {"monitor"}):
            out[label] = na("not selected (--only)")
            continue
        b.say(f"3. keeper memory: {label}")
        try:
            out[label] = makers[label]()
        except (NotAvailable, OSError, ValueError, AttributeError) as exc:
            out[label] = na(str(exc))
            b.say(f"  {label}: n/a: {exc}")
    return out
