"""The two HTTP listeners' metrics: which peer a finished exchange counts for, then HttpRecorder.count.

    OutboundMetrics.record(head, target, status, flag, received, sent, ms)   reporter=source
    InboundMetrics.record(head, target, status, flag, received, sent, ms)    reporter=destination

The peer is found from objects the request already holds, and its label values are worked out once:
outbound per picked endpoint (the proto.xds.Endpoint object, its cluster and its TLS origination; a push makes
new ones), or per (cluster, requested host) when no endpoint was picked (the sidecar answered: 404 NR, 503 UH,
a fault abort, a direct response; passthrough); inbound per (caller principal, peer metadata object). These
caches are bounded (PEER_CACHE entries, then started over); the label sets they lead to are bounded by the
recorder (proxy/telemetry/metrics.py). On top, `hot` keeps per (endpoint or caller, status, flag) the series
itself (HOT_CACHE entries, then started over), so a request does one dict lookup and its adds.
"""

from __future__ import annotations

from typing import Any

from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry import labels
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.metrics import FOLD, MAX_SERIES, HttpCounts, HttpRecorder, Peer

PEER_CACHE = 4096  # endpoints / callers whose Peer is kept at hand
HOT_CACHE = 1024  # (endpoint or caller, status, flag) whose series is kept at hand (then started over)


def target_host(me: LocalWorkload, target: Target | None, asked: str) -> tuple[str, str, str]:
    """(destination_service, destination_service_name, destination_service_namespace) for an outbound call:
    the cluster's host for a mesh cluster (`outbound|<port>|<subset>|<host>`), else `asked` (the host the app
    asked for), with Istio's PassthroughCluster / BlackHoleCluster as the name for those."""
    cluster = target.cluster if target is not None else ""
    if cluster.startswith("outbound|"):
        host = cluster.split("|", 3)[3]
        return (host, *me.service_parts(host))
    if cluster in labels.PASSTHROUGH_CLUSTERS:
        return asked, cluster, labels.UNKNOWN
    return asked, asked, labels.UNKNOWN


class OutboundMetrics(HttpRecorder):
    """reporter=source: requests this workload's app sent through the outbound listener."""

    def __init__(self, me: LocalWorkload, max_series: int = MAX_SERIES) -> None:
        super().__init__("outbound", "source", max_series)
        self.me = me
        # id(endpoint) -> (endpoint, cluster, tls, Peer); the endpoint is held, so its id is not reused meanwhile
        self.by_endpoint: dict[int, tuple[object, str, object, Peer]] = {}
        self.by_host: dict[tuple[str, str], Peer] = {}  # (cluster, requested host) -> Peer, no endpoint picked
        # (id(endpoint), status, flag) -> (endpoint, tls, cluster, HttpCounts): a request's series in one lookup
        self.hot: dict[tuple[int, int, str], tuple[object, object, str, HttpCounts]] = {}

    def record(self, head: RequestHead | None, target: Target | None, status: int, flag: str, received: int,
               sent: int, duration_ms: float) -> None:
        endpoint = target.endpoint if target is not None else None
        if endpoint is not None:  # the usual case: one lookup to the series (HOT below)
            hot = self.hot.get((id(endpoint), status, flag))
            if hot is not None and hot[0] is endpoint and hot[1] is target.tls and hot[2] == target.cluster:
                series = hot[3]
            else:
                series = self._endpoint_series(endpoint, target, head, status, flag)  # type: ignore[arg-type]
        else:
            peer = self._other_peer(target, head)
            series = self.series.get((peer, status, flag))
            if series is None:
                series = self._add(peer, status, flag)
        pending = series.pending  # HttpCounts.add, inline (one call less per request)
        pending.append((duration_ms, received, sent))
        if len(pending) >= FOLD:
            series.fold()

    def _endpoint_series(self, endpoint: object, target: Target, head: RequestHead | None, status: int,
                         flag: str) -> HttpCounts:
        """The series of a (picked endpoint, status, flag) not in `hot` yet: found through its Peer, then kept
        in `hot` (the overflow series never is: each recording folded into it is counted in `overflowed`)."""
        found = self.by_endpoint.get(id(endpoint))
        if found is not None and found[0] is endpoint and found[2] is target.tls and found[1] == target.cluster:
            peer = found[3]
        else:
            peer = self._endpoint_peer(endpoint, target, head)
        return _kept(self, peer, status, flag, self.hot, (id(endpoint), status, flag),
                     (endpoint, target.tls, target.cluster))

    def _endpoint_peer(self, endpoint: object, target: Target, head: RequestHead | None) -> Peer:
        host, name, namespace = target_host(self.me, target, head.host if head is not None else "")
        peer = self.peer(labels.outbound(self.me, "http", host, name, namespace, endpoint, target.tls is not None))
        if len(self.by_endpoint) >= PEER_CACHE:
            self.by_endpoint.clear()
        self.by_endpoint[id(endpoint)] = (endpoint, target.cluster, target.tls, peer)
        return peer

    def _other_peer(self, target: Target | None, head: RequestHead | None) -> Peer:
        key = (target.cluster if target is not None else "", head.host if head is not None else "")
        peer = self.by_host.get(key)
        if peer is None:
            host, name, namespace = target_host(self.me, target, key[1])
            peer = self.peer(labels.outbound(self.me, "http", host, name, namespace))
            if len(self.by_host) >= PEER_CACHE:
                self.by_host.clear()
            self.by_host[key] = peer
        return peer


class InboundMetrics(HttpRecorder):
    """reporter=destination: requests that reached this workload's inbound listener (answered by the app or by
    the sidecar: 403 denied, 429 rate limited, 503 before the first push)."""

    def __init__(self, me: LocalWorkload, max_series: int = MAX_SERIES) -> None:
        super().__init__("inbound", "destination", max_series)
        self.me = me
        # (principal, id(PeerMetadata or None)) -> (that PeerMetadata, Peer): held, so its id is not reused meanwhile
        # (PeerMetadata, a msgspec Struct, is not hashable)
        self.by_caller: dict[tuple[str | None, int], tuple[object, Peer]] = {}
        # (principal, id(PeerMetadata or None), status, flag) -> (that PeerMetadata, HttpCounts)
        self.hot: dict[tuple[str | None, int, int, str], tuple[object, HttpCounts]] = {}

    def record(self, head: RequestHead | None, target: Target | None, status: int, flag: str, received: int,
               sent: int, duration_ms: float) -> None:
        if head is not None:
            principal, metadata = head.downstream.principal, head.peer
        else:  # a request refused before its head was read (400): nothing known of the caller
            principal = metadata = None
        hot = self.hot.get((principal, id(metadata), status, flag))
        if hot is not None and hot[0] is metadata:  # the usual case: one lookup to the series
            series = hot[1]
        else:
            series = self._caller_series(principal, metadata, status, flag)
        pending = series.pending  # HttpCounts.add, inline
        pending.append((duration_ms, received, sent))
        if len(pending) >= FOLD:
            series.fold()

    def _caller_series(self, principal: str | None, metadata: object, status: int, flag: str) -> HttpCounts:
        """As OutboundMetrics._endpoint_series, per (caller principal, peer metadata object, status, flag)."""
        found = self.by_caller.get((principal, id(metadata)))
        if found is not None and found[0] is metadata:
            peer = found[1]
        else:
            peer = self._caller_peer(principal, metadata)
        return _kept(self, peer, status, flag, self.hot, (principal, id(metadata), status, flag), (metadata,))

    def _caller_peer(self, principal: str | None, metadata: object) -> Peer:
        peer = self.peer(labels.inbound(self.me, "http", principal, metadata))  # type: ignore[arg-type]
        if len(self.by_caller) >= PEER_CACHE:
            self.by_caller.clear()
        self.by_caller[(principal, id(metadata))] = (metadata, peer)
        return peer


def _kept(recorder: HttpRecorder, peer: Peer, status: int, flag: str, hot: dict[Any, Any], key: tuple[Any, ...],
          checks: tuple[object, ...]) -> HttpCounts:
    """The series of (peer, status, flag), made if new, kept in `hot` under `key` with `checks` (what a hit
    compares) in front: a miss's second half. The overflow series is never kept (each recording folded into it
    must reach _add, which counts it in `overflowed`)."""
    series = recorder.series.get((peer, status, flag))
    if series is None:
        series = recorder._add(peer, status, flag)
        if series is recorder.overflow:
            return series
    if len(hot) >= HOT_CACHE:
        hot.clear()
    hot[key] = (*checks, series)
    return series
