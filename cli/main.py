"""The `ctr` command group and its entry point.

Commands stay thin: parse, call the library, print. The backend chosen with
--backend (or CTR_BACKEND) travels in the click context; library errors become
one-line messages with Docker's exit codes (125 for ctr's own errors).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from ctr.backends import DEFAULT_BACKEND, REGISTRY
from ctr.cli.options import Context, CtrExit, build_spec, errors_to_exit, pass_obj, spec_options
from ctr.state.paths import Paths

# Commands that live in other modules, imported only when used (or listed by --help):
# `ctr run` should not pay for the image, compare or migration code.
LAZY_COMMANDS = {
    **{
        name: f"ctr.cli.containers:{attr}"
        for name, attr in (
            ("start", "start"),
            ("stop", "stop"),
            ("restart", "restart"),
            ("kill", "kill"),
            ("rm", "remove"),
            ("wait", "wait"),
            ("pause", "pause"),
            ("unpause", "unpause"),
            ("exec", "exec_"),
            ("logs", "logs"),
            ("ps", "ps"),
            ("inspect", "inspect"),
            ("stats", "stats"),
            ("cp", "cp"),
        )
    },
    "explain": "ctr.cli.explain:explain",
    "compare": "ctr.cli.compare:compare_command",
    "images": "ctr.cli.images:images",
    "image": "ctr.cli.images:image",
    "commit": "ctr.cli.migrate:commit",
    "export": "ctr.cli.migrate:export",
    "import": "ctr.cli.migrate:import_",
    "migrate": "ctr.cli.migrate:migrate",
    "foreign": "ctr.cli.migrate:foreign",
    "adopt": "ctr.cli.migrate:adopt",
    "convert": "ctr.cli.migrate:convert",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str):
        if name not in self.commands and name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["--help"]})
@click.option(
    "--backend",
    "-b",
    envvar="CTR_BACKEND",
    default=DEFAULT_BACKEND,
    show_default=True,
    type=click.Choice(list(REGISTRY)),
    help="Container implementation to use.",
)
@click.option(
    "--root",
    envvar="CTR_ROOT",
    type=click.Path(file_okay=False),
    default=None,
    help="State root (default /var/lib/ctr and /run/ctr).",
)
@click.version_option(package_name="ctr", prog_name="ctr", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, backend: str, root: str | None) -> None:
    """Run one container spec on several container implementations.

    Backends: native (ctr's own runtime on namespaces and cgroups), lxc
    (liblxc) and docker (the Docker Engine). They take the same flags and
    behave the same.
    """
    ctx.obj = Context(backend, Paths.default(root))


@cli.command(context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container ID.")
@spec_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_obj
@errors_to_exit
def run(obj: Context, detach: bool, image: str, command: tuple[str, ...], **opts) -> None:
    """Run COMMAND in a new container from IMAGE (in the foreground unless -d)."""
    obj.prime_cgroups()
    spec = build_spec(image, command, **opts)
    if detach:
        click.echo(obj.backend().run_detached(spec).id)
        return
    code = obj.backend().run(spec)
    # The container is gone and everything is cleaned up: skip the interpreter's own
    # teardown, which would only add to every foreground run's latency.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@cli.command(context_settings={"allow_interspersed_args": False})
@spec_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_obj
@errors_to_exit
def create(obj: Context, image: str, command: tuple[str, ...], **opts) -> None:
    """Create a container from IMAGE without starting it; print its ID."""
    click.echo(obj.backend().create(build_spec(image, command, **opts)).id)


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format."
)
def backends(fmt: str) -> None:
    """List the backends, whether each is usable here, and their versions."""
    import json

    from ctr.backends import REGISTRY, probe

    infos = [probe(name) for name in REGISTRY]
    if fmt == "json":
        click.echo(json.dumps([vars(i) for i in infos], indent=2))
        return
    for info in infos:
        versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
        state = "usable" if info.usable else "unusable"
        line = f"{info.name:<8} {state:<9} {versions}"
        if not info.usable:
            line += f"\n{'':<8} why: {info.reason}"
        click.echo(line.rstrip())


@cli.command()
def version() -> None:
    """Print ctr's version."""
    from importlib.metadata import version as pkg_version

    click.echo(f"ctr {pkg_version('ctr')}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: Docker's exit code 125 for usage errors too, not click's 2."""
    try:
        cli.main(args=argv, prog_name="ctr", standalone_mode=False)
    except CtrExit as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(125)
    except BrokenPipeError:
        sys.exit(141)
    sys.exit(0)


if __name__ == "__main__":
    main()
