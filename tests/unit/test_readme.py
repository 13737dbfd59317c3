"""The README tells the truth: its feature table matches the code, every command has help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ctr.backends import REGISTRY, backend_class
from ctr.backends.base import FEATURE_ROWS
from ctr.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def feature_table() -> dict[str, dict[str, bool]]:
    text = README.read_text()
    block = text.split("<!-- features:start -->", 1)[1].split("<!-- features:end -->", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0]] = {name: cell.startswith("✓") for name, cell in zip(header[1:], cells[1:])}
    return table


def test_feature_table_matches_the_code():
    table = feature_table()
    assert list(table) == [label for label, _ in FEATURE_ROWS], "README rows differ from FEATURE_ROWS"
    for name in REGISTRY:
        features = backend_class(name).features()
        for label, supported in features.items():
            assert table[label][name] == supported, (
                f"README says {label} on {name} is {table[label][name]}, the code says {supported}"
            )


def test_unsupported_flags_are_explained_in_the_readme():
    text = README.read_text()
    for name in REGISTRY:
        for flag, why in backend_class(name).UNSUPPORTED_FLAGS.items():
            assert why in text, f"README does not say why {name} refuses {flag}: {why!r}"


def _commands(group, prefix=""):
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield prefix + name, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + name + " ")


@pytest.mark.parametrize("name,cmd", list(_commands(cli)))
def test_every_command_has_help(name, cmd):
    assert cmd.help and cmd.help.strip(), f"ctr {name} has no help"
    for param in cmd.params:
        if param.param_type_name == "option" and not param.hidden:
            assert param.help, f"ctr {name} {param.opts} has no help"


def test_readme_opens_with_the_two_setup_commands():
    text = README.read_text()
    first_block = re.search(r"```\n(.*?)```", text, re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
