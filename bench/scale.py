"""Section 4: start, list and remove many detached containers per backend (10 and 50 by
default), and whether the per-container cost stays linear from the small count to the large one."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from fixtures import SLEEP, docker_cleanup, require_backend
from harness import BACKENDS, Bench, Deadline, NotAvailable, na
from timing import MAX_FAILURES


def measure_scale(b: Bench) -> dict[str, dict]:
    out = {}
    for backend in BACKENDS:
        if not b.selected({backend, "scale"}):
            out[backend] = na("not selected (--only)")
            continue
        try:
            require_backend(b, backend)
            out[backend] = scale_backend(b, backend)
        except NotAvailable as exc:
            out[backend] = na(str(exc))
            b.say(f"  scale {backend}: n/a: {exc}")
    return out


def scale_backend(b: Bench, backend: str) -> dict:
    if backend == "docker":
        docker_cleanup(b)
    result: dict = {"status": "ok"}
    for n in b.args.scale:
        check_memory(n)
        b.say(f"4. scale {backend}: {n} detached containers")
        result[str(n)] = scale_round(b, backend, n)
    small, large = (result[str(n)] for n in (b.args.scale[0], b.args.scale[-1]))
    growth = {
        k: round(large[k] / small[k], 2) if small[k] and large[k] else None
        for k in ("start_per_container_ms", "rm_per_container_ms", "ps_ms")
    }
    result["growth"] = {
        "from": b.args.scale[0],
        "to": b.args.scale[-1],
        **growth,
        # Per-container cost that grows less than 1.5x from the small count to the large one is linear.
        "linear": all(
            g is not None and g <= 1.5 for g in (growth["start_per_container_ms"], growth["rm_per_container_ms"])
        ),
        "no_failure": small["failures"] == 0 and large["failures"] == 0,
    }
    return result


def scale_round(b: Bench, backend: str, n: int) -> dict:
    """Start n detached containers one after the other, list them, remove them one by one."""
    ctr = b.ctr_on(backend)
    names = [f"ctrbench-{b.run_id}-{backend[0]}{n}-{i}" for i in range(n)]
    for name in names:  # before starting: a run killed half-way is still cleaned up
        b.defer(f"ctr {backend} container {name}", lambda name=name: b.quiet(ctr + ["rm", "-f", name]), skippable=True)
    started, errors, start_s, ps = [], [], 0.0, []
    removed, rm_s = 0, 0.0
    try:
        for name in names:
            try:
                start_s += b.timed(ctr + ["run", "-d", "--name", name, "-l", f"ctrbench={b.run_id}", "busybox", *SLEEP])
                started.append(name)
            except Deadline:
                raise
            except NotAvailable as exc:
                errors.append(f"run -d: {exc}")
                if not started:  # the very first one failed: this backend cannot do it (yet)
                    raise NotAvailable(f"ctr run -d: {exc}") from None
                if len(errors) >= MAX_FAILURES:
                    break
        for _ in range(3):
            try:
                ps.append(b.timed(ctr + ["ps"]))
            except Deadline:
                raise
            except NotAvailable as exc:
                errors.append(f"ps: {exc}")
                break
    finally:
        for name in started:
            try:
                rm_s += b.timed(ctr + ["rm", "-f", name])
                removed += 1
                b.done(f"ctr {backend} container {name}")
            except NotAvailable as exc:
                errors.append(f"rm -f: {exc}")
                if "timed out" in str(exc) or isinstance(exc, Deadline):
                    break  # the rest would hang as well: the final cleanup and sweep take them
    return {
        "containers": n,
        "started": len(started),
        "removed": removed,
        "failures": len(errors),
        "errors": errors[:3],
        "start_total_s": round(start_s, 3),
        "start_per_container_ms": round(1000 * start_s / len(started), 1) if started else None,
        "ps_ms": round(1000 * statistics.median(ps), 1) if ps else None,
        "rm_total_s": round(rm_s, 3),
        "rm_per_container_ms": round(1000 * rm_s / removed, 1) if removed else None,
    }


def check_memory(n: int, per_container_mib: int = 40) -> None:
    """Refuse a count that could push the machine into swap or the OOM killer."""
    meminfo = Path("/proc/meminfo").read_text()
    available = int(re.search(r"^MemAvailable:\s+(\d+)", meminfo, re.M).group(1)) >> 10
    if available < 2 * n * per_container_mib:
        raise NotAvailable(f"{n} containers need about {n * per_container_mib} MiB; only {available} MiB available")
