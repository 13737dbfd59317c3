"""`ctr images` and `ctr image inspect|rm|tag|import|export|pull|push`.

Thin, like every command: parse, call ctr.images.store / image_import /
registry, print. The click context object is cli.main's Context; only its
`paths` is used here (read with click.pass_obj, so this module does not import
cli.main, which registers it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from ctr.cli.options import errors_to_exit
from ctr.units import decimal_size


def _store(obj):
    from ctr.images.store import ImageStore

    return ImageStore(obj.paths)


def _ago(created: str) -> str:
    """'2024-01-02T03:04:05.123Z' -> '3 days ago', as docker images prints it."""
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "N/A"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, (datetime.now(UTC) - when).total_seconds())
    for unit, size in (
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("week", 7 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= 2 * size or (unit in ("hour", "minute") and seconds >= size):
            count = int(seconds // size)
            return f"{'About an' if count == 1 and unit == 'hour' else count} {unit}{'s' if count > 1 else ''} ago"
    return "Less than a second ago" if seconds < 1 else f"{int(seconds)} seconds ago"


def _row(image) -> dict:
    from ctr.images.reference import split_ref

    repo, tag, digest = split_ref(image.name)
    return {
        "repository": repo,
        "tag": tag or "<none>",
        "id": image.id,
        "digest": image.digest,
        "created": image.created,
        "size": image.size,
        "architecture": image.architecture,
        "os": image.os,
    }


@click.command("images")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format."
)
@click.option("-q", "--quiet", is_flag=True, help="Print image IDs only.")
@click.pass_obj
@errors_to_exit
def images(obj, fmt: str, quiet: bool) -> None:
    """List the images in the store (SIZE: bytes of the stored layer blobs)."""
    rows = [_row(i) for i in _store(obj).list()]
    if quiet:
        for r in dict.fromkeys(r["id"][7:19] for r in rows):
            click.echo(r)
    elif fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
        table += [(r["repository"], r["tag"], r["id"][7:19], _ago(r["created"]), decimal_size(r["size"])) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        for row in table:
            click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "   " + row[4])


@click.group("image")
def image() -> None:
    """Manage images: inspect, rm, tag, import, export, pull, push."""


@image.command("ls")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format."
)
@click.option("-q", "--quiet", is_flag=True, help="Print image IDs only.")
@click.pass_context
def ls(ctx: click.Context, fmt: str, quiet: bool) -> None:
    """List the images (the same as `ctr images`)."""
    ctx.invoke(images, fmt=fmt, quiet=quiet)


@image.command()
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.pass_obj
@errors_to_exit
def inspect(obj, refs: tuple[str, ...]) -> None:
    """Print each image's manifest digest, config, layers and size as JSON."""
    store = _store(obj)
    out = [store.inspect(store.get(ref)) for ref in refs]
    click.echo(json.dumps(out, indent=2))


@image.command()
@click.option("-f", "--force", is_flag=True, help="Remove even if a container uses the image.")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.pass_obj
@errors_to_exit
def rm(obj, force: bool, refs: tuple[str, ...]) -> None:
    """Remove image names; blobs no name uses any more are deleted."""
    store = _store(obj)
    for ref in refs:
        removed = store.remove_checked(ref, force=force)
        click.echo(f"Untagged: {removed.name}")


@image.command()
@click.argument("src")
@click.argument("dst")
@click.pass_obj
@errors_to_exit
def tag(obj, src: str, dst: str) -> None:
    """Give the image SRC the additional name DST."""
    _store(obj).tag(src, dst)


@image.command("import")
@click.argument("source", metavar="FILE|DIR|-")
@click.option(
    "--name",
    "-n",
    metavar="REF",
    help="Name of the image (required for a root filesystem tarball); of an archive holding several images, imports only the one of that name.",
)
@click.option(
    "--change",
    "-c",
    "changes",
    multiple=True,
    metavar="INSTRUCTION",
    help="Dockerfile instruction for a root filesystem tarball: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL.",
)
@click.pass_obj
@errors_to_exit
def import_(obj, source: str, name: str | None, changes: tuple[str, ...]) -> None:
    """Import a root filesystem tarball, a `docker save` archive or an OCI layout (dir or tar).

    The format is detected from the content; gzip and zstd (with the
    zstandard package) compressed input is accepted.
    """
    from ctr.images.archive import import_image

    for img in import_image(_store(obj), source, name=name, changes=changes):
        click.echo(f"Loaded image: {img.name}")


@image.command()
@click.argument("ref")
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to write ('-': standard output).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["oci", "docker-archive"]),
    default="oci",
    show_default=True,
    help="oci: OCI layout tar (docker load reads it too); docker-archive: what docker save writes.",
)
@click.pass_obj
@errors_to_exit
def export(obj, ref: str, output: str, fmt: str) -> None:
    """Write the image REF to a file."""
    from ctr.images.export import export_image

    export_image(_store(obj), ref, output, fmt)


@image.command()
@click.argument("ref")
@click.pass_obj
@errors_to_exit
def pull(obj, ref: str) -> None:
    """Fetch REF from its registry (HTTP for 127.0.0.1/localhost, HTTPS otherwise)."""
    from ctr.images import registry

    img = registry.pull(_store(obj), ref)
    click.echo(f"{img.name}: {img.digest}")


@image.command()
@click.argument("ref")
@click.pass_obj
@errors_to_exit
def push(obj, ref: str) -> None:
    """Upload the image REF to the registry its name names (e.g. 127.0.0.1:5000/demo:1)."""
    from ctr.images import registry
    from ctr.images.reference import normalize_ref

    digest = registry.push(_store(obj), ref)
    click.echo(f"{normalize_ref(ref)}: {digest}")
