"""`ctr compare`'s text table, and what every rendering of a compare shows alike: the mark
of rows where the backends differ, and the command line that repeats the compare.
"""

from __future__ import annotations

import shlex
import textwrap

from ctr.compare.rows import GROUPS, docker_size

CELL_WIDTH = 30  # a longer cell wraps onto further lines of its row
MARK = "≠"


# -- the spec as a command line ----------------------------------------------------------


def spec_arguments(spec: dict) -> list[str]:
    """The run flags and arguments that make `spec` (a ContainerSpec.to_dict()), for display."""
    args: list[str] = []
    if spec.get("name"):
        args += ["--name", spec["name"]]
    for env in spec.get("env") or []:
        args += ["-e", env]
    for flag, key in (("-w", "workdir"), ("-u", "user"), ("-h", "hostname")):
        if spec.get(key) is not None:
            args += [flag, str(spec[key])]
    for m in spec.get("mounts") or []:
        args += ["-v", f"{m['source']}:{m['target']}" + (":ro" if m.get("read_only") else "")]
    if spec.get("read_only"):
        args.append("--read-only")
    if spec.get("memory") is not None:
        args += ["--memory", docker_size(spec["memory"])]
    if spec.get("cpus") is not None:
        args += ["--cpus", f"{spec['cpus']:g}"]
    if spec.get("pids_limit") is not None:
        args += ["--pids-limit", str(spec["pids_limit"])]
    for cap in spec.get("cap_add") or []:
        args += ["--cap-add", cap.removeprefix("CAP_")]
    for cap in spec.get("cap_drop") or []:
        args += ["--cap-drop", cap.removeprefix("CAP_")]
    if spec.get("network", "none") != "none":
        args += ["--network", spec["network"]]
    if spec.get("entrypoint") is not None:
        args += ["--entrypoint", " ".join(spec["entrypoint"])]
    for key, value in (spec.get("labels") or {}).items():
        args += ["-l", f"{key}={value}"]
    return args + [spec["image"], *spec.get("command", [])]


def command_line(result: dict) -> str:
    """`ctr compare --backends ... FLAGS IMAGE CMD` that repeats this compare."""
    return shlex.join(["ctr", "compare", "--backends", ",".join(result["backends"]), *spec_arguments(result["spec"])])


# -- the text table ----------------------------------------------------------------------


def render_table(result: dict) -> str:
    """The side-by-side table: a row per feature, a column per backend, ≠ where they differ."""
    backends = result["backends"]
    rows = result["rows"]
    label_width = max(len(r["label"]) for r in rows) + 4
    widths = {b: min(CELL_WIDTH, max([len(b)] + [len(r["display"][b]) for r in rows])) for b in backends}
    m = result["machine"]
    lines = [
        command_line(result),
        f"kernel {m['kernel']}, cgroup {m['cgroup']}, {m['date']}",
        f"explain run: {' '.join(result['explain_command'])} in place of the command; "
        f"{MARK} marks rows where the backends differ",
        "",
        "  " + " " * label_width + "  ".join(b.ljust(widths[b]) for b in backends).rstrip(),
    ]
    group = None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            lines.append(f"  {GROUPS[group]}")
        cells = {b: textwrap.wrap(r["display"][b], widths[b]) or [""] for b in backends}
        height = max(len(c) for c in cells.values())
        for i in range(height):
            mark = MARK if r["differs"] and i == 0 else " "
            label = ("  " + r["label"]) if i == 0 else ""
            text = "  ".join((cells[b][i] if i < len(cells[b]) else "").ljust(widths[b]) for b in backends)
            lines.append(f"{mark} {label.ljust(label_width)}{text}".rstrip())
    differing = [r["label"] for r in rows if r["differs"]]
    lines += [
        "",
        f"{len(differing)} row{'s' if len(differing) != 1 else ''} differ"
        + (f": {', '.join(differing)}" if differing else ""),
    ]
    return "\n".join(lines) + "\n"
