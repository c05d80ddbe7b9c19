"""Timeouts, retries and fault injection through real sidecars, configured with Istio-format YAML."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.integration.conftest import ControlPlane, apply, apply_ok, destination_rule, eventually, fqdn, route_to
from tests.integration.httpclient import AppServer, Client

pytestmark = pytest.mark.asyncio
_namespaces = itertools.count(1)


class FlakyBackend(AppServer):
    """An app that can be told to fail (503) its first `fail_first` requests, stall, or reset every request,
    and to take `delay` seconds over each answer."""

    def __init__(self, name: str, fail_first: int = 0, stall: bool = False, reset: bool = False,
                 delay: float = 0.0) -> None:
        super().__init__()
        self.name, self.fail_first, self.stall, self.reset, self.delay = name, fail_first, stall, reset, delay
        self.seen = 0

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await reader.readuntil(b"\r\n\r\n")
        self.seen += 1
        if self.reset:
            writer.transport.abort()
            return False
        if self.stall:
            await reader.read()
            return False
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.seen <= self.fail_first:
            status, body = b"503 Service Unavailable", b"failing"
        else:
            status, body = b"200 OK", self.name.encode()
        writer.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        return True


class Mesh:
    """`reviews` endpoints (one sidecar per backend) and a frontend sidecar the test calls through."""

    def __init__(self, mesh: ControlPlane) -> None:
        self.mesh = mesh
        self.ns = f"res{next(_namespaces)}"
        self.backends: list[FlakyBackend] = []

    async def start(self, *backends: FlakyBackend) -> "Mesh":
        sidecars = []
        for backend in backends:
            await backend.start()
            self.backends.append(backend)
            sidecars.append(self.mesh.proxy("reviews", backend.port, 9080, self.ns, f"app=reviews,name={backend.name}"))
        self.front = await FlakyBackend("frontend").start()
        self.access_log = self.mesh.state_dir / "logs" / f"access-{self.ns}.log"
        self.frontend = self.mesh.proxy("frontend", self.front.port, 9080, self.ns, "app=frontend",
                                        ("--access-log", str(self.access_log)))
        for sidecar in [*sidecars, self.frontend]:
            await sidecar.ready()
        await eventually(lambda: self.endpoints() == len(backends))
        self.client = Client("127.0.0.1", self.frontend.outbound_port)
        return self

    def endpoints(self) -> int:
        return self.frontend.endpoints(fqdn("reviews", self.ns), healthy_only=True)

    async def route(self, http_fields: str) -> None:
        """Route all of reviews with these more fields of the rule (YAML lines indented four spaces)."""
        await apply_ok(self.mesh, route_to(self.ns, fields=http_fields), self.frontend)

    async def rule(self, traffic_policy: str) -> None:
        """A DestinationRule for reviews with this trafficPolicy (flow-style YAML)."""
        await apply_ok(self.mesh, destination_rule(self.ns, (), traffic_policy), self.frontend)

    async def get(self):  # type: ignore[no-untyped-def]
        return await self.client.request("GET", "http://reviews:9080/r")

    async def stop(self) -> None:
        await self.client.close()
        for backend in [*self.backends, self.front]:
            await backend.stop()


@pytest.fixture
async def reviews(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    app = Mesh(mesh)
    yield app
    await app.stop()


async def test_retries_recover_from_a_backend_that_fails_its_first_attempts(reviews: Mesh) -> None:
    backend = FlakyBackend("ok-after-3", fail_first=3)
    await reviews.start(backend)
    await reviews.route("    retries: {attempts: 3, retryOn: 5xx}\n")
    response = await reviews.get()
    assert response.status == 200 and response.text == "ok-after-3"
    assert backend.seen == 4


async def test_without_enough_attempts_the_failure_reaches_the_client(reviews: Mesh) -> None:
    backend = FlakyBackend("ok-after-3", fail_first=3)
    await reviews.start(backend)
    await reviews.route("    retries: {attempts: 1, retryOn: 5xx}\n")
    response = await reviews.get()
    assert response.status == 503 and backend.seen == 2


async def test_a_retry_goes_to_the_other_endpoint(reviews: Mesh) -> None:
    bad, good = FlakyBackend("bad", reset=True), FlakyBackend("good")
    await reviews.start(bad, good)
    # The bad app resets; its own sidecar answers 503 UC, which gateway-error retries. RANDOM balancing
    # would pick the bad endpoint again half the time, and there is one retry only: every request
    # succeeds only if each retry avoids the endpoint it already tried.
    reply = await apply(reviews.mesh, f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {reviews.ns}}}
spec:
  host: reviews
  trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}
""")
    assert reply["ok"], reply
    await reviews.route("    retries: {attempts: 1, retryOn: gateway-error}\n")
    statuses = [(await reviews.get()).status for _ in range(40)]
    assert statuses == [200] * 40
    assert bad.seen >= 8 and good.seen == 40


async def test_a_route_timeout_fires_within_tolerance(reviews: Mesh) -> None:
    await reviews.start(FlakyBackend("slow", stall=True))
    await reviews.route("    timeout: 0.5s\n")
    t0 = time.monotonic()
    response = await reviews.get()
    elapsed = time.monotonic() - t0
    # the backend stalls forever: only the route timeout answers (the client gives up after 10 s)
    assert response.status == 504 and 0.5 <= elapsed < 3.0, (response.status, elapsed)


async def test_a_fifty_percent_abort_aborts_half_of_a_thousand_requests(reviews: Mesh) -> None:
    backend = FlakyBackend("v1")
    await reviews.start(backend)
    await reviews.route("    fault:\n      abort: {httpStatus: 418, percentage: {value: 50}}\n")
    statuses = [(await reviews.get()).status for _ in range(1000)]
    aborted = statuses.count(418)
    assert 450 <= aborted <= 550, aborted
    assert statuses.count(200) == 1000 - aborted and backend.seen == 1000 - aborted


async def test_a_fixed_delay_adds_the_delay(reviews: Mesh) -> None:
    await reviews.start(FlakyBackend("v1"))
    base = []
    for _ in range(3):
        t0 = time.monotonic()
        assert (await reviews.get()).status == 200
        base.append(time.monotonic() - t0)
    await reviews.route("    fault:\n      delay: {fixedDelay: 400ms, percentage: {value: 100}}\n")
    t0 = time.monotonic()
    response = await reviews.get()
    elapsed = time.monotonic() - t0
    assert response.status == 200
    assert 0.4 <= elapsed < 0.4 + max(base) + 2.0, (elapsed, base)  # the delay happened, once
