"""A stand-in for the telemetry service's JSON API with fixed, realistic data (bookinfo's shape: frontend ->
reviews v1/v2/v3 -> ratings, plaintext TCP to a mongodb outside the mesh), for the dashboard's browser test until the real service
is merged. The shapes are proto/observations.py's and proto/xds.ProxyStatusReply; `state` is mutable so a
test can change what the API says and watch the page follow without a reload.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from proto.observations import (AccessLogEntry, GraphEdge, GraphNode, SeriesPoint, ServiceGraph, ServiceSeries,
                                Span, ZipkinEndpoint)
from proto.xds import ProxyStatus, ProxyStatusReply
from services.telemetry.dashboard import routes

NACK = ("VirtualService default/reviews: route 0 destination subset 'v4' is not defined by any "
        "DestinationRule for reviews.default.svc.cluster.local")


DEEP_TRACE = "5e1c0d7f00000000a1b2c3d4e5f60718"
LOOP_TRACE = "00000000000000000000000000000bad"


def _workload(app: str, version: str) -> GraphNode:
    return GraphNode(id=f"default/{app}/{version}", kind="workload", namespace="default", app=app, version=version,
                     workload=f"{app}-{version}")


def _service(app: str) -> GraphNode:
    return GraphNode(id=f"default/{app}", kind="service", namespace="default", app=app,
                     service=f"{app}.default.svc.cluster.local")


def _edge(source: str, target: str, rps: float, *, mtls: float = 1.0, error_rate: float = 0.0,
          p50: float = 4.0, p99: float = 21.0) -> GraphEdge:
    return GraphEdge(source=source, target=target, protocol="http", rps=rps, error_rate=error_rate, p50_ms=p50,
                     p99_ms=p99, mtls=mtls)


def graph(now: float, frontend_rps: float) -> ServiceGraph:
    split = {"v1": 0.5, "v2": 0.3, "v3": 0.2}
    nodes = [GraphNode(id="unknown", kind="unknown", namespace="unknown", app="unknown"),
             _service("frontend"), _workload("frontend", "v1"), _service("reviews"),
             *(_workload("reviews", v) for v in split), _service("ratings"), _workload("ratings", "v1"),
             _service("mongodb")]
    to_ratings = frontend_rps * (split["v2"] + split["v3"])
    edges = [_edge("unknown", "default/frontend", frontend_rps, mtls=0.0, p50=18.0, p99=95.0),
             _edge("default/frontend", "default/frontend/v1", frontend_rps, mtls=0.0, p50=18.0, p99=95.0),
             _edge("default/frontend/v1", "default/reviews", frontend_rps, error_rate=0.004, p50=9.5, p99=61.0),
             *(_edge("default/reviews", f"default/reviews/{v}", frontend_rps * share, p50=8.0 + i, p99=40.0 + 10 * i,
                     error_rate=0.02 if v == "v3" else 0.0) for i, (v, share) in enumerate(split.items())),
             _edge("default/reviews/v2", "default/ratings", frontend_rps * split["v2"], p50=2.1, p99=7.9),
             _edge("default/reviews/v3", "default/ratings", frontend_rps * split["v3"], p50=2.3, p99=8.4),
             _edge("default/ratings", "default/ratings/v1", to_ratings, p50=2.2, p99=8.1),
             GraphEdge(source="default/ratings/v1", target="default/mongodb", protocol="tcp", rps=0.0,
                       error_rate=0.0, mtls=0.0, tcp_bytes_per_s=5300.0)]
    return ServiceGraph(time=now, window_s=60, nodes=nodes, edges=edges)


def series(service: str, now: float, minutes: int) -> ServiceSeries:
    step = 15.0
    points = []
    for i in range(int(minutes * 60 / step)):
        t = now - minutes * 60 + (i + 1) * step
        wave = math.sin(i / 6.0)
        points.append(SeriesPoint(time=t, rps=9.0 + 2.0 * wave, error_rate=max(0.0, 0.006 + 0.005 * math.sin(i / 3.0)),
                                  p50_ms=9.0 + wave, p90_ms=24.0 + 4 * wave, p99_ms=58.0 + 12 * math.cos(i / 4.0)))
    return ServiceSeries(service=service, namespace=service.split(".")[1] if "." in service else "default",
                         step_s=step, points=points)


def trace(trace_id: str, start_us: int, slow: bool = False) -> list[Span]:
    client = Span(trace_id=trace_id, id=trace_id[-16:-8] + "00000001", name="reviews.default.svc.cluster.local:9080/*",
                  kind="CLIENT", timestamp=start_us, duration=14_800 if not slow else 96_000,
                  local_endpoint=ZipkinEndpoint(service_name="frontend.default", ipv4="127.0.0.1"),
                  tags={"http.method": "GET", "http.url": "http://reviews:9080/reviews/0", "http.status_code": "200",
                        "upstream_cluster": "outbound|9080|v2|reviews.default.svc.cluster.local",
                        "istio.canonical_service": "frontend"})
    server = Span(trace_id=trace_id, id=trace_id[-16:-8] + "00000002", parent_id=client.id,
                  name="reviews.default.svc.cluster.local:9080/*", kind="SERVER", timestamp=start_us + 1_300,
                  duration=12_100 if not slow else 91_500,
                  local_endpoint=ZipkinEndpoint(service_name="reviews.default", ipv4="127.0.0.1"),
                  tags={"http.method": "GET", "http.url": "http://reviews:9080/reviews/0", "http.status_code": "200",
                        "peer.principal": "spiffe://cluster.local/ns/default/sa/frontend",
                        "istio.canonical_service": "reviews"})
    return [client, server]


def deep_trace(trace_id: str, start_us: int) -> list[Span]:
    """frontend -> reviews -> ratings: four spans, two levels of calls, listed out of order as a store may."""
    front, review = trace(trace_id, start_us)
    out = Span(trace_id=trace_id, id=trace_id[-16:-8] + "00000003", parent_id=review.id,
               name="ratings.default.svc.cluster.local:9080/*", kind="CLIENT", timestamp=start_us + 4_000,
               duration=5_200, local_endpoint=ZipkinEndpoint(service_name="reviews.default"),
               tags={"http.status_code": "503", "response_flags": "UF"})
    inbound = Span(trace_id=trace_id, id=trace_id[-16:-8] + "00000004", parent_id=out.id,
                   name="ratings.default.svc.cluster.local:9080/*", kind="SERVER", timestamp=start_us + 4_600,
                   duration=4_100, local_endpoint=ZipkinEndpoint(service_name="ratings.default"),
                   tags={"http.status_code": "503"})
    return [inbound, review, out, front]


@dataclass
class State:
    """What the stand-in API answers; tests change it."""

    frontend_rps: float = 9.8
    config_version: int = 7
    proxies: list[ProxyStatus] = field(default_factory=list)
    traces: dict[str, list[Span]] = field(default_factory=dict)
    extra_nodes: list[GraphNode] = field(default_factory=list)  # added to the graph
    extra_edges: list[GraphEdge] = field(default_factory=list)
    graph_fails: bool = False  # /api/graph answers 500
    pilot_error: str = ""  # /api/proxies says pilot did not answer

    @classmethod
    def bookinfo(cls) -> "State":
        now = time.time()
        proxies = [
            ProxyStatus(proxy_id="frontend-v1-7f9c", service="frontend", namespace="default", version=7, updated_at=now - 3),
            ProxyStatus(proxy_id="reviews-v1-2b1d", service="reviews", namespace="default", version=7, updated_at=now - 4),
            ProxyStatus(proxy_id="reviews-v2-9a0e", service="reviews", namespace="default", version=6, updated_at=now - 40),
            ProxyStatus(proxy_id="reviews-v3-c4d2", service="reviews", namespace="default", version=6, ok=False,
                        error=NACK, updated_at=now - 12),
            ProxyStatus(proxy_id="ratings-v1-5e6f", service="ratings", namespace="default", version=7, updated_at=now - 2),
        ]
        start = int(now * 1e6)
        ids = ["4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331b7ad6b7169203331"]
        traces = {tid: trace(tid, start - (i + 1) * 7_000_000, slow=i == 1) for i, tid in enumerate(ids)}
        traces[DEEP_TRACE] = deep_trace(DEEP_TRACE, start - 2_000_000)
        # bad data a store may hold: two spans each naming the other as parent
        looped = [Span(trace_id=LOOP_TRACE, id=f"{n:016x}", parent_id=f"{3 - n:016x}", name=f"loop {n}", kind="SERVER",
                       timestamp=start - 30_000_000 + n * 1000, duration=2000,
                       local_endpoint=ZipkinEndpoint(service_name="loop.default")) for n in (1, 2)]
        traces[LOOP_TRACE] = looped
        return cls(proxies=proxies, traces=traces)


def _logs(service: str, namespace: str, limit: int, now: float) -> list[AccessLogEntry]:
    entries = []
    for i in range(min(limit, 12)):
        code = 503 if i == 4 else 200
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - i * 1.7)) + f".{(i * 137) % 1000:03d}Z"
        entries.append(AccessLogEntry(
            start_time=stamp, listener="inbound", method="GET", path=f"/{service}/{i % 4}", protocol="HTTP/1.1",
            response_code=code, response_flags="UF" if code == 503 else "-", duration=9 + (i * 7) % 30,
            upstream_service_time=8 + (i * 7) % 30, user_agent="python-httpx/0.27", request_id=f"req-{i:04d}",
            authority=f"{service}:9080", upstream_host="127.0.0.1:19080", upstream_cluster=f"inbound|9080||",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736" if i == 0 else None,
            downstream_peer_principal=f"spiffe://cluster.local/ns/{namespace}/sa/frontend"))
    return entries


def app(state: State) -> web.Application:
    """The dashboard's routes plus the API over `state`."""
    enc = msgspec.json.Encoder()

    def json(value: object) -> web.Response:
        return web.Response(body=enc.encode(value), content_type="application/json")

    async def api_graph(request: web.Request) -> web.Response:
        if state.graph_fails:
            raise web.HTTPInternalServerError(text="telemetry: graph failed\n")
        answer = graph(time.time(), state.frontend_rps)
        answer.nodes.extend(state.extra_nodes)
        answer.edges.extend(state.extra_edges)
        return json(answer)

    async def api_series(request: web.Request) -> web.Response:
        return json(series(request.query["service"], time.time(), int(request.query.get("minutes", "15"))))

    async def api_proxies(request: web.Request) -> web.Response:
        if state.pilot_error:
            return json(ProxyStatusReply(ok=False, error=state.pilot_error))
        return json(ProxyStatusReply(ok=True, version=state.config_version, proxies=state.proxies))

    async def api_logs(request: web.Request) -> web.Response:
        return json(_logs(request.query.get("service", ""), request.query.get("namespace", "default"),
                          int(request.query.get("limit", "50")), time.time()))

    async def zipkin_services(request: web.Request) -> web.Response:
        return json(sorted({s.local_endpoint.service_name for t in state.traces.values() for s in t if s.local_endpoint}))

    async def zipkin_traces(request: web.Request) -> web.Response:
        name = request.query.get("serviceName")
        return json([t for t in state.traces.values()
                     if not name or any(s.local_endpoint and s.local_endpoint.service_name == name for s in t)])

    async def zipkin_trace(request: web.Request) -> web.Response:
        found = state.traces.get(request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound(text="trace not found\n")
        return json(found)

    application = web.Application()
    application.add_routes(routes())
    application.add_routes([web.get("/api/graph", api_graph), web.get("/api/series", api_series),
                            web.get("/api/proxies", api_proxies), web.get("/api/logs", api_logs),
                            web.get("/api/v2/services", zipkin_services), web.get("/api/v2/traces", zipkin_traces),
                            web.get("/api/v2/trace/{id}", zipkin_trace)])
    return application
