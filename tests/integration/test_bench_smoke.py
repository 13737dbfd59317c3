"""bench/run.py end to end on tiny counts: it finishes, writes its files with every key,
and leaves nothing behind. No timing is asserted (STYLE: never timed assertions in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the benchmark runs containers: needs root")

SECTIONS = {"machine", "latency", "ratios", "monitor", "scale", "image", "help", "targets"}
LATENCY = {
    "ctr native",
    "ctr lxc",
    "ctr docker",
    "unshare+chroot",
    "runc run",
    "lxc-execute",
    "docker run",
    "python start",
    "python + import click",
    "python + import click, docker",
}
MACHINE = {"cpu", "cores", "kernel", "cgroup", "python", "runc", "lxc", "docker engine"}


def test_quick_run_writes_every_key_and_cleans_up(tmp_path: Path) -> None:
    out, work = tmp_path / "results", tmp_path / "work"
    work.mkdir()
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--runs",
            "2",
            "--max-seconds",
            "120",
            "--timeout",
            "20",
            "--only",
            "native,help",
            "--out",
            str(out),
            "--tmpdir",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]

    report = json.loads((out / "latest.json").read_text())
    assert SECTIONS <= set(report)
    assert MACHINE <= set(report["machine"])
    assert set(report["latency"]) == LATENCY
    for label, result in report["latency"].items():
        assert result["status"] in ("ok", "n/a"), (label, result)
        if result["status"] == "ok":
            assert {"median_ms", "p90_ms", "runs", "samples_ms"} <= set(result)
            assert len(result["samples_ms"]) == result["runs"] <= 2
        else:
            assert result["reason"]
    # Outside --only: reported, with the reason, never run.
    assert report["latency"]["docker run"] == {"status": "n/a", "reason": "not selected (--only)"}
    assert report["image"]["import"]["status"] == "n/a"
    assert set(report["monitor"]) >= {"ctr native", "lxc-start -d (LXC monitor)", "docker run -d (containerd-shim)"}
    assert set(report["scale"]) == {"native", "lxc", "docker"}
    assert report["help"]["wall"]["status"] in ("ok", "n/a")
    assert {"ctr native / runc run", "ctr docker / docker run"} <= set(report["ratios"])
    assert all({"target", "status"} <= set(t) for t in report["targets"])

    # latest.* plus one timestamped copy of each; the markdown has every section.
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".json", ".md", ".md"]
    md = (out / "latest.md").read_text()
    assert all(f"## {n}." in md for n in range(1, 7)) and "## Targets" in md

    # Everything the run made (private ctr root, rootfs copy, runc state) is gone.
    assert list(work.iterdir()) == []
