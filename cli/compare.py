"""`ctr compare`: one spec on several backends, the kernel's view of each side by side.

The work is ctr.compare.run.compare(); this module parses the run flags,
renders the text table, and hands HTML to cli/report_html.py. Registered on the
`ctr` group in cli/main.py; it takes ctx.obj with click.pass_obj (not main's typed
decorator) so that it also works on its own.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import textwrap
from contextlib import contextmanager
from typing import Iterator

import click

from ctr.cli.options import build_spec, errors_to_exit, spec_options

CELL_WIDTH = 30  # a longer cell wraps onto further lines of its row
MARK = "≠"
# Run flags that make no sense for a compare; still parsed (hidden) so that they can be
# refused with a sentence, or, for --rm, accepted as what compare does anyway.
HIDDEN = ("tty", "stdin", "auto_remove")


@click.command("compare", context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]})
@click.option("--backends", "backend_list", metavar="NAMES",
              help="Comma-separated backends to compare, e.g. native,docker (default: every usable one).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table", show_default=True,
              help="A text table, the JSON document (docs/compare-schema.md), or a self-contained HTML page.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the report to FILE instead of standard output.")
@spec_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@errors_to_exit
def compare_command(obj, backend_list: str | None, fmt: str, output: str | None, image: str,
                    command: tuple[str, ...], **opts) -> None:
    """Run COMMAND from IMAGE on several backends and compare what the kernel says.

    Takes the flags of `ctr run` (not -d, -i, -t; --rm is implied). Per backend,
    an explain run (COMMAND replaced by `sleep 600`, so even `true` can be
    observed) is read from /proc: namespaces, cgroup limits, capabilities,
    seccomp, id maps, root mount, keeper. Then a timing run of the spec as given
    measures create, start and total time and the exit code. Every container is
    removed afterwards. Rows where the backends differ are marked with ≠.
    --name, if given, is the prefix of the containers' names.
    """
    from ctr.compare.run import compare
    from ctr.state.paths import Paths

    spec = build_spec(image, command, **opts)
    names = [n.strip() for n in backend_list.split(",") if n.strip()] if backend_list else None
    paths = obj.paths if obj is not None else Paths.default()
    with _signals_interrupt():
        result = compare(spec, names, paths, on_step=_progress if sys.stderr.isatty() else None)

    if fmt == "json":
        text = json.dumps(result, indent=2) + "\n"
    elif fmt == "html":
        from ctr.compare.render_html import render_html

        text = render_html(result)
    else:
        text = render_table(result)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"ctr: report written to {output}", err=True)
    else:
        click.echo(text, nl=False)

    errors = [(b, e) for b, r in result["results"].items() for e in r["errors"]]
    for backend, e in errors:
        click.echo(f"ctr: compare: {backend}: {e['phase']}: {e['message']}", err=True)
    if errors:
        sys.exit(errors[0][1]["exit_code"])


for _param in compare_command.params:
    if _param.name in HIDDEN:
        _param.hidden = True
    if _param.name == "name":
        _param.help = "Prefix of the containers' names: NAME-BACKEND-explain, NAME-BACKEND-run (generated when absent)."


def _progress(backend: str, what: str) -> None:
    click.echo(f"ctr: compare: {backend}: {what}...", err=True)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end a compare by an exception, so that the containers
    made so far are removed on the way out instead of left behind. SIGINT too, explicitly:
    a process started in the background of a non-interactive shell (a CI job, `cmd &` in
    a script) inherits it ignored, and Python then leaves it ignored."""

    def interrupt(signum: int, _frame) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the spec as a command line ----------------------------------------------------------


def spec_arguments(spec: dict) -> list[str]:
    """The run flags and arguments that make `spec` (a ContainerSpec.to_dict()), for display."""
    from ctr.compare.run import docker_size

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
    from ctr.compare.run import GROUPS

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
    lines += ["", f"{len(differing)} row{'s' if len(differing) != 1 else ''} differ"
              + (f": {', '.join(differing)}" if differing else "")]
    return "\n".join(lines) + "\n"
