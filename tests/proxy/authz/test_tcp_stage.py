"""AuthorizationPolicy on an inbound TCP listener (proxy/tcp/listener.py TcpListener with `authorize`): checked
when a connection is accepted, before the app is connected; a denial closes it and its access-log line names the
policy; open connections are not cut by a later policy change."""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.authz.helpers import policy
from proxy.access_log import AccessLog
from proxy.core.target import Target
from proxy.inbound.authz.engine import Authorization
from proxy.tcp.listener import TcpListener

pytestmark = pytest.mark.timeout(30)


class App:
    """An echo server that counts the connections it was given."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def __aenter__(self) -> App:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            while data := await reader.read(1024):
                writer.write(data)
            writer.close()

        self.server = await asyncio.start_server(echo, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def ping(port: int) -> tuple[bytes, asyncio.StreamWriter, asyncio.StreamReader]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    try:
        data = await asyncio.wait_for(reader.read(4), 5)
    except ConnectionResetError:
        data = b""
    return data, writer, reader


async def test_a_denied_connection_is_closed_before_the_app_is_reached_and_logged(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    deny_plaintext = policy("foo/mtls-only", "DENY", {"from": [{"source": {"notPrincipals": ["*"]}}]})
    async with App() as app:
        authz = Authorization([deny_plaintext])
        listener = TcpListener("127.0.0.1", 0, lambda client: Target("127.0.0.1", app.port, "inbound|5432||"),
                               "inbound 5432", "127.0.0.1:5432", log.for_listener("inbound"),
                               authorize=lambda: authz.tcp, app_port=app.port)
        await listener.start()
        try:
            data, writer, _ = await ping(listener.port)
            writer.close()
        finally:
            await listener.stop()
    log.close()
    assert data == b"" and app.accepted == 0 and listener.denied == 1
    (line,) = path.read_text().splitlines()
    assert ('inbound "- - -" 0 - - rbac_access_denied_matched_policy[ns[foo]-policy[mtls-only]-rule[0]] 0 0 '
            in line) and ' "127.0.0.1:5432" ' in line  # TCP: what it reached as the authority


async def test_destination_port_is_the_app_port_and_open_connections_survive_a_policy_change():
    async with App() as app:
        current: list[Authorization | None] = [Authorization([policy("foo/p", "ALLOW",
                                                                     {"to": [{"operation": {"ports": [app.port]}}]})])]
        listener = TcpListener("127.0.0.1", 0, lambda client: Target("127.0.0.1", app.port, "inbound|x||"), "in",
                               authorize=lambda: current[0].tcp if current[0] is not None else None,
                               app_port=app.port)
        await listener.start()
        try:
            data, kept, reader = await ping(listener.port)
            assert data == b"ping"
            current[0] = Authorization([policy("foo/deny-all", "ALLOW", no_rules=True)])
            denied, writer, _ = await ping(listener.port)
            writer.close()
            assert denied == b""
            kept.write(b"more")  # the connection opened under the old policy still relays
            assert await asyncio.wait_for(reader.read(4), 5) == b"more"
            kept.close()
            current[0] = None  # no policy: everything passes again
            data, writer, _ = await ping(listener.port)
            writer.close()
            assert data == b"ping"
        finally:
            await listener.stop()
    assert app.accepted == 2
