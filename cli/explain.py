"""`ctr explain`: what the kernel says about a container's process, read from /proc.

Registered on the `ctr` group in cli/main.py; works on its own too (`explain.main([...])`),
which is why it takes ctx.obj with click.pass_obj rather than main's typed decorator.
"""

from __future__ import annotations

import json

import click

from ctr.cli.options import errors_to_exit


def resolve_container(ctx_obj, name: str):
    """Container `name`'s record, as its own backend reports it; it must be running."""
    from ctr.backends import backend_for
    from ctr.errors import Conflict
    from ctr.state.paths import Paths

    paths = ctx_obj.paths if ctx_obj is not None else Paths.default()
    record = backend_for(name, paths).get(name)
    if record.status not in ("running", "paused") or not record.pid:
        raise Conflict(f"container {name} is not running: only a running container can be explained")
    return record


def resolve_container_pid(ctx_obj, name: str) -> int:
    """The host pid of container `name`'s main process, as its own backend reports it."""
    return resolve_container(ctx_obj, name).pid


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format: a table to read, or the JSON document (docs/explain-schema.md).",
)
@click.option("--pid", type=int, metavar="PID", help="Explain this host process instead of a container.")
@click.argument("name", required=False)
@click.pass_obj
@errors_to_exit
def explain(obj, fmt: str, pid: int | None, name: str | None) -> None:
    """Show what the kernel reports for container NAME (or --pid PID).

    Namespaces, cgroup limits, capabilities, seccomp, id maps, the root mount,
    masked paths and the process that keeps it: all read from /proc and the
    cgroup files, none of it from the runtime's own records.
    """
    from ctr.native.explain import explain_pid
    from ctr.native.explain_table import render_table

    if (pid is None) == (name is None):
        raise click.UsageError("give exactly one of a container NAME or --pid PID")
    record = None
    if pid is None:
        record = resolve_container(obj, name)
        pid = record.pid
    doc = explain_pid(pid)
    if record is not None:  # beside the kernel's evidence, what ctr asked for
        from ctr.security import installed_seccomp

        doc["security"]["seccomp_profile"] = installed_seccomp(record)
    click.echo(json.dumps(doc, indent=2) if fmt == "json" else render_table(doc), nl=fmt == "json")
