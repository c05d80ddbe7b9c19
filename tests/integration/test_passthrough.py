"""outboundTrafficPolicy through real sidecars and a real bus: hosts outside the mesh pass through (plain HTTP
and CONNECT) under ALLOW_ANY, get 502 under REGISTRY_ONLY, and the mesh-wide mode reaches running proxies."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend, Client

pytestmark = pytest.mark.asyncio


class TcpEcho:
    """An outside-mesh TCP service (stands for an HTTPS server behind CONNECT): echoes until EOF."""

    async def start(self) -> "TcpEcho":
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()
        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


async def connect_through(port: int, authority: str) -> tuple[int, bytes]:
    """CONNECT through the sidecar, then one round trip in the tunnel; (status, what came back)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split()[1])
        if status != 200:
            return status, head
        writer.write(b"\x16\x03\x01 hello through the tunnel")
        return status, await asyncio.wait_for(reader.readexactly(28), 10)
    finally:
        writer.close()


async def set_policy(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, mode: str, *sidecars) -> None:  # type: ignore[no-untyped-def]
    """Change pilot's mesh setting as an operator does (its environment, a restart) and wait for the proxies."""
    monkeypatch.setenv("ISTHMUS_OUTBOUND_TRAFFIC_POLICY", mode)
    await plane.restart_service("pilot")
    for sidecar in sidecars:
        await eventually(lambda: sidecar.config_dump().get("mesh", {}).get("outbound_traffic_policy", "ALLOW_ANY")
                         == mode, timeout=20)


async def test_outside_hosts_pass_through_and_registry_only_blocks_them_on_a_running_proxy(
        mesh: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = await Backend("outside").start()
    echo = await TcpEcho().start()
    app = await Backend("app").start()
    log = mesh.state_dir / "logs" / "access-passthrough.log"
    sidecar = mesh.proxy("app", app.port, 9080, "pt", "app=app", ("--access-log", str(log)))
    await sidecar.ready()
    client = Client("127.0.0.1", sidecar.outbound_port)
    try:
        # ALLOW_ANY (the default): plain HTTP to a host the mesh does not know goes where the client asked
        response = await client.request("GET", f"http://localhost:{outside.port}/weather?q=1")
        assert (response.status, response.text) == (200, "outside")
        assert outside.requests[-1][:2] == ("GET", "/weather?q=1")
        assert await connect_through(sidecar.outbound_port, f"localhost:{echo.port}") == \
            (200, b"\x16\x03\x01 hello through the tunnel")

        # REGISTRY_ONLY, set on pilot, reaches the running proxy; a ServiceEntry host is still known
        reply = await apply(mesh, f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: known, namespace: pt}}
spec:
  hosts: [known.example]
  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 443, name: tls, protocol: TLS}}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{{address: 127.0.0.1, ports: {{http: {outside.port}, tls: {echo.port}}}}}]
""")
        assert reply["ok"], reply
        await set_policy(mesh, monkeypatch, "REGISTRY_ONLY", sidecar)
        await eventually(lambda: sidecar.config_dump()["version"] >= reply["revision"])
        seen = len(outside.requests)
        response = await client.request("GET", f"http://localhost:{outside.port}/weather")
        assert response.status == 502 and "REGISTRY_ONLY" in response.text
        status, _ = await connect_through(sidecar.outbound_port, f"localhost:{echo.port}")
        assert status == 502
        assert len(outside.requests) == seen  # nothing got out
        response = await client.request("GET", "http://known.example/registered")
        assert (response.status, response.text) == (200, "outside")
        # CONNECT to a mesh host: its opaque TCP (TLS) port tunnels, its HTTP port is refused (HTTP routing applies)
        assert await connect_through(sidecar.outbound_port, "known.example:443") == \
            (200, b"\x16\x03\x01 hello through the tunnel")
        status, _ = await connect_through(sidecar.outbound_port, "known.example:80")
        assert status == 403

        def logged() -> list[str]:
            return log.read_text().splitlines() if log.exists() else []
        lines = await eventually(lambda: [ln for ln in logged() if "BlackHoleCluster" in ln] if
                                 len([ln for ln in logged() if "BlackHoleCluster" in ln]) >= 2 else None)
        assert any('"GET /weather HTTP/1.1" 502 - ' in ln for ln in lines), lines
        assert any('"CONNECT localhost:' in ln and " 502 UH " in ln for ln in lines), lines  # Istio's TCP black hole
        assert any("PassthroughCluster" in ln and '"GET /weather?q=1 HTTP/1.1" 200' in ln for ln in logged())
        assert any('"CONNECT localhost:' in ln and " 200 - " in ln and "PassthroughCluster" in ln for ln in logged())

        # and back: ALLOW_ANY again on the same running proxy
        await set_policy(mesh, monkeypatch, "ALLOW_ANY", sidecar)
        response = await client.request("GET", f"http://localhost:{outside.port}/again")
        assert (response.status, response.text) == (200, "outside")
    finally:
        await client.close()
        for server in (outside, app):
            await server.stop()
        echo.server.close()
