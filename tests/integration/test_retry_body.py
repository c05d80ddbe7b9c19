"""Retries carry request bodies through real sidecars (issue: a POST got the backend's 503 after one try)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.integration.conftest import ControlPlane, apply_ok, eventually, fqdn, route_to
from tests.integration.httpclient import AppServer

pytestmark = pytest.mark.asyncio
_namespaces = itertools.count(1)


class FailsThenEchoes(AppServer):
    """Answers 503 to its first `fail_first` requests, then echoes each request's body; reads bodies whole."""

    def __init__(self, fail_first: int) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.bodies: list[bytes] = []

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        if "transfer-encoding: chunked" in head:
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if not size:
                    break
                body += chunk[:-2]
        else:
            length = next((int(line.split(":")[1]) for line in head.split("\r\n") if line.startswith("content-length:")),
                          0)
            body = await reader.readexactly(length)
        self.bodies.append(body)
        if len(self.bodies) <= self.fail_first:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 7\r\n\r\nfailing")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return True


async def raw_post(port: int, head: bytes, body: bytes) -> tuple[int, bytes]:
    """The head first, the body a moment later (as a client streaming it), on a connection of its own."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await asyncio.sleep(0.05)
        writer.write(body)
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = next(int(line.split(b":")[1]) for line in rest.split(b"\r\n") if line.lower().startswith(b"content-length"))
        return int(status_line.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()


@pytest.fixture
async def mesh_with(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    started: list[AppServer] = []

    async def start(backend: FailsThenEchoes, limit: int | None = None):  # type: ignore[no-untyped-def]
        ns = f"rb{next(_namespaces)}"
        await backend.start()
        started.append(backend)
        server = mesh.proxy("reviews", backend.port, 9080, ns, "app=reviews")
        extra = ("--retry-buffer-limit", str(limit)) if limit is not None else ()
        front_app = await FailsThenEchoes(0).start()
        started.append(front_app)
        front = mesh.proxy("frontend", front_app.port, 9080, ns, "app=frontend", extra)
        for sidecar in (server, front):
            await sidecar.ready()
        await apply_ok(mesh, route_to(ns, fields="    retries: {attempts: 3, retryOn: 5xx}\n"), front)
        await eventually(lambda: front.endpoints(fqdn("reviews", ns)))
        return front

    yield start
    for app in started:
        await app.stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_post_body_arrives_whole_on_the_retry(mesh_with, chunked: bool) -> None:
    backend = FailsThenEchoes(fail_first=2)
    front = await mesh_with(backend)
    body = bytes(range(32, 127)) * 3 + b"x" * 60  # 345 bytes
    te = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % len(body)
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body
    status, answer = await raw_post(front.outbound_port,
                                    b"POST http://reviews:9080/orders HTTP/1.1\r\nhost: reviews:9080\r\n%s\r\n\r\n" % te,
                                    framed)
    assert (status, answer) == (200, body)
    assert backend.bodies == [body, body, body]


async def test_a_body_over_the_limit_is_not_retried_and_one_at_the_limit_is(mesh_with) -> None:
    backend = FailsThenEchoes(fail_first=1)
    front = await mesh_with(backend, limit=100)
    head = b"POST http://reviews:9080/orders HTTP/1.1\r\nhost: reviews:9080\r\ncontent-length: %d\r\n\r\n"
    status, _ = await raw_post(front.outbound_port, head % 101, b"o" * 101)
    assert status == 503 and len(backend.bodies) == 1  # one byte over: streamed, the 503 reaches the client
    backend.bodies.clear()  # it fails its first request again
    status, answer = await raw_post(front.outbound_port, head % 100, b"a" * 100)
    assert (status, answer) == (200, b"a" * 100) and backend.bodies == [b"a" * 100] * 2  # at the limit: retried
