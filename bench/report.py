"""The report: its empty shape (every key present, "not run"), the issue's targets judged
against it, the markdown rendering, and writing latest.{md,json} plus timestamped copies."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from harness import BACKENDS, is_ok, na
from image_import import IMAGE_COMMANDS
from keepers import MONITORS
from latency import LATENCY


def empty_report(args: argparse.Namespace) -> dict:
    pending = na("not run")
    return {
        "schema": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "started_epoch": time.time(),
        "duration_s": 0.0,
        "interrupted": False,
        "args": {
            "runs": args.runs,
            "quick": args.quick,
            "max_seconds": args.max_seconds,
            "timeout": args.timeout,
            "scale": args.scale,
            "only": sorted(args.only),
        },
        "machine": {},
        "latency": {label: pending for label, _ in LATENCY},
        "ratios": {},
        "monitor": {label: pending for label, _ in MONITORS},
        "scale": {backend: pending for backend in BACKENDS},
        "image": {label: pending for label in IMAGE_COMMANDS},
        "help": {"wall": pending, "importtime": pending},
        "targets": [],
    }


def targets(report: dict) -> list[dict]:
    """The issue's targets, each with its value and met / not met (or n/a and why)."""
    rows = []

    def add(name: str, value: float | None, op: str, limit: float, why: str = "") -> None:
        if value is None:
            rows.append({"target": name, "limit": f"{op} {limit:g}", **na(why or "not measured")})
        else:
            met = value <= limit if op == "<=" else value < limit
            rows.append({"target": name, "limit": f"{op} {limit:g}", "status": "ok", "value": value, "met": met})

    for label, limit in (
        ("ctr native / runc run", 1.5),
        ("ctr native / docker run", 0.25),
        ("ctr docker / docker run", 1.10),
        ("ctr lxc / lxc-execute", 1.5),
    ):
        r = report["ratios"][label]
        add(label, r.get("value"), "<=", limit, r.get("reason", ""))

    mon = report["monitor"]
    native = mon["ctr native"]
    for other, op, limit in (("lxc-start -d (LXC monitor)", "<=", 1.0), ("docker run -d (containerd-shim)", "<", 1.0)):
        ref = mon[other]
        value = why = None
        if is_ok(native) and is_ok(ref) and ref["rss_kib"]:
            value = round(native["rss_kib"] / ref["rss_kib"], 3)
        else:
            why = native.get("reason") or ref.get("reason") or "no keeper RSS"
        add(f"native monitor RSS / {other.split('(')[1].rstrip(')')} RSS", value, op, limit, why)

    imp = report["image"]
    if is_ok(imp.get("import")) and is_ok(imp.get("tar -x")):
        add("ctr image import / tar -x", round(imp["import"]["median_ms"] / imp["tar -x"]["median_ms"], 3), "<=", 1.3)
    else:
        add(
            "ctr image import / tar -x",
            None,
            "<=",
            1.3,
            (imp.get("import") or {}).get("reason") or (imp.get("tar -x") or {}).get("reason", ""),
        )

    wall = report["help"]["wall"]
    add("ctr --help (ms, median)", wall.get("median_ms"), "<", 100, wall.get("reason", ""))

    for backend, r in report["scale"].items():
        name = f"{backend}: containers linear, no failure"
        if not is_ok(r):
            rows.append({"target": name, "limit": "growth <= 1.5, 0 failures", **na(r.get("reason", ""))})
            continue
        g = r["growth"]
        rows.append(
            {
                "target": f"{backend}: {g['from']} -> {g['to']} containers linear, no failure",
                "limit": "growth <= 1.5, 0 failures",
                "status": "ok",
                "value": f"start x{g['start_per_container_ms']}, rm x{g['rm_per_container_ms']}",
                "met": g["linear"] and g["no_failure"],
            }
        )
    return rows


def fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# ctr benchmark, {report['started']}", ""]
    if report.get("interrupted"):
        lines += ["**Interrupted: partial results.**", ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in m.items()] + [""]
    a = report["args"]
    lines += [
        f"Runs per command: {a['runs']} (one uncounted warm-up each), round-robin; "
        f"whole run {report['duration_s']:.0f} s{' (--quick)' if a['quick'] else ''}"
        f"{', --only ' + ','.join(a['only']) if a['only'] else ''}.",
        "",
    ]

    lines += [
        "## 1. `run --rm busybox true`",
        "",
        "| command | median ms | p90 ms | min ms | runs | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, r in report["latency"].items():
        lines.append(row(label, r))
    lines += ["", "## 2. Overhead ratios (medians)", "", "| ratio | value |", "|---|---:|"]
    for label, r in report["ratios"].items():
        lines.append(f"| {label} | {fmt(r['value'], 2) if is_ok(r) else 'n/a: ' + cell(r['reason'])} |")

    lines += [
        "",
        "## 3. Memory of the process keeping one detached `sleep` container",
        "",
        "| container made by | keeper process | VmRSS MiB | PSS MiB |",
        "|---|---|---:|---:|",
    ]
    for label, r in report["monitor"].items():
        if is_ok(r):
            process = " ".join(Path(w).name if w.startswith("/") else w for w in r["process"].split())
            lines.append(
                f"| {label} | `{cell(process[:80])}` | {r['rss_kib'] / 1024:.1f} | {r['pss_kib'] / 1024:.1f} |"
            )
        else:
            lines.append(f"| {label} | n/a: {cell(r['reason'])} | | |")

    lines += [
        "",
        "## 4. Scale: detached containers (`run -d`, `ps`, `rm -f`)",
        "",
        "| backend | containers | start total s | start ms/container | ps ms | rm total s | rm ms/container | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    growth_lines = []
    for backend, r in report["scale"].items():
        if not is_ok(r):
            lines.append(f"| {backend} | n/a: {cell(r['reason'])} | | | | | | |")
            continue
        for key, s in r.items():
            if key.isdigit():
                lines.append(
                    f"| {backend} | {s['containers']} | {s['start_total_s']:.2f} | {fmt(s['start_per_container_ms'])} "
                    f"| {fmt(s['ps_ms'])} | {s['rm_total_s']:.2f} | {fmt(s['rm_per_container_ms'])} | {s['failures']}"
                    f"{': ' + cell(s['errors'][0]) if s['errors'] else ''} |"
                )
        g = r["growth"]
        growth_lines.append(
            f"- {backend}, {g['from']} -> {g['to']}: start per container x{g['start_per_container_ms']}, "
            f"rm per container x{g['rm_per_container_ms']}, ps x{g['ps_ms']}: "
            f"{'linear' if g['linear'] else 'NOT linear'}, {'no failure' if g['no_failure'] else 'FAILURES'}"
        )
    lines += [""] + growth_lines

    img = report["image"]
    lines += [
        "",
        f"## 5. Image import ({img.get('tarball_mb', '?')} MB root-filesystem tarball)",
        "",
        "| command | median ms | p90 ms | min ms | runs | note |",
        "|---|---:|---:|---:|---:|---|",
        row("ctr image import", img["import"]),
        row("tar -x", img["tar -x"]),
        row("ctr image import, then create a container", img["import + create"]),
        "",
        "Import stores the layer as it came (hashed and checked); the first container made from",
        "the image unpacks it, hence the third row: what a user waits for before a first run.",
    ]

    h = report["help"]
    lines += [
        "",
        "## 6. `ctr --help`",
        "",
        "| command | median ms | p90 ms | min ms | runs | note |",
        "|---|---:|---:|---:|---:|---|",
        row("ctr --help", h["wall"]),
        "",
    ]
    it = h["importtime"]
    if is_ok(it):
        lines += [
            f"`python -X importtime`: {it['total_ms']} ms of imports; top 10 by cumulative time:",
            "",
            "| module | cumulative ms | self ms |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {'&nbsp;' * 2 * t['depth']}{t['module']} | {t['cumulative_us'] / 1000:.1f} | {t['self_us'] / 1000:.1f} |"
            for t in it["top"]
        ]
    else:
        lines.append(f"importtime: n/a: {cell(it['reason'])}")

    lines += ["", "## Targets", "", "| target | limit | value | result |", "|---|---|---:|---|"]
    for t in report["targets"]:
        if is_ok(t):
            value = t["value"] if isinstance(t["value"], str) else f"{t['value']:g}"
            lines.append(f"| {t['target']} | {t['limit']} | {value} | {'met' if t['met'] else '**not met**'} |")
        else:
            lines.append(f"| {t['target']} | {t['limit']} | | n/a: {cell(t['reason'])} |")
    return "\n".join(lines) + "\n"


def cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def row(label: str, r: dict) -> str:
    if not is_ok(r):
        return f"| {label} | | | | | n/a: {cell(r['reason'])} |"
    note = "; ".join(
        x
        for x in (
            f"{r['failures']} failed: {cell(r.get('last_error', ''))}" if r["failures"] else "",
            r.get("note", ""),
        )
        if x
    )
    return f"| {label} | {fmt(r['median_ms'])} | {fmt(r['p90_ms'])} | {fmt(r['min_ms'])} | {r['runs']} | {note} |"


def write_results(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(report["started_epoch"]))
    texts = {"json": json.dumps(report, indent=1) + "\n", "md": markdown(report)}
    written = []
    for ext, text in texts.items():
        for name in (f"{stamp}.{ext}", f"latest.{ext}"):
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)
            written.append(out / name)
    return written
