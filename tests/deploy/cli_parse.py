"""Parse an `isthmus ...` command line as the CLI would, without running it (docker-compose.yml, systemd units)."""

from __future__ import annotations

import warnings

import click

from isthmus.cli import cli


def parse(args: list[str]) -> None:
    """Parse `isthmus ARGS` down to the last subcommand as the CLI would (callbacks included), without running it."""
    group: click.Command = cli
    ctx = group.make_context("isthmus", list(args), resilient_parsing=False)
    while isinstance(group, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 8.1 still needs it
            warnings.simplefilter("ignore", DeprecationWarning)
            name, command, rest = group.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
        assert command is not None, args
        ctx = command.make_context(name, rest, parent=ctx)
        group = command
