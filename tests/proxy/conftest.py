"""Fixtures for loopback listener tests, found by pytest in every module here: a connection pool, a
listener factory, and raw clients, all closed at teardown (clients, then listeners, then the pool)."""

from __future__ import annotations

import pytest
from tests.proxy.http_helpers import Clients

from proxy.http.head import Mode
from proxy.http.listener import Listener, serve
from proxy.http.upstream_pool import ConnectionPool


@pytest.fixture
async def pool():
    pool = ConnectionPool(connect_timeout=2.0)
    yield pool
    pool.close()


@pytest.fixture
async def start_proxy(pool):
    """`await start_proxy(router, mode=Mode.OUTBOUND, **serve_options)`: a listener on 127.0.0.1:0."""
    listeners: list[Listener] = []

    async def start(router, mode: Mode = Mode.OUTBOUND, **options) -> Listener:
        listener = await serve("127.0.0.1", 0, router, pool, mode, **options)
        listeners.append(listener)
        return listener

    yield start
    for listener in listeners:
        await listener.stop(grace=0.5)


@pytest.fixture
async def connect():
    """`await connect(port)`: a raw client connection (reader, writer)."""
    clients = Clients()
    yield clients
    await clients.close()


@pytest.fixture
async def proxy_for(start_proxy, connect):
    """`await proxy_for(router, mode=Mode.OUTBOUND, **serve_options)`: a client connection (reader, writer)
    to a new listener for `router`."""

    async def start(router, mode: Mode = Mode.OUTBOUND, **options):
        listener = await start_proxy(router, mode, **options)
        return await connect(listener.port)

    return start
