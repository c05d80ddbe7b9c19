"""What stops a sidecar from starting: a flag it cannot honour (StartError, `proxy run` exits 2) or no bus
credentials (CredentialsError, exit 1)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from proxy.control import buscreds

CredentialsError = buscreds.CredentialsError  # no bus credentials, or refused: exit 1 with the reason


class StartError(Exception):
    """The sidecar cannot start as asked: a port is taken, the access log cannot be opened. The message is
    one line that names the flag (`--inbound-port 15006: address already in use`); `proxy run` prints it
    and exits 2."""


def reason(exc: OSError) -> str:
    """`address already in use` for EADDRINUSE: the OS's words, without asyncio's wrapping."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


async def bind(start: Callable[[], Awaitable[None]], flag: str) -> None:
    """Run a listener's start(); an OSError (the port is taken, not ours to bind...) becomes a StartError."""
    try:
        await start()
    except OSError as exc:
        raise StartError(f"{flag}: {reason(exc)}") from exc
