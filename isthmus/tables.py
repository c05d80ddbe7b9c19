"""Tables of the troubleshooting commands, drawn by rich (a well-kept table library): kubectl's look, no
borders, columns padded, long cells wrapped to the terminal (or kept whole when the output is not a terminal)."""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterable, Sequence


def render(headers: Sequence[str], rows: Iterable[Sequence[str]], width: int | None = None) -> str:
    """The rows under their headers as text; `width`: the terminal's (None: the terminal's, else 200)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="", expand=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    out = io.StringIO()
    # a terminal: wrap long cells to its width; a pipe or file: never wrap (scripts split lines on whitespace)
    columns = width or (max(shutil.get_terminal_size((200, 24)).columns, 80) if sys.stdout.isatty() else 100_000)
    Console(file=out, width=columns, color_system=None, highlight=False, markup=False, emoji=False,
            soft_wrap=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines() if line.strip()).strip("\n")
