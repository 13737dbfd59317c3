"""Container lifecycle commands. Each finds the container's backend from ctr's record,
so `ctr stop web` works whichever backend made `web`."""

from __future__ import annotations

import json
import sys
import time

import click

from ctr.backends import REGISTRY
from ctr.cli.options import errors_to_exit, pass_obj
from ctr.errors import InvalidSpec
from ctr.units import binary_size

command = click.command  # each command is registered lazily by cli.main (LAZY_COMMANDS)


def _backend(obj, name: str):
    from ctr.backends import backend_for

    return backend_for(name, obj.paths)


def _each(obj, names, act, echo_name: bool = True) -> None:
    """Do `act(backend, name)` for every name, as Docker does: a failure is reported and
    the others still get their turn; the command fails if any did."""
    from ctr.cli.options import CtrExit
    from ctr.errors import CtrError

    failed = None
    for name in names:
        try:
            result = act(_backend(obj, name), name)
        except CtrError as exc:
            failed = CtrExit(str(exc), exc.exit_code)
            if len(names) > 1:
                failed.show()
            continue
        click.echo(name if echo_name else result)
    if failed is not None:
        if len(names) > 1:
            sys.exit(failed.exit_code)
        raise failed


@command()
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def start(obj, names) -> None:
    """Start one or more created or stopped containers."""
    _each(obj, names, lambda backend, name: backend.start(name))


STOP_TIME_HELP = "Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10)."


@command()
@click.option("-t", "--time", "timeout", default=None, type=float, help=STOP_TIME_HELP)
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def stop(obj, timeout: float | None, names) -> None:
    """Stop running containers: their --stop-signal (SIGTERM), then SIGKILL after a grace period."""
    _each(obj, names, lambda backend, name: backend.stop(name, timeout))


@command()
@click.option("-t", "--time", "timeout", default=None, type=float, help=STOP_TIME_HELP)
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def restart(obj, timeout: float | None, names) -> None:
    """Stop, then start containers again."""
    _each(obj, names, lambda backend, name: (backend.stop(name, timeout), backend.start(name)))


@command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal to send (name or number).")
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def kill(obj, sig: str, names) -> None:
    """Send a signal to the main process of running containers."""
    from ctr.spec import parse_signal

    signum = parse_signal(sig)
    _each(obj, names, lambda backend, name: backend.kill(name, signum))


@command(name="rm")
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def remove(obj, force: bool, names) -> None:
    """Remove containers and everything they left: cgroup, mounts, writable layer, state."""
    _each(obj, names, lambda backend, name: backend.remove(name, force=force))


@command()
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def wait(obj, names) -> None:
    """Block until containers stop, then print their exit codes."""
    _each(obj, names, lambda backend, name: backend.wait(name), echo_name=False)


@command()
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def pause(obj, names) -> None:
    """Freeze every process of containers (cgroup freezer)."""
    _each(obj, names, lambda backend, name: backend.pause(name))


@command()
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def unpause(obj, names) -> None:
    """Thaw paused containers."""
    _each(obj, names, lambda backend, name: backend.unpause(name))


@command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", "stdin", is_flag=True, help="Pass stdin to the process.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable.")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container.")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="User name or uid, optionally with group or gid.")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_obj
@errors_to_exit
def exec_(obj, stdin: bool, tty: bool, env, workdir, user, name: str, command) -> None:
    """Run a command in a running container, in all its namespaces and its cgroup."""
    from ctr.process import ExecSpec
    from ctr.spec import parse_env

    spec = ExecSpec(args=tuple(command), env=parse_env(env), workdir=workdir, user=user, tty=tty, stdin=stdin)
    sys.exit(_backend(obj, name).exec(name, spec))


@command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing output as it comes.")
@click.option("-n", "--tail", default="all", show_default=True, help="Number of lines from the end.")
@click.option("-t", "--timestamps", is_flag=True, help="Show the time of each line.")
@click.argument("name")
@pass_obj
@errors_to_exit
def logs(obj, follow: bool, tail: str, timestamps: bool, name: str) -> None:
    """Print a container's output, stdout and stderr kept apart."""
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidSpec(f"invalid --tail {tail!r}: a number or 'all'")
    lines = None if tail == "all" else max(int(tail), 0)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in _backend(obj, name).logs(name, follow=follow, tail=lines):
        stream = err if entry.stream == "stderr" else out
        if timestamps:
            stream.write(entry.time.encode() + b" ")
        stream.write(entry.data)
        stream.flush()


@command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only names.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format."
)
@click.option("--backend", "only", type=click.Choice(list(REGISTRY)), help="Only this backend's containers.")
@click.option(
    "--foreign",
    is_flag=True,
    help="List containers ctr did not make instead (LXC's, the engine's): what `ctr adopt` takes.",
)
@pass_obj
@errors_to_exit
def ps(obj, show_all: bool, quiet: bool, fmt: str, only: str | None, foreign: bool) -> None:
    """List ctr's containers on every backend, with their live status."""
    from ctr.backends import all_records

    if foreign:
        from ctr.cli.migrate import foreign as foreign_command

        click.get_current_context().invoke(foreign_command, fmt=fmt, quiet=quiet)
        return

    records = [r for r in all_records(obj.paths, only) if show_all or r.status in ("running", "paused")]
    if quiet:
        for r in records:
            click.echo(r.name)
        return
    if fmt == "json":
        click.echo(json.dumps([_ps_row(r) for r in records], indent=2))
        return
    rows = [("CONTAINER ID", "NAME", "BACKEND", "IMAGE", "COMMAND", "CREATED", "STATUS")]
    for r in records:
        d = _ps_row(r)
        rows.append(
            (r.short_id, r.name, r.backend, d["image"], _short(d["command"], 24), _ago(r.created) + " ago", _status(r))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _ps_row(r) -> dict:
    spec = r.spec
    process = r.extra.get("process", {})
    command = " ".join(process.get("args") or list(spec.get("entrypoint") or []) + list(spec.get("command") or []))
    return {
        "id": r.id,
        "name": r.name,
        "backend": r.backend,
        "image": r.image or spec.get("image", ""),
        "command": command,
        "created": r.created,
        "status": r.status,
        "exit_code": r.exit_code,
        "pid": r.pid,
    }


def _short(text: str, n: int) -> str:
    text = f'"{text}"'
    return text if len(text) <= n else text[: n - 4] + '..."'


def _ago(t: float | None) -> str:
    if not t:
        return "?"
    s = max(time.time() - t, 0)
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= 2 * size:
            return f"{int(s // size)} {unit}"
    return f"{int(s)} seconds"


def _status(r) -> str:
    if r.status == "running":
        return f"Up {_ago(r.started)}"
    if r.status == "paused":
        return f"Up {_ago(r.started)} (Paused)"
    if r.status == "exited":
        code = "unknown" if r.exit_code is None else r.exit_code
        return f"Exited ({code}) {_ago(r.finished or r.started)} ago"
    return r.status.capitalize()


@command()
@click.argument("names", nargs=-1, required=True)
@pass_obj
@errors_to_exit
def inspect(obj, names) -> None:
    """Everything about containers, in one JSON schema for every backend."""
    from ctr.inspect import inspect_document

    docs = []
    for name in names:
        backend = _backend(obj, name)
        docs.append(inspect_document(backend, name))
    click.echo(json.dumps(docs, indent=2, default=str))


@command()
@click.option("--no-stream", is_flag=True, help="Print once and exit.")
@click.argument("names", nargs=-1)
@pass_obj
@errors_to_exit
def stats(obj, no_stream: bool, names) -> None:
    """CPU, memory and pids of running containers, read from their cgroups."""
    from ctr.backends import all_records

    names = names or tuple(r.name for r in all_records(obj.paths) if r.status == "running")
    backends = {n: _backend(obj, n) for n in names}
    previous = {n: (backends[n].stats(n), time.monotonic()) for n in names}
    deadline_rounds = 1 if no_stream else None
    rounds = 0
    while True:
        time.sleep(0.5 if no_stream else 1.0)
        rows = [("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")]
        for n in names:
            now, t = backends[n].stats(n), time.monotonic()
            before, t0 = previous[n]
            cpu = 100.0 * ((now.get("cpu_usage_ns") or 0) - (before.get("cpu_usage_ns") or 0)) / ((t - t0) * 1e9)
            previous[n] = (now, t)
            usage, limit = now.get("memory_usage") or 0, now.get("memory_limit")
            mem_pct = f"{100.0 * usage / limit:.2f}%" if limit else "--"
            rows.append(
                (
                    n,
                    f"{cpu:.2f}%",
                    f"{binary_size(usage or 0)} / {binary_size(limit) if limit else 'unlimited'}",
                    mem_pct,
                    str(now.get("pids_current") if now.get("pids_current") is not None else "--"),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        if not no_stream:
            click.echo("\033[2J\033[H", nl=False)
        for row in rows:
            click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        rounds += 1
        if deadline_rounds and rounds >= deadline_rounds:
            return


@command()
@click.argument("src")
@click.argument("dst")
@pass_obj
@errors_to_exit
def cp(obj, src: str, dst: str) -> None:
    """Copy files between a container and the host: NAME:PATH HOSTPATH or HOSTPATH NAME:PATH."""
    from ctr.transfer.copy import copy_in, copy_out

    def split(arg: str):
        name, sep, path = arg.partition(":")
        return (name, path) if sep and "/" not in name and name else (None, arg)

    (src_name, src_path), (dst_name, dst_path) = split(src), split(dst)
    if (src_name is None) == (dst_name is None):
        raise InvalidSpec("copying needs exactly one side to be NAME:PATH")
    if src_name:
        copy_out(_backend(obj, src_name).root_path(src_name), src_path, dst_path)
    else:
        copy_in(_backend(obj, dst_name).root_path(dst_name), src_path, dst_path)
