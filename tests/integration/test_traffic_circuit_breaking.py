"""DestinationRule connectionPool (circuit breaking) through real sidecars, with Istio-format YAML."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Client
from tests.integration.test_traffic_resilience import FlakyBackend, Mesh

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def reviews(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    app = Mesh(mesh)
    yield app
    await app.stop()


async def destination_rule(app: Mesh, traffic_policy: str) -> None:
    reply = await apply(app.mesh, f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {app.ns}}}
spec:
  host: reviews
  trafficPolicy: {traffic_policy}
""")
    assert reply["ok"], reply
    await eventually(lambda: app.frontend.config_dump()["version"] >= reply["revision"])


async def concurrent_gets(app: Mesh, n: int) -> list[tuple[int, float]]:
    """(status, seconds) of n requests sent at once, each on its own connection."""
    clients = [Client("127.0.0.1", app.frontend.outbound_port) for _ in range(n)]

    async def one(client: Client) -> tuple[int, float]:
        t0 = time.monotonic()
        response = await client.request("GET", "http://reviews:9080/r")
        return response.status, time.monotonic() - t0

    try:
        return list(await asyncio.gather(*(one(c) for c in clients)))
    finally:
        for client in clients:
            await client.close()


async def test_a_full_pool_answers_overflow_fast_while_the_admitted_requests_wait(reviews: Mesh) -> None:
    await reviews.start(FlakyBackend("stalls", stall=True))
    await reviews.route("    timeout: 1s\n")
    await destination_rule(reviews, "{connectionPool: {tcp: {maxConnections: 1}, "
                                    "http: {http1MaxPendingRequests: 1}}}")
    results = await concurrent_gets(reviews, 5)
    overflow = [t for s, t in results if s == 503]
    timed_out = [t for s, t in results if s == 504]
    # one in flight, one waiting (both end at the route timeout), the other three are turned away at once
    assert len(overflow) == 3 and len(timed_out) == 2, results
    assert max(overflow) < 0.5 and min(timed_out) >= 1.0, results
    # the frontend sidecar's access log names the overflow with Envoy's flag, and the timeouts with UT
    cluster = f"outbound|9080||reviews.{reviews.ns}.svc.cluster.local"
    lines = await eventually(lambda: [line for line in access_lines(reviews) if cluster in line]
                             if len(access_lines(reviews)) >= 5 else None)
    flags = sorted(line.split('" ', 1)[1].split()[:2][1] for line in lines)
    assert flags == ["UO", "UO", "UO", "UT", "UT"], lines


def access_lines(app: Mesh) -> list[str]:
    return app.access_log.read_text().splitlines() if app.access_log.exists() else []


async def test_without_limits_every_request_reaches_the_stalling_backend(reviews: Mesh) -> None:
    backend = FlakyBackend("stalls", stall=True)
    await reviews.start(backend)
    await reviews.route("    timeout: 1s\n")
    results = await concurrent_gets(reviews, 5)
    assert [s for s, _ in results] == [504] * 5 and backend.seen == 5


async def test_a_waiting_request_is_sent_when_the_one_in_flight_completes(reviews: Mesh) -> None:
    backend = FlakyBackend("v1")
    await reviews.start(backend)
    await destination_rule(reviews, "{connectionPool: {tcp: {maxConnections: 1}, "
                                    "http: {http1MaxPendingRequests: 10}}}")
    results = await concurrent_gets(reviews, 6)
    assert [s for s, _ in results] == [200] * 6 and backend.seen == 6


async def test_a_connect_timeout_from_the_destination_rule_is_applied(reviews: Mesh) -> None:
    await reviews.start(FlakyBackend("v1"))
    await destination_rule(reviews, "{connectionPool: {tcp: {connectTimeout: 50ms, maxConnections: 4}}}")
    dump = reviews.frontend.config_dump()
    cluster = next(c for c in dump["clusters"] if c["host"] == f"reviews.{reviews.ns}.svc.cluster.local")
    assert cluster["limits"] == {"max_connections": 4, "connect_timeout_ms": 50}
    assert (await reviews.get()).status == 200


async def test_an_endpoint_returning_5xx_is_ejected_and_returns_after_the_base_ejection_time(reviews: Mesh) -> None:
    bad, good = FlakyBackend("bad", fail_first=10**6), FlakyBackend("good")
    await reviews.start(bad, good)
    await reviews.route("    retries: {attempts: 0}\n")  # let every failure reach the client
    await destination_rule(reviews, "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: "
                                    "{consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 1s, "
                                    "maxEjectionPercent: 100}}")
    t0 = time.monotonic()
    statuses = [(await reviews.get()).status for _ in range(20)]
    # round robin alternates: the bad endpoint fails twice, then is ejected and traffic shifts to the good one
    assert statuses.count(503) == 2 and statuses[4:] == [200] * 16, statuses
    assert bad.seen == 2 and good.seen == 18
    status, body = reviews.frontend.admin("/clusters")
    assert status == 200
    pool = next(p for p in json.loads(body) if p["host"] == f"reviews.{reviews.ns}.svc.cluster.local")
    ejected = [e for e in pool["endpoints"] if e["ejected"]]
    assert len(ejected) == 1 and ejected[0]["times_ejected"] == 1 and 0 < ejected[0]["ejected_for_s"] <= 1.0
    bad.fail_first = 0  # the bad endpoint recovers; it gets traffic again once its ejection is over
    await asyncio.sleep(max(0.0, t0 + 1.3 - time.monotonic()))
    statuses = [(await reviews.get()).status for _ in range(10)]
    assert statuses == [200] * 10 and bad.seen >= 6, (statuses, bad.seen)


async def test_without_outlier_detection_the_failing_endpoint_keeps_its_share(reviews: Mesh) -> None:
    bad, good = FlakyBackend("bad", fail_first=10**6), FlakyBackend("good")
    await reviews.start(bad, good)
    await reviews.route("    retries: {attempts: 0}\n")
    await destination_rule(reviews, "{loadBalancer: {simple: ROUND_ROBIN}}")  # exact halves: the default, LEAST_REQUEST, picks at random among idle endpoints
    statuses = [(await reviews.get()).status for _ in range(20)]
    assert statuses.count(503) == 10 and bad.seen == 10
