"""`ctr compare --format html`: the comparison as one self-contained page.

No network: inline CSS, an inline SVG chart, system fonts only, no scripts. The
page holds the side-by-side table (rows where the backends differ highlighted),
a bar chart of the timings per backend, the machine, and the exact spec.
"""

from __future__ import annotations

import json
import math
import shlex
from html import escape

from ctr.compare.render_text import MARK, command_line, spec_arguments
from ctr.compare.rows import GROUPS, docker_size

TIMINGS = (
    ("create", "create_ms", "making the container"),
    ("start", "start_ms", "until its process runs"),
    ("total", "total_ms", "from create until the exit code is known"),
)
# One colour per backend, the same in the table's header and in the chart.
COLOURS = {"native": "#2563eb", "lxc": "#059669", "docker": "#d97706"}
SPARE_COLOURS = ("#7c3aed", "#db2777", "#0891b2")

CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --soft: #f9fafb; --diff: #fff7e6; --diff-edge: #f59e0b; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 32px 24px 48px; }
header h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
header .lead { color: var(--muted); margin: 0 0 12px; }
code, pre, .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
.cmd { background: #111827; color: #e5e7eb; padding: 10px 14px; border-radius: 8px; white-space: pre-wrap;
  overflow-wrap: anywhere; margin: 0; }
.badges { margin: 14px 0 0; display: flex; gap: 8px; flex-wrap: wrap; }
.badge { background: #fff; border: 1px solid var(--line); border-radius: 999px; padding: 2px 12px; font-size: 13px; }
.badge.warn { background: var(--diff); border-color: var(--diff-edge); }
.badge.ok { background: #ecfdf5; border-color: #10b981; }
.badge.err { background: #fef2f2; border-color: #ef4444; }
section { background: #fff; border: 1px solid var(--line); border-radius: 12px; padding: 20px 24px; margin-top: 20px; }
section h2 { font-size: 18px; margin: 0 0 12px; }
.grid { display: grid; grid-template-columns: 3fr 2fr; gap: 20px; }
.grid section { margin-top: 0; }
.wrap { margin-top: 20px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
dl.facts dd.small { font-size: 13px; color: #374151; }
dl.facts dt.sep, dl.facts dd.sep { border-top: 1px solid var(--line); padding-top: 6px; margin-top: 4px; }
table.compare { width: 100%; border-collapse: collapse; }
table.compare th, table.compare td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.compare thead th { font-size: 14px; border-bottom: 2px solid var(--ink); white-space: nowrap; }
table.compare thead small { display: block; color: var(--muted); font-weight: normal; font-size: 11px; white-space: normal; }
table.compare .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 6px; }
table.compare tr.group th { background: var(--soft); color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.06em; padding-top: 10px; }
table.compare td.mark { width: 22px; color: var(--diff-edge); font-weight: bold; text-align: center; padding: 5px 0; }
table.compare th.label { font-weight: normal; color: #374151; white-space: nowrap; width: 190px; }
table.compare td.value { font-family: "DejaVu Sans Mono", "Liberation Mono", ui-monospace, monospace; font-size: 13px; }
table.compare tr.differs { background: var(--diff); }
table.compare tr.differs td.mark { box-shadow: inset 3px 0 0 var(--diff-edge); }
table.compare tr.differs th.label { font-weight: 600; color: var(--ink); }
table.compare td.na { color: #9ca3af; }
.legend { font-size: 13px; color: var(--muted); margin: 10px 0 0; }
.chart svg { display: block; width: 100%; height: auto; }
.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
ul.errors { margin: 0; padding-left: 20px; color: #991b1b; }
details { margin-top: 8px; }
details summary { cursor: pointer; color: #374151; }
details pre { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; overflow-x: auto; }
p.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; text-align: center; }
@media print { body { background: #fff; } section { break-inside: avoid; } }
"""


def render_html(result: dict) -> str:
    """The whole page, as one string."""
    backends = result["backends"]
    colours = _colours(backends)
    rows = result["rows"]
    differing = [r for r in rows if r["differs"]]
    errors = [(b, e) for b in backends for e in result["results"][b]["errors"]]
    spec = result["spec"]
    title = f"ctr compare: {' '.join([spec['image'], *spec.get('command', [])])}"

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        "<header>",
        "<h1>One spec, " + f"{len(backends)} backend{'s' if len(backends) != 1 else ''}</h1>",
        '<p class="lead">What the kernel reports for the same container on each backend, read from /proc '
        "and the cgroup files, and what each one costs.</p>",
        f'<pre class="cmd">{escape(command_line(result))}</pre>',
        '<p class="badges">',
        *[f'<span class="badge"><span style="color:{colours[b]}">●</span> {escape(b)}</span>' for b in backends],
        (
            f'<span class="badge warn">{MARK} {len(differing)} row{"s" if len(differing) != 1 else ""} differ</span>'
            if differing
            else '<span class="badge ok">all rows agree</span>'
        ),
        *([f'<span class="badge err">{len(errors)} error{"s" if len(errors) != 1 else ""}</span>'] if errors else []),
        "</p></header>",
        _errors(errors),
        '<section class="wrap"><h2>Kernel features, side by side</h2>',
        _table(result, colours),
        f'<p class="note"><b>{MARK}</b> marks a row on which the backends differ. Features come from the '
        f"<i>explain run</i>: the spec with its command replaced by <code>{escape(' '.join(result['explain_command']))}"
        "</code> (entrypoint cleared), so that even a command that exits at once can be observed. "
        "Exit code and timings come from the <i>timing run</i> of the spec as given. "
        "Cost rows are measurements and are never marked.</p>",
        "</section>",
        '<div class="grid wrap">',
        '<section class="chart"><h2>Timings</h2>',
        timing_chart(result, colours),
        '<p class="note">create: <code>create()</code>; start: <code>start()</code> until the process runs; '
        "total: from before create until the exit code is known. One run each, milliseconds.</p>",
        "</section>",
        "<section><h2>Machine</h2>",
        _machine(result),
        "</section></div>",
        '<section class="wrap"><h2>Spec</h2>',
        _spec(spec),
        "</section>",
        '<section class="wrap"><h2>Per backend</h2>',
        _details(result),
        "</section>",
        f"<footer>ctr {escape(str(result['machine'].get('ctr_version') or ''))} · compare schema "
        f"{result['schema_version']} · {escape(result['machine']['date'])}</footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _colours(backends: list[str]) -> dict[str, str]:
    spare = iter(SPARE_COLOURS * 4)
    return {b: COLOURS.get(b) or next(spare) for b in backends}


def _errors(errors: list[tuple[str, dict]]) -> str:
    if not errors:
        return ""
    items = "".join(f"<li><b>{escape(b)}</b>, {escape(e['phase'])}: {escape(e['message'])}</li>" for b, e in errors)
    return f'<section class="wrap"><h2>Errors</h2><ul class="errors">{items}</ul></section>'


def _table(result: dict, colours: dict[str, str]) -> str:
    backends = result["backends"]
    head = ['<table class="compare"><thead><tr><th></th><th class="label">feature</th>']
    for b in backends:
        versions = ", ".join(f"{k} {v}" for k, v in result["results"][b].get("versions", {}).items() if k != "kernel")
        head.append(
            f'<th><span class="swatch" style="background:{colours[b]}"></span>{escape(b)}'
            f"<small>{escape(versions)}</small></th>"
        )
    out = ["".join(head) + "</tr></thead><tbody>"]
    group = None
    for r in result["rows"]:
        if r["group"] != group:
            group = r["group"]
            out.append(f'<tr class="group"><th colspan="{len(backends) + 2}">{escape(GROUPS[group])}</th></tr>')
        classes = ["row", "cost" if r["group"] == "cost" else "feature"] + (["differs"] if r["differs"] else [])
        cells = []
        for b in backends:
            text = r["display"][b]
            cells.append(f'<td class="value{" na" if text == "-" else ""}">{escape(text)}</td>')
        mark = MARK if r["differs"] else ""
        out.append(
            f'<tr class="{" ".join(classes)}" data-key="{escape(r["key"])}"><td class="mark">{mark}</td>'
            f'<th class="label" scope="row">{escape(r["label"])}</th>{"".join(cells)}</tr>'
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def timing_chart(result: dict, colours: dict[str, str]) -> str:
    """Horizontal bars: a panel per timing (create, start, total), a bar per backend.

    Each panel has its own scale: a total that includes the command's own run time
    would otherwise flatten create and start to nothing.
    """
    backends = result["backends"]
    width, label_w, value_w = 520, 70, 70
    bar_h, gap, title_h, panel_gap = 16, 6, 22, 18
    plot_w = width - label_w - value_w
    y = 0
    body: list[str] = []
    for timing, key, caption in TIMINGS:
        values = {b: result["results"][b]["timing"].get(key) for b in backends}
        scale_max, step = _scale(max([v for v in values.values() if v is not None] + [0]))
        body.append(
            f'<text x="0" y="{y + 14}" font-size="13" font-weight="600" fill="#1f2937">{escape(timing)}'
            f'<tspan fill="#6b7280" font-weight="normal"> · {escape(caption)}</tspan></text>'
        )
        y += title_h
        plot_h = len(backends) * (bar_h + gap) - gap
        for tick in (step * i for i in range(round(scale_max / step) + 1)):
            x = label_w + plot_w * tick / scale_max
            body.append(f'<line x1="{x:.1f}" y1="{y - 2}" x2="{x:.1f}" y2="{y + plot_h + 2}" stroke="#e5e7eb"/>')
            body.append(
                f'<text x="{x:.1f}" y="{y + plot_h + 14}" font-size="10" fill="#9ca3af" '
                f'text-anchor="middle">{tick:g}</text>'
            )
        for b in backends:
            v = values[b]
            body.append(
                f'<text x="{label_w - 8}" y="{y + bar_h - 4}" font-size="12" fill="#374151" '
                f'text-anchor="end">{escape(b)}</text>'
            )
            if v is None:
                body.append(f'<text x="{label_w + 4}" y="{y + bar_h - 4}" font-size="12" fill="#9ca3af">n/a</text>')
            else:
                w = max(plot_w * v / scale_max, 1.5)
                body.append(
                    f'<rect class="bar" data-backend="{escape(b)}" data-timing="{timing}" x="{label_w}" '
                    f'y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" fill="{colours[b]}">'
                    f"<title>{escape(b)} {timing}: {v:.1f} ms</title></rect>"
                )
                body.append(
                    f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h - 4}" font-size="12" fill="#1f2937">{_ms(v)}</text>'
                )
            y += bar_h + gap
        y += 16 + panel_gap
    height = y - panel_gap
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="timings per backend in milliseconds">' + "".join(body) + "</svg>"
    )


def _ms(v: float) -> str:
    return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def _scale(top: float) -> tuple[float, float]:
    """(axis maximum, tick step): a step of 1, 2, 2.5 or 5 times a power of ten that cuts
    the axis into at most 5 parts, and the first multiple of it at or above `top`."""
    if top <= 0:
        return 1.0, 0.25
    raw = top / 4
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw)
    return math.ceil(top / step - 1e-9) * step, step


def _machine(result: dict) -> str:
    m = result["machine"]
    mem = m.get("memory_bytes")
    facts = [
        ("host", m.get("hostname")),
        ("system", m.get("os")),
        ("kernel", f"{m.get('kernel')} ({m.get('arch')})"),
        (
            "cgroup",
            {"v2": "v2 (unified)", "hybrid": "v1 + v2 (hybrid)", "v1": "v1"}.get(m.get("cgroup"), m.get("cgroup")),
        ),
        ("cpus", m.get("cpus")),
        ("memory", f"{mem / (1 << 30):.1f} GiB" if mem else None),
        ("date", m.get("date")),
        ("ctr", m.get("ctr_version")),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts if v is not None)
    for i, b in enumerate(result["backends"]):
        versions = ", ".join(f"{k} {v}" for k, v in result["results"][b].get("versions", {}).items() if k != "kernel")
        sep = " sep" if i == 0 else ""
        items += f'<dt class="{sep.strip()}">{escape(b)}</dt><dd class="small{sep}">{escape(versions or "-")}</dd>'

    return f'<dl class="facts">{items}</dl>'


def _spec(spec: dict) -> str:
    facts = []
    for key, value in spec.items():
        empty = value is None or value is False or (value in ([], {}) and key != "entrypoint")
        if empty or (key == "network" and value == "none"):
            continue  # a default: the JSON below has every field
        if key == "memory":
            text = f"{value} bytes ({docker_size(value)})"
        elif key in ("command", "entrypoint"):
            text = shlex.join(value) if value else "'' (cleared)"
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            text = " ".join(value)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
        facts.append((key, text))
    items = "".join(f'<dt>{escape(k)}</dt><dd class="mono">{escape(v)}</dd>' for k, v in facts)
    return (
        f'<dl class="facts">{items}</dl>'
        f'<p class="note">As run flags: <code>{escape(shlex.join(spec_arguments(spec)))}</code></p>'
        f"<details><summary>The spec as JSON</summary><pre>{escape(json.dumps(spec, indent=2))}</pre></details>"
    )


def _details(result: dict) -> str:
    from ctr.native.explain_table import render_table

    out = []
    for b in result["backends"]:
        r = result["results"][b]
        ex, tm = r["explain"], r["timing"]
        layer = (ex or {}).get("writable_layer") or {}
        lines = [
            f"explain run   {ex.get('name')}  pid {ex.get('pid')}",
            f"timing run    {tm.get('name')}  exit code {tm.get('exit_code')}",
        ]
        if tm.get("start_error"):
            lines.append(f"              {tm['start_error']}")
        if layer.get("path"):
            lines.append(f"writable layer {layer['path']}  ({layer['bytes']} bytes in {layer['files']} entries)")
        elif layer.get("reason"):
            lines.append(f"writable layer: {layer['reason']}")
        summary = escape("\n".join(lines))
        explain = escape(_explain_text(ex.get("doc"), render_table))
        out.append(
            f"<details><summary><b>{escape(b)}</b>: the full explain document as a table</summary>"
            f"<pre>{summary}</pre><pre>{explain}</pre></details>"
        )
    return "\n".join(out)


def _explain_text(doc: dict | None, render_table) -> str:
    """The explain document as `ctr explain` prints it; as JSON if it is of a layout the
    renderer does not know (a report made from a stored document of another version)."""
    if doc is None:
        return "no explain document"
    try:
        return render_table(doc)
    except (KeyError, TypeError, ValueError, AttributeError):
        return json.dumps(doc, indent=1)
