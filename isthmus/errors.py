"""The CLI's one error type."""

from __future__ import annotations

from typing import TextIO

import click


class CliError(click.ClickException):
    """A user-facing error: printed as `error: <message>` on stderr, exit code 1."""

    def show(self, file: TextIO | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)

