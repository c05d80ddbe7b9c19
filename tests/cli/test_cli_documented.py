"""Every flag the `isthmus` command takes is in the user's docs (docs/*.md), and every command has its place in
docs/cli.md: a flag that only `--help` shows is one a reader of the docs cannot find (a new user found
`--dashboard-port` missing from `up`'s usage line)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from isthmus.cli import cli

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _leaves(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += _leaves(command, ctx, (*path, name))
        else:
            found.append((" ".join((*path, name)), command))
    return found


def test_every_flag_of_every_command_is_documented() -> None:
    text = "".join(path.read_text() for path in sorted(DOCS.glob("*.md")))
    leaves = _leaves(cli, click.Context(cli))
    assert len(leaves) > 30  # the walk reached the subcommands
    missing = [f"isthmus {name} {'/'.join(option.opts)}"
               for name, command in leaves for option in command.params
               if isinstance(option, click.Option) and not option.hidden
               and not any(re.search(re.escape(flag) + r"(?![\w-])", text) for flag in option.opts)]
    assert missing == [], "flags missing from docs/*.md"


def test_every_command_is_named_in_the_cli_reference() -> None:
    text = (DOCS / "cli.md").read_text()
    ctx = click.Context(cli)
    missing = [name for name in cli.list_commands(ctx)
               if not re.search(rf"(`|isthmus ){re.escape(name)}[` ]", text)]
    assert missing == []
