"""What a forked child of this test process makes: for checks that a child never repeats its parent's ids."""

from __future__ import annotations

import os
from collections.abc import Callable


def from_forked_child(produce: Callable[[], bytes]) -> bytes:
    """`produce()` run in a forked child, its bytes read back through a pipe; the child ends with os._exit, so it
    never returns into the test run."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, produce())
        finally:
            os._exit(0)
    os.close(write)
    got = b""
    while chunk := os.read(read, 65536):
        got += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return got
