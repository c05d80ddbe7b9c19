"""Reading a small file an operator names (a token, a KEK, a client config, a PEM), bounded and never blocking.

    read_bounded(path, limit) -> bytes   at most limit + 1 bytes (so the caller can tell "over the limit");
                                         OSError when it cannot be read, is a directory, a FIFO or a socket

`open()` of a FIFO waits for a writer, and reading one (or a socket) waits on whoever feeds it: a
`--token-file` or `--ca-kek-file` naming one hung `proxy run` and `isthmus up` without a word. A
character device (/dev/zero) is read up to the bound like a file, so "more than N bytes" still says what
is wrong; `Path.read_bytes()[:N]` read all of it first (`--plugin-ca-cert /dev/zero`: MemoryError).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_bounded(path: str | Path, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, "it is a directory")
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise OSError(errno.EINVAL, "it is a FIFO or a socket, not a file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
