"""isthmus/cli.py's lazy root group: every command is there as if imported up front (help, suggestions)."""

from __future__ import annotations

from click.testing import CliRunner

from isthmus.cli import COMMANDS, cli


def test_an_unknown_command_is_answered_with_the_close_names_of_commands_not_loaded_yet() -> None:
    result = CliRunner().invoke(cli, ["prox"])
    assert result.exit_code == 2
    assert "No such command 'prox'. Did you mean 'proxy'?" in result.output


def test_every_command_listed_resolves_to_a_command_of_that_name() -> None:
    ctx = cli.make_context("isthmus", ["version"])
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name, name
