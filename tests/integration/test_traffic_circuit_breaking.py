"""DestinationRule connectionPool (circuit breaking) through real sidecars, with Istio-format YAML."""

from __future__ import annotations

import asyncio
import json
import socket
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
    await reviews.rule("{connectionPool: {tcp: {maxConnections: 1}, "
                                    "http: {http1MaxPendingRequests: 1}}}")
    results = await concurrent_gets(reviews, 5)
    overflow = [t for s, t in results if s == 503]
    timed_out = [t for s, t in results if s == 504]
    # one in flight, one waiting (both end at the route timeout), the other three are turned away at once
    assert len(overflow) == 3 and len(timed_out) == 2, results
    # ordering, not a window: every overflow is answered before any admitted request times out
    assert max(overflow) < min(timed_out) and min(timed_out) >= 1.0, results
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
    await reviews.rule("{connectionPool: {tcp: {maxConnections: 1}, "
                                    "http: {http1MaxPendingRequests: 10}}}")
    results = await concurrent_gets(reviews, 6)
    assert [s for s, _ in results] == [200] * 6 and backend.seen == 6


def stalled_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A loopback listener whose accept queue (listen(0)) is full and never drained: the kernel drops
    every further SYN, so a connect to it neither succeeds nor fails until its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(server.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    try:  # the premise of the tests that use it: a connect hangs
        socket.create_connection(server.getsockname(), timeout=0.3).close()
        raise AssertionError("a connect to the full listener succeeded: cannot make a connect time out")
    except TimeoutError:
        pass
    return server, fillers


async def test_a_connect_timeout_from_the_destination_rule_makes_a_hanging_connect_fail_uf(reviews: Mesh) -> None:
    await reviews.start(FlakyBackend("v1"))
    server, fillers = stalled_listener()
    host = f"stuck.{reviews.ns}.example.com"
    try:
        reply = await apply(reviews.mesh, f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: stuck, namespace: {reviews.ns}}}
spec:
  hosts: [{host}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {server.getsockname()[1]}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: stuck, namespace: {reviews.ns}}}
spec:
  host: {host}
  trafficPolicy: {{connectionPool: {{tcp: {{connectTimeout: 200ms}}}}}}
""")
        assert reply["ok"], reply
        await eventually(lambda: reviews.frontend.config_dump()["version"] >= reply["revision"])
        client = Client("127.0.0.1", reviews.frontend.outbound_port, timeout=30)
        try:
            started = time.monotonic()
            response = await client.request("GET", f"http://{host}/")
            elapsed = time.monotonic() - started
        finally:
            await client.close()
        # three tries (Istio's default retries on connect-failure) of 200 ms each; the sidecar's own 5 s
        # connect timeout, had the rule's not applied, would take 15 s
        assert response.status == 503, response.text
        assert 0.2 <= elapsed < 4.0, elapsed  # at least one connect waited out its timeout
        lines = await eventually(lambda: [line for line in access_lines(reviews) if host in line])
        assert " 503 UF " in lines[0], lines
    finally:
        for sock in (server, *fillers):
            sock.close()

async def test_an_endpoint_returning_5xx_is_ejected_and_returns_after_the_base_ejection_time(reviews: Mesh) -> None:
    bad, good = FlakyBackend("bad", fail_first=10**6), FlakyBackend("good")
    await reviews.start(bad, good)
    await reviews.route("    retries: {attempts: 0}\n")  # let every failure reach the client
    await reviews.rule("{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: "
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
    await reviews.rule("{loadBalancer: {simple: ROUND_ROBIN}}")  # exact halves: the default, LEAST_REQUEST, picks at random among idle endpoints
    statuses = [(await reviews.get()).status for _ in range(20)]
    assert statuses.count(503) == 10 and bad.seen == 10
