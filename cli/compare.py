"""`ctr compare`: one spec on several backends, the kernel's view of each side by side.

The work is ctr.compare.run.compare(); this module parses the run flags and hands the
result to ctr.compare.render_text (the table) or ctr.compare.render_html. Registered on
the `ctr` group in cli/main.py; it takes ctx.obj with click.pass_obj (not main's typed
decorator) so that it also works on its own.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ctr.cli.options import build_spec, errors_to_exit, spec_options
from ctr.compare.render_text import render_table

# Run flags that make no sense for a compare; still parsed (hidden) so that they can be
# refused with a sentence, or, for --rm, accepted as what compare does anyway.
HIDDEN = ("tty", "stdin", "auto_remove")


@click.command("compare", context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]})
@click.option(
    "--backends",
    "backend_list",
    metavar="NAMES",
    help="Comma-separated backends to compare, e.g. native,docker (default: every usable one).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "html"]),
    default="table",
    show_default=True,
    help="A text table, the JSON document (docs/compare-schema.md), or a self-contained HTML page.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the report to FILE instead of standard output.",
)
@spec_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@errors_to_exit
def compare_command(
    obj, backend_list: str | None, fmt: str, output: str | None, image: str, command: tuple[str, ...], **opts
) -> None:
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
