"""The proxy's own per-request cost, without sockets: `python -m bench.dataplane.micro [--profile]`.

Drives one HttpProxyProtocol (inbound or outbound listener) and one pooled UpstreamConnection with
fake transports, feeding a keep-alive GET and nginx's response, so what is timed is the Python and
httptools work per request and none of the kernel's. `--profile` ranks functions by own time with
cProfile (deterministic, so it inflates many small calls; use it to rank, not to measure).
Istio's standard metrics are recorded as in every sidecar (proxy/telemetry/); `--no-metrics` leaves them off,
to measure what they cost. `--peer-metadata`: the request comes from a sidecar with its peer metadata header
(inbound), or goes to an endpoint with a sidecar, which gets it (outbound). `--policy` (inbound): the listener
under the full bench's AuthorizationPolicy (bench/dataplane/features.py: ten ALLOW rules, the request allowed
by the last one only), the caller the mTLS identity its last rule names.
Measure before and after a hot-path change with this and with the data-plane benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from bench.dataplane.topology import BODY, HOST_HEADER

REQUEST = (f"GET / HTTP/1.1\r\nHost: {HOST_HEADER}\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n").encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 05:13:31 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(BODY)) + BODY


class FakeTransport:
    """Just enough of asyncio.Transport: writes are counted and dropped."""

    def __init__(self) -> None:
        self.writes = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writelines(self, data: list[bytes]) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def policy_router() -> tuple[object, object]:
    """`--policy`: the inbound router after a push of the full bench's AuthorizationPolicy (the mTLS pair's: rules
    on principals and namespaces too), as pilot compiles it (the spec's rules as they are), and the caller its last
    rule allows (bench/dataplane/features.py)."""
    import msgspec
    import yaml

    from bench.dataplane.features import RULES, authz_policy
    from proto.security import AuthzRule
    from proto.xds import AuthzPolicy, Push, WorkloadSecurity
    from proxy.control.config_state import ConfigState
    from proxy.core.downstream import Downstream
    from proxy.inbound.local_app import LocalAppRouter

    spec = yaml.safe_load(authz_policy("default", mtls=True))["spec"]
    rules = [msgspec.convert(rule, AuthzRule) for rule in spec["rules"]]
    assert spec["action"] == "ALLOW" and len(rules) == RULES
    state = ConfigState(workload_id="bench")
    router = LocalAppRouter("127.0.0.1", 8080, "bench-backend", state)
    policy = AuthzPolicy("default/bench-backend", "ALLOW", rules)
    state.apply(Push(epoch="bench", seq=1, version=1, full=True,
                     security=[WorkloadSecurity(workload="bench", version=1, authorization=[policy])]))
    assert router.admit is not None
    return router, Downstream("cluster.local/ns/default/sa/default", "10.0.0.7", "10.0.0.8", 8080)


class _Table:
    def __init__(self, lb: str, sidecar: bool = False) -> None:
        from proto.xds import ClusterConfig, Endpoint, HttpRule, RouteConfig, WeightedDestination
        from proxy.outbound.route import CompiledRoute
        from proxy.outbound.table import build_table

        fqdn = "bench-backend.default.svc.cluster.local"
        cluster = ClusterConfig(host=fqdn, version=1, ports=[9080], lb=lb,
                                endpoints=[Endpoint(address="127.0.0.1", ports={9080: 8080}, sidecar=sidecar)])
        route = RouteConfig(host=fqdn, version=1, source="default/bench-backend",
                            rules=[HttpRule(destinations=[WeightedDestination(host=fqdn)])])
        self.table = build_table({fqdn: cluster}, {fqdn: CompiledRoute(route)})


async def drive(mode: str, requests: int, profile: bool, lb: str = "LEAST_REQUEST", access_log: str = "",
                chunks: int = 1, router: object | None = None, request: bytes = REQUEST,
                downstream: object | None = None, metrics: bool = True, peer_metadata: bool = False,
                tracing: bool = True) -> float:
    """CPU µs per request. `router`: the inbound router to use (bench/dataplane/authz.py gives one holding
    AuthorizationPolicies), `request` the bytes of one request, `downstream` the caller the connection has;
    `metrics`: Istio's metrics recorded, as a sidecar records them; `peer_metadata`: see the module docstring;
    `tracing`: the tracing stage at the mesh default (1% of requests without a decision sampled), as a sidecar
    has it; a request from a sidecar (`peer_metadata`, inbound) carries the unsampled decision it propagates."""
    from proxy.http.server import HttpProxyProtocol
    from proxy.http.listener_state import ServerState
    from proxy.http.head import Mode
    from proxy.http.upstream_pool import ConnectionPool
    from proxy.http.upstream import UpstreamConnection
    from proxy.main import LocalAppRouter
    from proxy.outbound.router import MeshRouter

    pool = ConnectionPool()
    pool._loop = asyncio.get_running_loop()
    if router is None and mode == "inbound":
        router = LocalAppRouter("127.0.0.1", 8080, "bench-backend")
    elif router is None:  # what the client sidecar holds in the benchmark: bench-backend's cluster and VirtualService
        router = MeshRouter(_Table(lb, sidecar=peer_metadata), "default")
    key = ("127.0.0.1", 8080)
    log = None
    if access_log:  # `--access-log PATH`: what `proxy run --access-log` adds per request
        from proxy.access_log import AccessLog
        log = AccessLog(access_log)
    shared = ServerState(router, pool, Mode(mode), log.for_listener(mode) if log else None, None, 60.0)
    told: bytes | None = None  # inbound --peer-metadata: the first request, which carries the caller's metadata
    if metrics:  # as proxy/main.py sets them up
        from proxy.telemetry import peer_metadata as exchange
        from proxy.telemetry.http_metrics import InboundMetrics, OutboundMetrics
        from proxy.telemetry.labels import LocalWorkload

        me = LocalWorkload("bench-client" if mode == "outbound" else "bench-backend", "default", {"app": "bench"})
        if mode == "outbound":
            shared.metrics = OutboundMetrics(me)
            shared.peer_line = exchange.header_line(me.peer_metadata())
        else:
            shared.metrics, shared.peers = InboundMetrics(me), exchange.PeerMetadataCache()
            if peer_metadata:  # the calling sidecar tells who it is on the connection's first request, last
                told = request[:-2] + exchange.header_line(LocalWorkload("bench-client", "default", {
                    "app": "bench-client"}).peer_metadata()) + b"\r\n"
    if tracing:  # as proxy/observability.py sets it up; spans go to the reporter's bounded queue (no bus here)
        from proxy.telemetry.tracing import SidecarTracing

        tracer = SidecarTracing(proxy_id="bench", service="bench", namespace="default", service_account="default",
                                labels={"app": "bench"}, address="127.0.0.1", service_port=8080,
                                domain_suffix="svc.cluster.local", trust_domain="cluster.local")
        shared.tracer = tracer.client if mode == "outbound" else tracer.server
        if peer_metadata and mode == "inbound":  # what a calling sidecar propagates for an unsampled request,
            # spliced where it splices it: before its peer metadata line, which it writes last
            lines = (b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n"
                     b"x-b3-sampled: 0\r\n")
            request = request[:-2] + lines + b"\r\n"
            if told is not None:
                at = told.find(b"x-isthmus-peer-metadata:")
                told = told[:at] + lines + told[at:]
    proto = HttpProxyProtocol(shared)
    proto.connection_made(FakeTransport())  # type: ignore[arg-type]
    if downstream is not None:
        proto.downstream = downstream  # type: ignore[assignment]
    conn = UpstreamConnection(pool, key)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    pool.release(conn)
    profiler = cProfile.Profile() if profile else None
    if told is not None:  # the connection's first request
        proto.data_received(told)
        conn.data_received(RESPONSE)
    for _ in range(1000):  # warm up
        proto.data_received(request)
        conn.data_received(RESPONSE)
    if profiler:
        profiler.enable()
    # CPU time, robust to other work on the machine; with chunks > 1 the fastest chunk, which also drops the
    # slices where a neighbour evicted our caches (compare trees alternating, with the same settings)
    per_chunk = max(1, requests // chunks)
    best = float("inf")
    feed, answer = proto.data_received, conn.data_received
    for _ in range(chunks):
        t0 = time.process_time()
        for _ in range(per_chunk):
            feed(request)
            answer(RESPONSE)
        best = min(best, time.process_time() - t0)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    proto.transport.close()
    return best / per_chunk * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--mode", choices=["inbound", "outbound"], default="inbound")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--chunks", type=int, default=1,
                        help="split the requests into this many timed chunks and report the fastest (A/B runs on a "
                             "noisy machine: e.g. --requests 200000 --chunks 40)")
    parser.add_argument("--access-log", default="", metavar="PATH",
                        help="with the sidecar's access log on, written to PATH (/dev/null measures the formatting)")
    parser.add_argument("--no-metrics", action="store_true", help="without Istio's metrics (a sidecar records them)")
    parser.add_argument("--no-tracing", action="store_true",
                        help="without the tracing stage (a sidecar has it, sampling 1%% by default)")
    parser.add_argument("--peer-metadata", action="store_true",
                        help="inbound: the request carries a calling sidecar's peer metadata header; outbound: the "
                             "endpoint has a sidecar, so the header is added")
    parser.add_argument("--policy", action="store_true",
                        help="inbound: under the full bench's AuthorizationPolicy of ten ALLOW rules, the request "
                             "allowed by the last (bench/dataplane/features.py), from the mTLS caller it names")
    parser.add_argument("--lb", choices=["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"], default="LEAST_REQUEST",
                        help="the outbound cluster's balancer (pilot's default when a DestinationRule sets none: "
                             "LEAST_REQUEST)")
    args = parser.parse_args()
    if args.policy and args.mode != "inbound":
        parser.error("--policy is an inbound listener's: use it with --mode inbound")
    import uvloop

    uvloop.install()
    router = downstream = None
    if args.policy:
        router, downstream = policy_router()
    us = asyncio.run(drive(args.mode, args.requests, args.profile, args.lb, args.access_log, args.chunks,
                           router=router, downstream=downstream, metrics=not args.no_metrics,
                           peer_metadata=args.peer_metadata, tracing=not args.no_tracing))
    print(f"{args.mode}: {us:.2f} us of CPU per proxied request (Python + httptools, no syscalls)")


if __name__ == "__main__":
    main()
