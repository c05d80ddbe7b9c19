"""DestinationRule settings beyond the circuit breaker, through real sidecars with Istio-format YAML:
retryBudget and maxRetries (a failing backend is not hammered), maxRequestsPerConnection and
http.idleTimeout (seen by a backend the sidecar reaches directly, a ServiceEntry endpoint), PASSTHROUGH,
consistentHash httpCookie with a ttl (the sidecar sets the cookie), and retryRemoteLocalities."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from tests.integration.conftest import (
    Bookinfo, ControlPlane, apply_ok, destination_rule, eventually, fqdn, route_to,
)
from tests.integration.httpclient import Client
from tests.integration.test_traffic_resilience import FlakyBackend, Mesh

pytestmark = pytest.mark.asyncio
_namespaces = itertools.count(1)


@pytest.fixture
async def reviews(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    app = Mesh(mesh)
    yield app
    await app.stop()


def breaker_stats(app: Mesh, host: str) -> dict:
    for pool in json.loads(app.frontend.admin("/clusters")[1]):
        if pool["host"] == host and pool["subset"] == "":
            return next(iter(pool["circuit_breakers"].values()))
    raise AssertionError(f"no breaker for {host}")


async def test_a_retry_budget_stops_retries_and_without_one_they_are_sent(reviews: Mesh) -> None:
    backend = FlakyBackend("down", fail_first=10**9)
    await reviews.start(backend)
    await reviews.route("    retries: {attempts: 3, retryOn: 5xx}\n")
    host = f"reviews.{reviews.ns}.svc.cluster.local"
    await reviews.rule("{retryBudget: {percent: 0, minRetryConcurrency: 0}}")
    assert [(await reviews.get()).status for _ in range(5)] == [503] * 5
    assert backend.seen == 5  # no retry was sent: the budget allows none
    assert breaker_stats(reviews, host)["retry_overflows"] == 5
    # Istio's defaults (20%, at least 3 at once): each request is retried 3 times
    await reviews.rule("{retryBudget: {}}")
    assert [(await reviews.get()).status for _ in range(5)] == [503] * 5
    assert backend.seen == 5 + 5 * 4


async def test_max_retries_caps_the_requests_retrying_at_once(reviews: Mesh) -> None:
    backend = FlakyBackend("down", fail_first=10**9, delay=0.3)  # slow: the six requests overlap
    await reviews.start(backend)
    await reviews.route("    retries: {attempts: 2, retryOn: 5xx}\n")
    await reviews.rule("{connectionPool: {http: {maxRetries: 1}}}")
    clients = [Client("127.0.0.1", reviews.frontend.outbound_port) for _ in range(6)]
    try:
        statuses = await asyncio.gather(*(c.request("GET", "http://reviews:9080/r") for c in clients))
    finally:
        for client in clients:
            await client.close()
    assert [r.status for r in statuses] == [503] * 6
    # 6 first tries fail together; the first to retry takes the one slot (and retries twice), the
    # other five are refused and answer with their first 503
    assert backend.seen == 6 + 2


class Direct:
    """A frontend sidecar and a backend it reaches directly, as a ServiceEntry endpoint (no sidecar in
    between), so the backend sees the frontend sidecar's upstream connections."""

    def __init__(self, mesh: ControlPlane) -> None:
        self.mesh = mesh
        self.ns = f"pool{next(_namespaces)}"

    async def start(self) -> "Direct":
        self.backend = await FlakyBackend("direct").start()
        self.other = await FlakyBackend("other").start()
        self.front = await FlakyBackend("frontend").start()
        self.frontend = self.mesh.proxy("frontend", self.front.port, 9080, self.ns, "app=frontend")
        await self.frontend.ready()
        self.client = Client("127.0.0.1", self.frontend.outbound_port)
        self.host = f"api.{self.ns}.example.com"  # hosts with a dot are not namespaced: one per test
        return self

    async def apply(self, text: str) -> None:
        await apply_ok(self.mesh, text, self.frontend)

    async def entry(self, host: str, port: int, endpoint_port: int) -> None:
        await self.apply(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext, namespace: {self.ns}}}
spec:
  hosts: [{host}]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{{address: 127.0.0.1, ports: {{http: {endpoint_port}}}}}]
""")

    async def rule(self, host: str, traffic_policy: str) -> None:
        await self.apply(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ext, namespace: {self.ns}}}
spec:
  host: {host}
  trafficPolicy: {traffic_policy}
""")

    async def stop(self) -> None:
        await self.client.close()
        for server in (self.backend, self.other, self.front):
            await server.stop()


@pytest.fixture
async def direct(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    app = await Direct(mesh).start()
    yield app
    await app.stop()


async def test_max_requests_per_connection_one_opens_a_connection_per_request(direct: Direct) -> None:
    await direct.entry(direct.host, 80, direct.backend.port)
    url = f"http://{direct.host}/"
    for _ in range(5):
        assert (await direct.client.request("GET", url)).text == "direct"
    assert direct.backend.accepted == 1  # keep-alive: one upstream connection carried all five
    await direct.rule(direct.host, "{connectionPool: {http: {maxRequestsPerConnection: 1}}}")
    for _ in range(5):
        assert (await direct.client.request("GET", url)).text == "direct"
    assert direct.backend.accepted == 1 + 5


async def test_http_idle_timeout_closes_pooled_upstream_connections(direct: Direct) -> None:
    await direct.entry(direct.host, 80, direct.backend.port)
    await direct.rule(direct.host, "{connectionPool: {http: {idleTimeout: 300ms}}}")
    url = f"http://{direct.host}/"
    assert (await direct.client.request("GET", url)).text == "direct"
    assert direct.backend.open == 1
    await eventually(lambda: direct.backend.open == 0, timeout=3)  # the sidecar closed it once idle
    assert (await direct.client.request("GET", url)).text == "direct"
    assert direct.backend.accepted == 2


async def test_passthrough_goes_to_the_address_the_caller_asked_for(direct: Direct) -> None:
    # the entry's endpoint is `other`; the caller asks for localhost:<backend port>
    await direct.entry("localhost", direct.backend.port, direct.other.port)
    url = f"http://localhost:{direct.backend.port}/"
    assert (await direct.client.request("GET", url)).text == "other"
    await direct.rule("localhost", "{loadBalancer: {simple: PASSTHROUGH}}")
    assert (await direct.client.request("GET", url)).text == "direct"


async def test_a_hash_cookie_with_a_ttl_is_set_by_the_sidecar_and_then_sticks(bookinfo: Bookinfo) -> None:
    reply = await bookinfo.apply(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {bookinfo.ns}}}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {{httpCookie: {{name: user, path: /, ttl: 3600s}}}}
""")
    await bookinfo.converged(reply["revision"])
    first_versions = set()
    for _ in range(12):
        response = await bookinfo.client.request("GET", "http://reviews:9080/reviews")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith('user="') and cookie.endswith("; Max-Age=3600; Path=/; HttpOnly")
        first_versions.add(response.text)
        value = cookie.split(";", 1)[0]
        for _ in range(5):  # the client sends the cookie back: same version, no new cookie
            again = await bookinfo.client.request("GET", "http://reviews:9080/reviews", {"cookie": value})
            assert again.text == response.text and "set-cookie" not in again.headers
    assert len(first_versions) >= 2  # new users are spread over the versions


async def test_retry_remote_localities_moves_the_second_retry_to_the_next_locality(mesh: ControlPlane) -> None:
    ns = f"loc{next(_namespaces)}"
    near, far, front = (await FlakyBackend("near", fail_first=10**9).start(), await FlakyBackend("far").start(),
                        await FlakyBackend("frontend").start())
    sidecars = [mesh.proxy("reviews", near.port, 9080, ns, "app=reviews", ("--locality", "us-east/z1/a")),
                mesh.proxy("reviews", far.port, 9080, ns, "app=reviews", ("--locality", "eu-west/z1/a")),
                mesh.proxy("frontend", front.port, 9080, ns, "app=frontend", ("--locality", "us-east/z1/a"))]
    frontend = sidecars[-1]
    client = Client("127.0.0.1", frontend.outbound_port)
    try:
        for sidecar in sidecars:
            await sidecar.ready()

        await eventually(lambda: frontend.endpoints(fqdn("reviews", ns)) == 2)

        async def route(retries: str) -> None:
            await apply_ok(mesh, destination_rule(ns, (), "{loadBalancer: {localityLbSetting: {enabled: true}}}"),
                           frontend)
            await apply_ok(mesh, route_to(ns, fields=f"    retries: {retries}\n"), frontend)

        await route("{attempts: 2, retryOn: 5xx}")
        response = await client.request("GET", "http://reviews:9080/r")
        assert response.status == 503 and (near.seen, far.seen) == (3, 0)  # every try stays in us-east
        await route("{attempts: 2, retryOn: 5xx, retryRemoteLocalities: true}")
        response = await client.request("GET", "http://reviews:9080/r")
        # Envoy's previous_priorities as Istio sets it: the first retry stays, the second moves on
        assert response.status == 200 and response.text == "far" and (near.seen, far.seen) == (3 + 2, 1)
    finally:
        await client.close()
        for server in (near, far, front):
            await server.stop()
