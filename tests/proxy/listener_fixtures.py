"""Fixtures for loopback listener tests (import them into a test module): a pool, a listener factory, raw
clients, and an upstream that records every byte it is sent (to prove a refused request reached no app)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from tests.proxy.http_helpers import Clients, Upstream

from proxy.http.listener import Listener, serve
from proxy.http.head import Mode
from proxy.http.upstream_pool import ConnectionPool

BOTH = pytest.mark.parametrize("mode", [Mode.OUTBOUND, Mode.INBOUND], ids=["outbound", "inbound"])


@pytest.fixture
async def pool():
    pool = ConnectionPool(connect_timeout=2.0)
    yield pool
    pool.close()


@pytest.fixture
async def start_proxy(pool):
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
    clients = Clients()
    yield clients
    await clients.close()


class RecordingApp(Upstream):
    """An app that answers nothing and keeps every byte it receives, per connection."""

    def __init__(self) -> None:
        super().__init__(self._record)
        self.received = bytearray()
        self.closed = asyncio.Event()  # set when a connection from the sidecar ends

    @staticmethod
    async def _record(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert isinstance(up, RecordingApp)
        try:
            while data := await reader.read(65536):
                up.received += data
        finally:
            up.closed.set()


class _Recorder:
    """Stands in for a structlog logger: keeps each call as capture_logs would (event, log_level, fields).
    (capture_logs cannot see a module's logger once structlog has cached it, as runtime.log configures.)"""

    def __init__(self, entries: list[dict]) -> None:
        self.entries = entries

    def __getattr__(self, level: str):
        def emit(event: str, **fields: object) -> None:
            self.entries.append({"event": event, "log_level": level, **fields})
        return emit


@contextlib.contextmanager
def recorded_logs():
    """What the sidecar's HTTP modules log meanwhile (proxy/http/rescue.py, conn_guard.py, proxy/main.py)."""
    import proxy.http.conn_guard as conn_guard
    import proxy.http.rescue as rescue
    import proxy.main as main

    entries: list[dict] = []
    recorder = _Recorder(entries)
    saved = (rescue.log, conn_guard.log, main.get_logger)
    rescue.log = conn_guard.log = recorder
    main.get_logger = lambda name="": recorder
    try:
        yield entries
    finally:
        rescue.log, conn_guard.log, main.get_logger = saved
