"""Merged totals over time, for the dashboard's graph (/api/graph) and per-service charts (/api/series).

Every `step` seconds the history keeps one point: the mesh's merged totals folded into what the dashboard
draws (per edge and per destination service: requests, 5xx, requests on mutual TLS, the duration histogram,
TCP bytes). Rates are differences between points over time, as Prometheus' rate() over merged counters that
never go down; percentiles come from histogram differences with Prometheus' histogram_quantile
interpolation. Bounded: `points` points (default 720: one hour at 5 s), each as large as the edges in it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

from proto.observations import GraphEdge, GraphNode, SeriesPoint, ServiceGraph, ServiceSeries
from services.telemetry.istio import BUCKETS, HTTP, LABEL_INDEX, NB, TCP, TCP_LABEL_INDEX, Key, Vector

# a folded vector: [requests, 5xx, mTLS requests (TCP: mTLS bytes), tcp bytes, duration bucket counts...]
REQ, ERR, MTLS, BYTES, DUR = 0, 1, 2, 3, 4
FOLD_WIDTH = DUR + NB
EdgeKey = tuple[str, str, str]  # (source node id, target node id, protocol)
Folded = dict[EdgeKey, Vector]


def histogram_quantile(q: float, counts: Sequence[float], bounds: Sequence[float] = BUCKETS) -> float | None:
    """Prometheus' histogram_quantile over non-cumulative `counts` (len(bounds) + 1, the last +Inf): linear
    interpolation inside the bucket that holds the rank; the lowest bucket starts at 0; a rank in +Inf gives
    the highest finite bound. None without observations."""
    total = sum(counts)
    if total <= 0 or not 0 <= q <= 1:
        return None
    rank = q * total
    cumulative = 0.0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if i == len(bounds):
                return float(bounds[-1])
            start = 0.0 if i == 0 else float(bounds[i - 1])
            return start + (float(bounds[i]) - start) * (rank - cumulative) / count
        cumulative += count
    return float(bounds[-1])


class _Nodes:
    def __init__(self) -> None:
        self.nodes: dict[str, GraphNode] = {}

    def workload(self, ns: str, app: str, version: str, workload: str) -> str:
        if workload in ("", "unknown") and app in ("", "unknown"):
            self.nodes.setdefault("unknown", GraphNode(id="unknown", kind="unknown", namespace="unknown",
                                                       app="unknown"))
            return "unknown"
        app = workload if app in ("", "unknown") else app
        node_id = f"{ns}/{app}/{version or 'unknown'}"  # three parts: never a service node's id
        self.nodes.setdefault(node_id, GraphNode(id=node_id, kind="workload", namespace=ns, app=app,
                                                 version="" if version == "unknown" else version, workload=workload))
        return node_id

    def service(self, ns: str, name: str, fqdn: str) -> str:
        node_id = f"{ns}/{name}"
        self.nodes.setdefault(node_id, GraphNode(id=node_id, kind="service", namespace=ns, app=name, service=fqdn))
        return node_id


def fold(totals: dict[Key, Vector]) -> tuple[Folded, Folded, dict[str, GraphNode]]:
    """(edges, services, nodes): totals folded per graph edge, per destination service (FQDN; target ''), and the
    nodes the edges name. Each HTTP call counts on two edges, caller -> service and service -> workload (a
    Kiali versioned-app graph with service nodes). Destination-reported series are used where a pair has them
    (sidecar to sidecar), source-reported ones for calls only the caller saw (no sidecar at the destination)."""
    nodes = _Nodes()
    by_reporter: dict[str, tuple[Folded, Folded]] = {"destination": ({}, {}), "source": ({}, {})}
    for (kind, labels), v in totals.items():
        index = LABEL_INDEX if kind == HTTP else TCP_LABEL_INDEX
        reporter = labels[index["reporter"]]
        if reporter not in by_reporter:
            continue
        edges, services = by_reporter[reporter]
        get = lambda name: labels[index[name]]  # noqa: E731
        source = nodes.workload(get("source_workload_namespace"), get("source_app"), get("source_version"),
                                get("source_workload"))
        svc_ns = get("destination_service_namespace")
        svc_name = get("destination_service_name")
        service = nodes.service(svc_ns, svc_name, get("destination_service"))
        target = nodes.workload(get("destination_workload_namespace"), get("destination_app"),
                                get("destination_version"), get("destination_workload"))
        folded = [0.0] * FOLD_WIDTH
        if kind == HTTP:
            folded[REQ] = v[0]
            folded[ERR] = v[0] if labels[index["response_code"]].startswith("5") else 0.0
            folded[MTLS] = v[0] if labels[index["connection_security_policy"]] == "mutual_tls" else 0.0
            folded[DUR:] = v[1:1 + NB]
            protocol = "http"
        else:  # TCP: bytes both ways; MTLS holds the bytes that went over mutual TLS
            folded[BYTES] = v[0] + v[1]
            folded[MTLS] = folded[BYTES] if labels[index["connection_security_policy"]] == "mutual_tls" else 0.0
            protocol = "tcp"
        for key in ((source, service, protocol), (service, target, protocol)):
            _add(edges.setdefault(key, [0.0] * FOLD_WIDTH), folded)
        if kind == HTTP:
            _add(services.setdefault((get("destination_service"), svc_ns, ""), [0.0] * FOLD_WIDTH), folded)
    dest_edges, dest_services = by_reporter["destination"]
    src_edges, src_services = by_reporter["source"]
    edges = dict(dest_edges)
    for key, v in src_edges.items():
        edges.setdefault(key, v)
    services = dict(dest_services)
    for key, v in src_services.items():
        services.setdefault(key, v)
    return edges, services, nodes.nodes


def _add(into: Vector, v: Iterable[float]) -> None:
    for i, x in enumerate(v):
        into[i] += x


class History:
    def __init__(self, points: int = 720) -> None:
        self.points: deque[tuple[float, Folded, Folded]] = deque(maxlen=points)
        self.nodes: dict[str, GraphNode] = {}

    def record(self, now: float, totals: dict[Key, Vector]) -> None:
        edges, services, nodes = fold(totals)
        self.points.append((now, edges, services))
        self.nodes = nodes

    def _at_or_before(self, when: float) -> tuple[float, Folded, Folded] | None:
        chosen = self.points[0] if self.points else None
        for point in self.points:
            if point[0] <= when:
                chosen = point
            else:
                break
        return chosen

    def graph(self, now: float, window: float, totals: dict[Key, Vector]) -> ServiceGraph:
        """Rates over the last `window` seconds: between the point at or before now - window (else the oldest)
        and the totals now."""
        edges_now, _, nodes = fold(totals)
        then = self._at_or_before(now - window)
        graph = ServiceGraph(time=now, window_s=window)
        if then is None or now - then[0] <= 0:
            return graph
        elapsed = now - then[0]
        used: set[str] = set()
        for key in sorted(edges_now):
            delta = _delta(edges_now[key], then[1].get(key))
            if delta[REQ] <= 0 and delta[BYTES] <= 0 and delta[MTLS] <= 0:
                continue
            source, target, protocol = key
            used.update((source, target))
            graph.edges.append(_edge(source, target, protocol, delta, elapsed))
        graph.nodes = [nodes[n] for n in sorted(used) if n in nodes]
        return graph

    def series(self, service: str, minutes: float, now: float) -> ServiceSeries:
        """One destination service's inbound traffic per step over the last `minutes`."""
        namespace = ""
        points = [p for p in self.points if p[0] >= now - minutes * 60]
        out: list[SeriesPoint] = []
        step = 0.0
        for before, after in zip(points, points[1:]):
            key = next((k for k in after[2] if k[0] == service), None)
            elapsed = after[0] - before[0]
            step = step or elapsed
            if key is None or elapsed <= 0:
                out.append(SeriesPoint(time=after[0], rps=0.0, error_rate=0.0))
                continue
            namespace = key[1]
            d = _delta(after[2][key], before[2].get(key))
            counts = d[DUR:]
            out.append(SeriesPoint(time=after[0], rps=d[REQ] / elapsed, error_rate=d[ERR] / d[REQ] if d[REQ] else 0.0,
                                   p50_ms=histogram_quantile(0.5, counts), p90_ms=histogram_quantile(0.9, counts),
                                   p99_ms=histogram_quantile(0.99, counts)))
        return ServiceSeries(service=service, namespace=namespace, step_s=step, points=out)


def _delta(now: Vector, then: Vector | None) -> Vector:
    return list(now) if then is None else [a - b for a, b in zip(now, then)]


def _edge(source: str, target: str, protocol: str, d: Vector, elapsed: float) -> GraphEdge:
    counts = d[DUR:]
    requests = d[REQ]
    p50, p99 = histogram_quantile(0.5, counts), histogram_quantile(0.99, counts)
    return GraphEdge(source=source, target=target, protocol=protocol, rps=requests / elapsed,
                     error_rate=d[ERR] / requests if requests else 0.0,
                     p50_ms=None if p50 is None or math.isnan(p50) else p50, p99_ms=p99,
                     mtls=(d[MTLS] / requests if protocol == "http" and requests
                           else d[MTLS] / d[BYTES] if protocol == "tcp" and d[BYTES] else 0.0),
                     tcp_bytes_per_s=d[BYTES] / elapsed)
