"""Connecting to the bus: retried until a first connection, reconnected forever afterwards, backing off while
the bus refuses our credentials (runtime/bus.py re-exports it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from runtime.hidden_imports import modules_hidden

with modules_hidden("aiohttp"):  # as in runtime/bus_core.py: nats-py would load aiohttp (~15 MB) for WebSockets
    import nats
    import nats.errors
    from nats.aio.client import Client

from runtime.bus_core import Bus, BusError
from runtime.clientconfig import NatsClient
from runtime.log import get_logger

log = get_logger("bus")


def servers(url: str) -> list[str]:
    """The server URLs of a bus URL: one, or several comma-separated (the nodes of a NATS cluster; nats-py
    picks one and moves to another when it fails, and also learns the cluster's other nodes from the one it
    reached: nats-server's INFO connect_urls)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def connect_options(auth: NatsClient | None) -> dict[str, Any]:
    """nats-py connect() keyword arguments for a client config's credentials (none without one)."""
    if auth is None:
        return {}
    options: dict[str, Any] = {}
    if auth.user:
        options.update(user=auth.user, password=auth.password)
    if auth.inbox_prefix:
        options["inbox_prefix"] = auth.inbox_prefix
    tls = auth.tls_context()
    if tls is not None:
        options["tls"] = tls  # the server's certificate must name the URL's host (up's names 127.0.0.1)
    return options


RECONNECT_WAIT = 0.25  # seconds between reconnect attempts while the bus is away
REFUSED_WAIT_MAX = 5.0  # seconds: a client the bus refuses (revoked, unknown) retries at most this often


class _Client(Client):
    """nats-py's client, reconnecting when nats-server ends a session whose credentials expired.

    The auth callout gives a proxy connection a session of at most SESSION_SECONDS (services/auth): then
    nats-server sends `-ERR 'User Authentication Expired'` and closes the connection, and the client must
    connect again through the callout (nats.go does: it treats the error as an auth error and reconnects).
    nats-py closes the client for good on any -ERR it does not know, so every sidecar lost the bus ten
    minutes after it connected (found by an attack on issue 12: pushes, heartbeats and telemetry stopped).
    Here that error is an operational one: the usual reconnect, subscriptions kept; a refusal then is
    handled as any refusal (connect()'s error callback backs off)."""

    async def _process_err(self, err_msg: str) -> None:
        if "user authentication expired" in err_msg.lower():
            await self._process_op_err(nats.errors.Error(f"nats: {err_msg.strip(chr(39))}"))
            return
        await super()._process_err(err_msg)


def refused_wait(refusals: int) -> float:
    """Seconds before the next attempt after `refusals` refusals in a row: RECONNECT_WAIT doubled per refusal,
    at most REFUSED_WAIT_MAX. The exponent is capped: 2 ** 1024 is past a float (OverflowError), which a
    sidecar refused every 5 s reached after about 85 minutes."""
    return min(RECONNECT_WAIT * 2 ** min(refusals, 32), REFUSED_WAIT_MAX)


def _refusal(exc: BaseException) -> bool:
    """Whether nats-server refused the credentials (`-ERR 'Authorization Violation'`)."""
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()


async def connect(
    url: str,
    name: str,
    *,
    wait: float | None = 30.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    auth: NatsClient | None = None,
) -> Bus:
    """Connect, retrying until `wait` seconds pass (None: forever); reconnects forever afterwards.
    `auth`: the user, password, inbox prefix and TLS CA of a client config (runtime/clientconfig.py).

    A refusal of our credentials (a revoked or unknown proxy credential, a stale password) is logged once
    per run of refusals, as a warning naming the user, and the retries back off from RECONNECT_WAIT,
    doubling to REFUSED_WAIT_MAX: a refused client can do nothing on the bus, and each attempt costs the
    auth callout and two log lines in nats-server's and the auth service's logs. BusError (with the
    last refusal or error) when `wait` passes before the first connection."""
    user = auth.user if auth and auth.user else "(anonymous)"
    refusals = 0
    last_error = ""
    client = _Client()

    async def reconnected() -> None:
        nonlocal refusals
        if refusals:
            log.info("bus credentials accepted again", url=url, user=user)
        refusals = 0
        client.options["reconnect_time_wait"] = RECONNECT_WAIT
        log.info("bus reconnected", url=url)
        if on_reconnect:
            await on_reconnect()

    async def disconnected() -> None:
        if client.is_draining or client.is_closed:
            return  # our own close(), not an outage
        log.warning("bus disconnected", url=url)
        if on_disconnect:
            await on_disconnect()

    async def error(exc: Exception) -> None:
        nonlocal refusals, last_error
        if not _refusal(exc):
            log.debug("bus error", error=str(exc))
            if not refusals:  # once refused, the server's close after its -ERR (a reset) is the same refusal
                last_error = str(exc) or type(exc).__name__
                return
        else:
            last_error = str(exc) or type(exc).__name__
        refusals += 1
        client.options["reconnect_time_wait"] = refused_wait(refusals)
        if refusals == 1:
            log.warning("bus refused our credentials", url=url, user=user, error=last_error,
                        why="revoked, expired or unknown (`isthmus proxy credentials list` shows a proxy's), or the "
                            "auth service is not answering", retry_every_max_s=REFUSED_WAIT_MAX)

    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    while True:
        remaining = None if deadline is None else max(0.5, deadline - loop.time())
        try:
            # nats-py retries a first connect forever when reconnects are unlimited: bound it here
            await asyncio.wait_for(client.connect(
                servers=servers(url),
                **connect_options(auth),
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT,
                connect_timeout=2,
                ping_interval=5,
                max_outstanding_pings=2,
                reconnected_cb=reconnected,
                disconnected_cb=disconnected,
                error_cb=error,
            ), remaining)
            client.options["reconnect_time_wait"] = RECONNECT_WAIT
            if refusals:
                log.info("bus credentials accepted", url=url, user=user)
            refusals = 0
            return Bus(client)
        except Exception as exc:
            if deadline is not None and loop.time() > deadline:
                raise BusError(f"cannot reach the bus at {url}: {str(exc) or last_error or type(exc).__name__}") from exc
            client = _Client()
            await asyncio.sleep(RECONNECT_WAIT)
