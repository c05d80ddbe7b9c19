"""directResponse, redirect, rewrite, headers, corsPolicy and mirroring through real sidecars (Istio YAML)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import AppServer, Client

pytestmark = pytest.mark.asyncio
_namespaces = itertools.count(1)


class EchoBackend(AppServer):
    """An app that answers 200 with `<request target> <host header>` and counts what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes]] = []
        self.heads: list[list[bytes]] = []  # each request's header lines, lower-cased
        self.bodies: list[bytes] = []

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1]
        host = next((line.split(b":", 1)[1].strip() for line in lines[1:]
                     if line.lower().startswith(b"host:")), b"")
        self.seen.append((target, host))
        self.heads.append([line.lower() for line in lines[1:] if line])
        length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith(b"content-length:")), 0)
        self.bodies.append(await reader.readexactly(length))
        body = b"%s %s" % (target, host)
        writer.write(b"HTTP/1.1 200 OK\r\nserver: echo\r\nx-app: 1\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        return True


class Mesh:
    """One `reviews` endpoint behind its sidecar and a frontend sidecar the test calls through."""

    def __init__(self, mesh: ControlPlane) -> None:
        self.mesh = mesh
        self.ns = f"shape{next(_namespaces)}"

    async def start(self) -> "Mesh":
        self.backend = await EchoBackend().start()
        self.front = await EchoBackend().start()
        reviews = self.mesh.proxy("reviews", self.backend.port, 9080, self.ns, "app=reviews")
        self.frontend = self.mesh.proxy("frontend", self.front.port, 9080, self.ns, "app=frontend")
        for sidecar in (reviews, self.frontend):
            await sidecar.ready()
        await eventually(self._has_endpoint)
        self.client = Client("127.0.0.1", self.frontend.outbound_port)
        return self

    def _has_endpoint(self) -> bool:
        return any(c["host"] == f"reviews.{self.ns}.svc.cluster.local" and c["endpoints"]
                   for c in self.frontend.config_dump()["clusters"])

    async def rules(self, http: str) -> None:
        reply = await apply(self.mesh, f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {self.ns}}}
spec:
  hosts: [reviews]
  http:
{http}""")
        assert reply["ok"], reply
        await eventually(lambda: self.frontend.config_dump()["version"] >= reply["revision"])

    async def get(self, path: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return await self.client.request("GET", f"http://reviews:9080{path}", headers)

    async def stop(self) -> None:
        await self.client.close()
        await self.backend.stop()
        await self.front.stop()


@pytest.fixture
async def reviews(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    app = Mesh(mesh)
    await app.start()
    yield app
    await app.stop()


async def test_direct_response_and_redirect_are_answered_by_the_sidecar(reviews: Mesh) -> None:
    await reviews.rules("""
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: short and stout}}
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: ratings, redirectCode: 302}
  - route: [{destination: {host: reviews}}]
""")
    teapot = await reviews.get("/teapot")
    assert teapot.status == 418 and teapot.text == "short and stout"
    moved = await reviews.get("/old/page?x=1")
    assert moved.status == 302 and moved.headers["location"] == "http://ratings/new?x=1"
    routed = await reviews.get("/other")  # the keep-alive connection still serves routed requests
    assert routed.status == 200 and routed.text == "/other reviews:9080"
    assert reviews.backend.seen == [(b"/other", b"reviews:9080")]


async def test_rewrite_changes_the_path_and_host_sent_upstream(reviews: Mesh) -> None:
    await reviews.rules("""
  - match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /v2/, authority: reviews.internal}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /svc/}}]
    rewrite: {uriRegexRewrite: {match: '^/svc/([^/]+)/(.*)$', rewrite: '/\\2/by/\\1'}}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
""")
    response = await reviews.get("/api/users?id=3")
    assert response.status == 200 and response.text == "/v2/users?id=3 reviews.internal"
    response = await reviews.get("/svc/abc/get?q=1")
    assert response.status == 200 and response.text == "/get/by/abc?q=1 reviews:9080"
    response = await reviews.get("/plain")
    assert response.text == "/plain reviews:9080"


async def test_header_operations_apply_to_the_request_upstream_and_the_response(reviews: Mesh) -> None:
    await reviews.rules("""
  - headers:
      request: {set: {X-Env: prod}, add: {X-Trace: rule}, remove: [X-Debug]}
      response: {remove: [Server], add: {X-App: rule}}
    route:
    - destination: {host: reviews}
      headers: {response: {set: {X-Version: v1}}, request: {set: {X-Env: dest}}}
""")
    response = await reviews.get("/h", {"x-debug": "1", "x-env": "dev", "x-trace": "client"})
    assert response.status == 200
    sent = reviews.backend.heads[-1]
    assert b"x-env: prod" in sent and b"x-env: dev" not in sent and b"x-env: dest" not in sent
    assert b"x-trace: client" in sent and b"x-trace: rule" in sent
    assert not any(line.startswith(b"x-debug") for line in sent)
    assert "server" not in response.headers and response.headers["x-version"] == "v1"
    assert response.headers["x-app"] == "rule"  # the test client keeps the last value of a name


async def test_cors_preflight_is_answered_by_the_sidecar_and_responses_carry_cors_headers(reviews: Mesh) -> None:
    await reviews.rules("""
  - route: [{destination: {host: reviews}}]
    corsPolicy:
      allowOrigins: [{exact: "https://app.example"}]
      allowMethods: [GET, PUT]
      maxAge: 1m
      exposeHeaders: [X-App]
""")
    preflight = await reviews.client.request("OPTIONS", "http://reviews:9080/c", {
        "origin": "https://app.example", "access-control-request-method": "PUT"})
    assert preflight.status == 200 and reviews.backend.seen == []
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "GET,PUT"
    assert preflight.headers["access-control-max-age"] == "60"
    actual = await reviews.get("/c", {"origin": "https://app.example"})
    assert actual.status == 200 and actual.headers["access-control-allow-origin"] == "https://app.example"
    assert actual.headers["access-control-expose-headers"] == "X-App"
    other = await reviews.get("/c", {"origin": "https://evil.example"})
    assert other.status == 200 and "access-control-allow-origin" not in other.headers
    unknown = await reviews.client.request("OPTIONS", "http://reviews:9080/c", {
        "origin": "https://evil.example", "access-control-request-method": "PUT"})
    assert unknown.status == 200 and len(reviews.backend.seen) == 3  # went upstream


async def test_a_mirror_gets_a_shadow_copy_and_the_client_only_sees_the_primary(reviews: Mesh) -> None:
    shadow = await EchoBackend().start()
    try:
        ratings = reviews.mesh.proxy("ratings", shadow.port, 9080, reviews.ns, "app=ratings")
        await ratings.ready()
        await eventually(lambda: any(c["host"] == f"ratings.{reviews.ns}.svc.cluster.local" and c["endpoints"]
                                     for c in reviews.frontend.config_dump()["clusters"]))
        await reviews.rules("""
  - route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
    mirrorPercentage: {value: 100}
""")
        for i in range(5):
            response = await reviews.client.request("POST", f"http://reviews:9080/m{i}", None, b"payload-%d" % i)
            assert response.status == 200 and response.text == f"/m{i} reviews:9080"
        await eventually(lambda: len(shadow.seen) == 5)
        assert sorted(shadow.seen) == [(b"/m%d" % i, b"reviews-shadow:9080") for i in range(5)]
        assert sorted(shadow.bodies) == [b"payload-%d" % i for i in range(5)]
        assert len(reviews.backend.seen) == 5
    finally:
        await shadow.stop()
