"""Import a library with some of its optional imports made to fail, so a process does not load what it never
uses (each such library sets the name to None on the ImportError, as its own code documents).

    with modules_hidden("rich", "better_exceptions") as hidden:   hidden: the names that were not loaded yet,
        import structlog                                           so hidden for the block (others stay as loaded)

After the block the names import normally again (a later `import rich` loads it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def modules_hidden(*names: str) -> Iterator[list[str]]:
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        yield hidden
    finally:
        for name in hidden:
            del sys.modules[name]
