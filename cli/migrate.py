"""`ctr commit`, `export`, `import`, `migrate`, `adopt`, `foreign` and `convert` (issue 8).

Thin, like every command: parse, call ctr.transfer.migrate / adopt / convert,
print. Warnings (what could not be carried) go to stderr, one per line, so
stdout stays the result alone.
"""

from __future__ import annotations

import json
import sys

import click

from ctr.backends import REGISTRY
from ctr.cli.options import errors_to_exit, pass_obj
from ctr.units import decimal_size

migrate_commands: list[click.Command] = []  # registered by cli.main
BACKENDS = click.Choice(list(REGISTRY))


def command(*args, **kwargs):
    def decorate(func):
        cmd = click.command(*args, **kwargs)(func)
        migrate_commands.append(cmd)
        return cmd

    return decorate


def _warn(lines) -> None:
    for line in lines:
        click.echo(f"ctr: warning: {line}", err=True)


@command()
@click.option("-m", "--message", default="", help="A comment for the new layer's history entry.")
@click.option(
    "--pause/--no-pause", default=True, show_default=True, help="Pause a running container while its layer is read."
)
@click.argument("name")
@click.argument("image")
@pass_obj
@errors_to_exit
def commit(obj, message: str, pause: bool, name: str, image: str) -> None:
    """Make IMAGE from container NAME: its image plus its writable layer as a new layer.

    The image config is the base image's with the process as the container ran it:
    Entrypoint, Cmd, Env, WorkingDir, User; its labels are added. Prints the image ID.
    """
    from ctr.transfer.migrate import commit as do_commit

    click.echo(do_commit(obj.paths, name, image, pause=pause, message=message).id)


@command(name="export")
@click.option("-o", "--output", required=True, metavar="FILE", help="Bundle file to write ('-': standard output).")
@click.option("--no-image", is_flag=True, help="Leave the base image out; the bundle names it by digest only.")
@click.argument("name")
@pass_obj
@errors_to_exit
def export(obj, output: str, no_image: bool, name: str) -> None:
    """Write container NAME as a bundle: spec, base image, writable layer (docs/bundle-format.md).

    The container must not be running (paused is fine). `ctr import` recreates it,
    on any backend.
    """
    from ctr.transfer.migrate import export_container

    export_container(obj.paths, name, output, include_image=not no_image)


@command(name="import")
@click.option(
    "--backend", "target", type=BACKENDS, help="Backend to create it on (default: the one it was exported from)."
)
@click.option("--name", help="Name for the container (default: its name in the bundle).")
@click.option("--no-image", is_flag=True, help="Do not import the bundle's image; find it by digest in the store.")
@click.argument("file")
@pass_obj
@errors_to_exit
def import_(obj, target: str | None, name: str | None, no_image: bool, file: str) -> None:
    """Recreate the container of bundle FILE ('-': standard input), created, not started.

    Its writable layer is put in place as the backend's own writable layer and
    checked against the digest the bundle records. Prints the container's name.
    """
    from ctr.transfer.migrate import import_bundle

    record = import_bundle(obj.paths, file, backend=target, name=name, use_image=not no_image)
    click.echo(record.name)


@command()
@click.option("--to", "target", type=BACKENDS, required=True, help="Backend to move it to.")
@click.option("--keep", is_flag=True, help="Keep the source container (needs --name).")
@click.option("--name", "new_name", help="Name on the target (default: the same name).")
@click.option("--stop", is_flag=True, help="Stop a running container, and start it on the target.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="A line of text, or the report as JSON.",
)
@click.argument("name")
@pass_obj
@errors_to_exit
def migrate(obj, target: str, keep: bool, new_name: str | None, stop: bool, fmt: str, name: str) -> None:
    """Move container NAME to another backend: its files, its spec, its name.

    The writable layer is copied and checked by a digest of its whole tree; the
    source is removed once the target is complete (unless --keep). A failure at
    any step leaves the source as it was and nothing on the target.
    """
    from ctr.transfer.migrate import migrate as do_migrate

    result = do_migrate(obj.paths, name, target, keep=keep, new_name=new_name, stop=stop)
    _warn(result.warnings)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "name": result.name,
                    "id": result.record.id,
                    "from": result.source_backend,
                    "to": result.target_backend,
                    "source_id": result.source_id,
                    "status": result.record.status,
                    "tree_digest": result.tree_digest,
                    "layer_size": result.layer_size,
                    "kept_source": result.kept_source,
                    "warnings": result.warnings,
                },
                indent=2,
            )
        )
        return
    state = "running" if result.started else result.record.status
    kept = f", source kept as {result.kept_source}" if result.kept_source else ""
    click.echo(
        f"{result.name}: {result.source_backend} -> {result.target_backend}, {state}, writable layer "
        f"{decimal_size(result.layer_size)} {result.tree_digest[:19]} verified{kept}"
    )


@command()
@click.option("--name", help="Name of the new ctr container (default: the source's; NAME-ctr for docker on docker).")
@click.option("--to", "target", type=BACKENDS, help="Backend for it (default: the source's kind: lxc or docker).")
@click.option(
    "--network", type=click.Choice(["none", "host", "bridge"]), help="Replace the network mode read from the source."
)
@click.argument("source")
@pass_obj
@errors_to_exit
def adopt(obj, name: str | None, target: str | None, network: str | None, source: str) -> None:
    """Make a ctr container from a foreign one: lxc:NAME (under LXC's lxcpath) or docker:ID.

    Its configuration becomes a ctr spec (what has no equivalent is listed on
    stderr) and its files are copied into ctr; the source is not changed. The new
    container is created, not started. Prints its name.
    """
    from ctr.transfer.adopt import adopt as do_adopt

    result = do_adopt(obj.paths, source, name=name, to=target, network=network)
    _warn(f"not carried over: {w}" for w in result.warnings)
    _warn(result.notes)
    click.echo(result.record.name)


@command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table, or JSON.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only what `ctr adopt` takes (lxc:NAME, docker:ID).")
@pass_obj
@errors_to_exit
def foreign(obj, fmt: str, quiet: bool) -> None:
    """List containers ctr did not make: LXC's own (its lxcpath) and the Docker Engine's without ctr's label."""
    from ctr.transfer.adopt import list_foreign

    found, problems = list_foreign(obj.paths)
    _warn(problems)
    print_foreign(found, fmt, quiet)


def print_foreign(found, fmt: str = "table", quiet: bool = False) -> None:
    """The table (or JSON) of `ctr foreign`; also what `ctr ps --foreign` prints."""
    if quiet:
        for f in found:
            click.echo(f.ref)
        return
    if fmt == "json":
        click.echo(json.dumps([{**vars(f), "ref": f.ref} for f in found], indent=2))
        return
    rows = [("ADOPT AS", "KIND", "NAME", "STATUS", "IMAGE / ROOT")]
    rows += [(f.ref, f.kind, f.name, f.status, f.image) for f in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@command()
@click.option(
    "--from",
    "source",
    type=click.Choice(["lxc", "docker", "oci", "ctr"]),
    required=True,
    help="Format of FILE: an LXC config, `docker inspect` JSON, an OCI config.json, a ctr spec.",
)
@click.option(
    "--to",
    "target",
    type=click.Choice(["lxc", "docker-run", "compose", "oci", "ctr"]),
    required=True,
    help="Format to write to standard output.",
)
@click.argument("file")
@pass_obj
@errors_to_exit
def convert(obj, source: str, target: str, file: str) -> None:
    """Translate a container configuration FILE ('-': standard input) into another tool's format.

    Every key with no equivalent on the other side is named in a warning on stderr.
    Where the target needs the full command line (lxc, oci) and the spec leaves part
    of it to the image, the image's config is read from ctr's store when it is there.
    """
    from ctr.convert import convert as do_convert
    from ctr.errors import NotFound

    if file == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(file) as f:
                text = f.read()
        except FileNotFoundError:
            raise NotFound(f"no such file: {file}") from None

    def resolve(image: str):
        from ctr.images.reference import normalize_ref
        from ctr.images.store import ImageStore

        try:
            found = ImageStore(obj.paths).lookup(normalize_ref(image))  # never builds or pulls anything
        except Exception:
            return None
        return found.config if found else None

    out, warnings = do_convert(text, source, target, origin="" if file == "-" else file, resolve=resolve)
    _warn(f"not converted: {w}" for w in warnings)
    click.echo(out, nl=False)
