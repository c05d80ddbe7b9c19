"""Snapshots as sidecars send them, for the telemetry tests."""

from __future__ import annotations

import msgspec

from proto.observations import HTTP_LABELS, TCP_LABELS, Histogram, HttpSeries, MetricsSnapshot, TcpSeries
from services.telemetry.istio import BUCKETS, NB


def labels(**given: str) -> list[str]:
    """HTTP label values: reviews v1 called by productpage over mTLS, reported by the destination."""
    base = {name: "unknown" for name in HTTP_LABELS}
    base.update(reporter="destination", source_workload="productpage-v1", source_workload_namespace="default",
                source_app="productpage", source_version="v1", destination_workload="reviews-v1",
                destination_workload_namespace="default", destination_app="reviews", destination_version="v1",
                destination_service="reviews.default.svc.cluster.local", destination_service_name="reviews",
                destination_service_namespace="default", request_protocol="http", response_code="200",
                response_flags="-", connection_security_policy="mutual_tls")
    base.update(given)
    return [base[name] for name in HTTP_LABELS]


def tcp_labels(**given: str) -> list[str]:
    http = dict(zip(HTTP_LABELS, labels(**given)))
    return [http[name] for name in TCP_LABELS]


def histogram(durations: list[float]) -> Histogram:
    counts = [0] * NB
    for d in durations:
        counts[next((i for i, b in enumerate(BUCKETS) if d <= b), NB - 1)] += 1
    return Histogram(counts=counts, sum=float(sum(durations)))


def http(requests: int, duration_ms: float = 3.0, **label: str) -> HttpSeries:
    """`requests` requests, each taking duration_ms and 100/200 body bytes."""
    return HttpSeries(labels=labels(**label), requests=requests, duration_ms=histogram([duration_ms] * requests),
                      request_bytes=histogram([100.0] * requests), response_bytes=histogram([200.0] * requests))


def snapshot(seq: int, series: list[HttpSeries], proxy: str = "reviews-1", instance: str = "i1",
             namespace: str = "default", tcp: list[TcpSeries] | None = None) -> MetricsSnapshot:
    return MetricsSnapshot(proxy_id=proxy, instance=instance, namespace=namespace, seq=seq, time=1000.0 + seq,
                           http=series, tcp=tcp or [])


def encoded(snap: MetricsSnapshot) -> bytes:
    return msgspec.json.encode(snap)
