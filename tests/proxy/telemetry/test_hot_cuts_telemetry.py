"""The telemetry instruction cuts (issue 15, ninth session) attacked: metrics folded every FOLD requests
(proxy/telemetry/metrics.py) read by a scrape and the bus snapshot after any number of requests, bucket bounds
exactly, and unsampled trace ids drawn DRAWN at a time (proxy/telemetry/tracer.py), over real loopback sockets."""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_left

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_response

from proto.xds import Endpoint
from proxy.core.target import Target
from proxy.http.head import Mode
from proxy.telemetry import tracer as tracer_module
from proxy.telemetry.exposition import SidecarMetrics
from proxy.telemetry.http_metrics import InboundMetrics, OutboundMetrics
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.metrics import BYTES_BOUNDS, DURATION_BOUNDS, FOLD, SLOTS, HttpCounts
from proxy.telemetry.sampling import CLIENT, SidePolicy
from proxy.telemetry.span_reporter import SpanReporter
from proxy.telemetry.spans import site_for

pytestmark = pytest.mark.timeout(60)

ME = LocalWorkload("productpage", "default", {"app": "productpage", "version": "v1"},
                   service_account="bookinfo-productpage")


def scraped(text: bytes) -> dict[str, float]:
    """istio_requests_total, the duration histogram's count and the request / response bytes sums, per reporter."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            reporter = sample.labels.get("reporter", "")
            if sample.name in ("istio_requests_total", "istio_request_duration_milliseconds_count",
                               "istio_request_bytes_sum", "istio_response_bytes_sum"):
                out[f"{reporter} {sample.name}"] = out.get(f"{reporter} {sample.name}", 0) + sample.value
            elif sample.name == "istio_request_duration_milliseconds_bucket" and sample.labels["le"] == "+Inf":
                out[f"{reporter} +Inf"] = out.get(f"{reporter} +Inf", 0) + sample.value
    return out


async def test_every_request_is_counted_by_every_reader_after_any_number_of_them(start_proxy, connect):
    out, inbound = OutboundMetrics(ME), InboundMetrics(ME)
    metrics = SidecarMetrics([out, inbound], [])
    async with Upstream(keep_alive_echo) as app:
        inbound_proxy = await start_proxy(StubRouter({"reviews": app.target}), Mode.INBOUND, metrics=inbound)
        target = Target("127.0.0.1", inbound_proxy.port, "outbound|9080||reviews.default.svc.cluster.local",
                        Endpoint(address="127.0.0.1"))
        proxy = await start_proxy(StubRouter({"reviews": target}), metrics=out)
        reader, writer = await connect(proxy.port)
        sent = received = 0
        before: dict[str, float] = {}
        for n in range(1, 2 * FOLD + 3):
            body = b"x" * (n % 5)
            writer.write(b"POST /%d HTTP/1.1\r\nHost: reviews\r\nContent-Length: %d\r\n\r\n%s" % (n, len(body), body))
            resp = await read_response(reader)
            sent += len(body)
            received += len(resp.body)
            # the scrape (rendered off the loop), the bus snapshot, and the scrape on the loop: each sees all n
            now = scraped(await metrics.prometheus_off_loop())
            for reporter in ("source", "destination"):
                assert now[f"{reporter} istio_requests_total"] == n
                assert now[f"{reporter} istio_request_duration_milliseconds_count"] == n
                assert now[f"{reporter} +Inf"] == n
                assert now[f"{reporter} istio_request_bytes_sum"] == sent
                assert now[f"{reporter} istio_response_bytes_sum"] == received
            assert all(now[key] >= value for key, value in before.items())  # never backwards
            before = now
            snapshot = metrics.snapshot("p", "i", "default", n)
            assert [s.requests for s in snapshot.http] == [n, n]
            assert all(sum(s.duration_ms.counts) == n and sum(s.request_bytes.counts) == n for s in snapshot.http)
            assert scraped(metrics.prometheus()) == now


def test_values_on_and_about_every_bucket_bound_count_as_one_at_a_time_would():
    durations = [0.0, -0.0, 5e-324, math.inf]
    sizes = [0, 1]
    for bound in DURATION_BOUNDS:
        durations += [bound, math.nextafter(bound, 0.0), math.nextafter(bound, math.inf)]
    for bound in BYTES_BOUNDS:
        sizes += [bound, bound - 1, bound + 1]
    rng = random.Random(7)
    for trial in range(40):
        batch = [(rng.choice(durations), rng.choice(sizes), rng.choice(sizes)) for _ in range(rng.randrange(1, 3 * FOLD))]
        counts = HttpCounts(())
        duration, request_bytes, response_bytes = [0] * SLOTS, [0] * SLOTS, [0] * SLOTS
        duration_sum = 0.0
        for i, (ms, got, gave) in enumerate(batch):
            counts.add(ms, got, gave)
            duration[bisect_left(DURATION_BOUNDS, ms)] += 1
            duration_sum += ms
            request_bytes[bisect_left(BYTES_BOUNDS, got) if got else 0] += 1
            response_bytes[bisect_left(BYTES_BOUNDS, gave)] += 1
            if rng.random() < 0.2:  # a read mid-batch folds early; later adds go on from there
                assert counts.requests == i + 1
        assert (counts.requests, counts.duration, counts.request_bytes, counts.response_bytes) == (
            len(batch), duration, request_bytes, response_bytes), trial
        assert (counts.duration_sum, counts.request_bytes_sum, counts.response_bytes_sum) == (
            duration_sum, sum(b[1] for b in batch), sum(b[2] for b in batch))


TRACEPARENT = re.compile(rb"00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-(0[01])")


def tracing(percent: float) -> tuple[tracer_module.Tracer, SpanReporter]:
    reporter = SpanReporter("proxy-1", "isthmus.telemetry.spans.default.sa")
    site = site_for(CLIENT, service="productpage", namespace="default", labels={"app": "productpage"},
                    workload="productpage-v1", node_id="proxy-1", address="10.0.0.1", service_port=9080,
                    domain_suffix="svc.cluster.local", mesh_id="cluster.local")
    return tracer_module.Tracer(site, SidePolicy(True, percent), reporter), reporter  # type: ignore[arg-type]


@pytest.mark.parametrize("percent", [0.0, 25.0, 100.0])
async def test_new_trace_ids_are_valid_never_repeated_and_sampled_at_the_configured_rate(start_proxy, connect,
                                                                                       percent):
    random.seed(20261201)  # the sampling draw (tracer._random is random.random)
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        proxy.state.tracer, reporter = tracing(percent)
        clients = [await connect(proxy.port) for _ in range(2)]
        for _ in range(200):  # 400 requests: past six batches of drawn ids
            for reader, writer in clients:
                writer.write(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
            for reader, writer in clients:
                assert (await read_response(reader)).status == 200
    found = [TRACEPARENT.fullmatch(r.header(b"traceparent") or b"") for r in up.requests]
    assert all(found)
    assert len({f[1] for f in found}) == 400 and len({f[2] for f in found}) == 400  # type: ignore[index]
    sampled = sum(f[3] == b"01" for f in found)  # type: ignore[index]
    assert {0.0: sampled == 0, 25.0: 60 <= sampled <= 140, 100.0: sampled == 400}[percent], sampled
    assert all(r.header(b"x-b3-sampled") in (None, b"0") for r, f in zip(up.requests, found) if f[3] == b"00")  # type: ignore[index]
