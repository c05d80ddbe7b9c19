"""The proxy's applied config: pushes in, one immutable routing table out, make before break.

    ConfigRejected   a push the proxy refuses; nothing of it was applied but its valid security entry (NACKed)

apply(push) is all or nothing: every route is compiled and every cluster checked before anything
changes (proxy/control/push_check.py); only this workload's own security entry, when valid, is taken from a
push refused for the rest (ConfigState.apply says why). Then, as in istio/istio#12252 (make before break):
- clusters apply before routes;
- a route whose destinations name a cluster or subset the proxy does not hold waits as *pending*
  while the previous route for its host keeps serving; a later push that brings the missing
  cluster/subset activates it. The wait is bounded: a destination pilot marks `undefined` (no
  DestinationRule defines the subset at that version) is never waited for, and a host pending for
  `grace_s` (`proxy run --pending-grace`, Envoy's initial_fetch_timeout of 15 s) applies anyway. Either
  way only requests that pick such a destination fail, 503 NC (proxy/outbound/router.py), as in Envoy
  for a route whose cluster CDS never sent. Each change of what is pending is logged once;
- a cluster update that drops a subset an active route still uses keeps that subset's old definition,
  and a removed cluster an active route still uses stays, until no active route uses them.
The new RoutingTable is swapped in with one assignment, so the hot path never sees half a push.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgspec

from proto.xds import (
    OUTBOUND_TRAFFIC_POLICIES, ClusterConfig, MeshConfig, Push, RouteConfig, WeightedDestination, WorkloadSecurity,
)
from proto.gateway_xds import GatewayListeners
from proxy.control.gateway_state import gateway_dump, own_gateway
from proxy.control.push_check import ConfigRejected, _check_cluster, _compile
from proxy.control.security_state import Owner, not_own, own_security, security_dump
from proxy.outbound.upstream_tls import Originate, TlsCheck
from proxy.outbound.route import CompiledRoute
from proxy.outbound.table import RoutingTable, build_table
from runtime.log import get_logger

log = get_logger("proxy.config")

PENDING_GRACE_S = 15.0  # Envoy's initial_fetch_timeout: how long a resource is waited for before moving on


class Pending(NamedTuple):
    route: RouteConfig
    missing: tuple[str, ...]  # "cluster <host>" or "subset <name> of <host>"
    since: float = 0.0  # clock time the host started waiting (kept across new versions while it waits)


def _destinations(route: RouteConfig) -> Iterator[WeightedDestination]:
    """Every destination of a route's http and tcp rules."""
    for rule in route.rules:
        yield from rule.destinations
    for tcp in route.tcp:
        yield from tcp.destinations


def _missing(route: RouteConfig, clusters: dict[str, ClusterConfig]) -> tuple[str, ...]:
    """What the route waits for: the clusters and subsets it names that we lack and pilot did not call undefined."""
    missing: list[str] = []
    for dest in _destinations(route):
        if dest.undefined:
            continue
        cluster = clusters.get(dest.host)
        if cluster is None:
            what = f"cluster {dest.host}"
        elif dest.subset and all(s.name != dest.subset for s in cluster.subsets):
            what = f"subset {dest.subset} of {dest.host}"
        else:
            continue
        if what not in missing:
            missing.append(what)
    return tuple(missing)


class ConfigState:
    """`grace_s`: the longest a route waits for a missing cluster/subset; `clock`: seconds, monotonic."""

    def __init__(self, grace_s: float = PENDING_GRACE_S, clock: Callable[[], float] = time.monotonic,
                 workload_id: str = "", owner: Owner | None = None) -> None:
        """`workload_id`: this sidecar's registration id, whose WorkloadSecurity entry it keeps from pushes;
        `owner`: the registration it makes, which that entry must be compiled from
        (proxy/control/security_state.py; None: not checked)."""
        self.grace_s = grace_s
        self.clock = clock
        self.workload_id = workload_id
        self.owner = owner
        # this workload's inbound policy from pilot (PeerAuthentication resolved); None: none pushed, PERMISSIVE
        self.security: WorkloadSecurity | None = None
        # whether pilot knows this workload's registration now (its last push of our entry was not followed by
        # a removal or a snapshot without it): what pilot compiles from the registration (the RateLimits on our
        # service's cluster) is then current; while it is not, the inbound side keeps what it had
        self.registered = False
        self.epoch = ""
        self.seq = 0
        self.version = 0
        self.desired_clusters: dict[str, ClusterConfig] = {}  # what pilot last said
        self.desired_routes: dict[str, RouteConfig] = {}
        self.clusters: dict[str, ClusterConfig] = {}  # in force: desired + what active routes keep alive
        self.routes: dict[str, RouteConfig] = {}  # in force
        self.retained: dict[str, tuple[str, ...]] = {}  # host -> ("cluster",) or the subset names kept alive
        self._pending: dict[str, Pending] = {}
        # Compiled form of every desired or active route, keyed by id() of its RouteConfig: only live
        # objects are keys, since desired_routes or routes holds each one.
        self._compiled: dict[int, CompiledRoute] = {}
        self.table = RoutingTable({}, {})
        self.mesh = MeshConfig()  # mesh-wide settings from pilot (outboundTrafficPolicy): MeshRouter reads them
        self.on_apply: list[Callable[[], None]] = []  # called after each applied push (inbound rate limits)
        # makes the TLS origination for an endpoint (the sidecar sets it: proxy/tls/upstream.py); None: plaintext
        self.originate: Originate | None = None
        # loads a DestinationRule's SIMPLE/MUTUAL files when a push names them ("" or why not: NACK); set by the
        # sidecar
        self.tls_check: TlsCheck | None = None
        # gateway mode (proxy/gateway/): this gateway's own Push.gateways entry, and its compiled form made by
        # `compile_gateway` (set by the gateway; ValueError: the push is refused), swapped in with the rest
        self.gateway: GatewayListeners | None = None
        self.compile_gateway: Callable[[GatewayListeners | None], Any] | None = None
        self.gateway_compiled: Any = None

    def pending_routes(self) -> dict[str, Pending]:
        return dict(self._pending)

    def next_expiry(self) -> float | None:
        """Clock time at which the first pending route's grace ends (call expire() then), None if none waits."""
        return min(p.since for p in self._pending.values()) + self.grace_s if self._pending else None

    def apply(self, push: Push) -> None:
        """Apply a delta (or a full snapshot); raises ConfigRejected if invalid, having changed nothing but this
        workload's own security entry: a valid one is taken even when the rest of its push is refused, as
        Envoy's listeners (RBAC) do not wait on its clusters. Pilot sends an entry only when it changes, so one
        dropped with a refused cluster would stay missing after the cluster is fixed, and the policies it added
        unenforced (tests/integration/test_nacked_security.py)."""
        try:
            security = own_security(push, self.workload_id, self.security, self.owner)
        except ValueError as exc:
            raise ConfigRejected(str(exc)) from exc
        own = next((s for s in push.security if s.workload == self.workload_id), None)
        if own is not None:
            registered = security is own  # not taken: another registration's (security_state.not_own)
        else:
            registered = self.registered and not (push.full or self.workload_id in push.removed_security)
        try:
            self._apply(push, security, registered)
        except ConfigRejected:
            if security is not self.security:
                self.security, self.registered = security, registered
                for callback in self.on_apply:  # the rest as it was: they rebuild the same from it
                    callback()
            raise

    def _apply(self, push: Push, security: WorkloadSecurity | None, registered: bool) -> None:
        mesh = push.mesh if push.mesh is not None else (MeshConfig() if push.full else self.mesh)
        if mesh.outbound_traffic_policy not in OUTBOUND_TRAFFIC_POLICIES:
            raise ConfigRejected(f"mesh: outbound traffic policy {mesh.outbound_traffic_policy!r} is not one of "
                                 f"{', '.join(OUTBOUND_TRAFFIC_POLICIES)}")
        for cluster in push.clusters:
            _check_cluster(cluster, self.tls_check)
        gateway = own_gateway(push, self.workload_id, self.gateway)
        why = not_own(gateway, self.owner) if gateway is not None and self.owner is not None else ""
        if why:  # another workload's listeners (as its security entry: proxy/control/security_state.py)
            log.warning("pilot's listeners entry for this gateway id is not this gateway's: not taken",
                        workload=self.workload_id, reason=why, version=gateway.version)  # type: ignore[union-attr]
            gateway = self.gateway
        gateway_compiled = self.gateway_compiled
        if gateway is not self.gateway and self.compile_gateway is not None:
            try:
                gateway_compiled = self.compile_gateway(gateway)
            except ValueError as exc:
                raise ConfigRejected(str(exc)) from exc
        compiled = {id(r): c for r, c in ((r, _compile(r)) for r in push.routes)}
        if push.full:
            clusters = {c.host: c for c in push.clusters}
            routes = {r.host: r for r in push.routes}
        else:
            clusters = {h: c for h, c in self.desired_clusters.items() if h not in push.removed_clusters}
            clusters.update((c.host, c) for c in push.clusters)
            routes = {h: r for h, r in self.desired_routes.items() if h not in push.removed_routes}
            routes.update((r.host, r) for r in push.routes)
        self.security = security  # before _install: its on_apply callbacks read it (the inbound mTLS modes)
        self.registered = registered
        self.gateway, self.gateway_compiled = gateway, gateway_compiled
        self._install(clusters, routes, {**self._compiled, **compiled}, mesh)
        self.epoch, self.seq, self.version = push.epoch, push.seq, max(self.version, push.version)

    def expire(self) -> bool:
        """Apply the pending routes whose grace has ended (True if any did); the rest keep waiting."""
        now = self.clock()
        if not any(now - p.since >= self.grace_s for p in self._pending.values()):
            return False
        self._install(self.desired_clusters, self.desired_routes, self._compiled, self.mesh)
        return True

    def _install(self, clusters: dict[str, ClusterConfig], routes: dict[str, RouteConfig],
                 known: dict[int, CompiledRoute], mesh: MeshConfig) -> None:
        now = self.clock()
        active: dict[str, RouteConfig] = {}
        pending: dict[str, Pending] = {}
        for host, route in routes.items():
            missing = _missing(route, clusters)
            if not missing or self.routes.get(host) == route:  # complete, or already in force
                active[host] = route  # (one in force keeps what it uses alive: _keep_alive)
                continue
            before = self._pending.get(host)
            since = before.since if before is not None else now
            if now - since >= self.grace_s:  # waited long enough: requests to what is missing get 503 NC
                log.warning("pending route applied after its grace, without what it waits for", host=host,
                            version=route.version, source=route.source, missing=", ".join(missing),
                            grace_s=self.grace_s)
                active[host] = route
                continue
            pending[host] = Pending(route, missing, since)
            if before is None or before.route != route or before.missing != missing:
                log.warning("route held pending: the previous route serves until what it names arrives",
                            host=host, version=route.version, source=route.source, missing=", ".join(missing),
                            applies_in_s=round(since + self.grace_s - now, 1))
            if host in self.routes:
                active[host] = self.routes[host]  # the old route keeps serving (make before break)
        for host, before in self._pending.items():
            if host not in pending and active.get(host) == before.route and _missing(before.route, clusters) == ():
                log.info("pending route applied: what it waited for arrived", host=host, version=before.route.version)

        effective, retained = self._keep_alive(clusters, active)
        table = build_table(effective, {h: known[id(r)] for h, r in active.items()}, self.table, self.originate)

        self.desired_clusters, self.desired_routes = clusters, routes
        self.clusters, self.routes, self.retained, self._pending = effective, active, retained, pending
        keep = {id(r) for r in routes.values()} | {id(r) for r in active.values()}
        self._compiled = {k: v for k, v in known.items() if k in keep}
        self.table = table
        self.mesh = mesh
        for callback in self.on_apply:
            callback()

    def _keep_alive(self, clusters: dict[str, ClusterConfig], active: dict[str, RouteConfig]
                    ) -> tuple[dict[str, ClusterConfig], dict[str, tuple[str, ...]]]:
        """Desired clusters plus the old clusters and subsets that active routes still use."""
        effective = dict(clusters)
        retained: dict[str, tuple[str, ...]] = {}
        for route in active.values():
            for dest in _destinations(route):
                if dest.undefined:  # pilot says it is gone: nothing to keep alive (requests get 503 NC)
                    continue
                current, old = effective.get(dest.host), self.clusters.get(dest.host)
                if current is None and old is not None:
                    effective[dest.host] = old
                    retained[dest.host] = ("cluster",)
                elif current is not None and old is not None and dest.subset \
                        and all(s.name != dest.subset for s in current.subsets):
                    kept = [s for s in old.subsets if s.name == dest.subset]
                    if kept:
                        effective[dest.host] = msgspec.structs.replace(current, subsets=[*current.subsets, *kept])
                        retained[dest.host] = (*retained.get(dest.host, ()), dest.subset)
        return effective, retained

    def clusters_status(self) -> list[dict[str, Any]]:
        """JSON-able runtime view for the admin /clusters: per pool, its circuit breakers and endpoints
        (health, outlier ejection, requests in flight where LEAST_REQUEST counts them)."""
        out = []
        for host in sorted(self.table.clusters):
            for subset, pool in sorted(self.table.clusters[host].pools.items()):
                counts: dict[int, int] = {}
                for balancer in pool._balancers.values():
                    for key, n in (getattr(balancer, "active", None) or {}).items():
                        counts[key] = counts.get(key, 0) + n
                endpoints = []
                for ep in pool.endpoints:
                    item: dict[str, Any] = {"address": ep.address, "ports": ep.ports, "healthy": ep.healthy}
                    if id(ep) in counts:
                        item["in_flight"] = counts[id(ep)]
                    if pool.outlier is not None:
                        item.update(pool.outlier.endpoint_stats(ep))
                    endpoints.append(item)
                breakers = {pool.cluster_name(port): b.stats() for port, b in sorted(pool.breakers.items()) if b}
                out.append({"host": host, "subset": subset, "outlier_detection": pool.outlier is not None,
                            "circuit_breakers": breakers, "endpoints": endpoints})
        return out

    def dump(self) -> dict[str, Any]:
        """JSON-able view for the admin /config_dump."""
        clusters = []
        for host in sorted(self.clusters):
            item = msgspec.to_builtins(self.clusters[host])  # endpoint ports keep int keys: json encodes them
            if host in self.retained:
                item["retained"] = list(self.retained[host])
            clusters.append(item)
        return {
            "epoch": self.epoch,
            "seq": self.seq,
            "version": self.version,
            "mesh": msgspec.to_builtins(self.mesh),
            "clusters": clusters,
            "routes": [msgspec.to_builtins(self.routes[h]) for h in sorted(self.routes)],
            "pending": [{"host": h, "version": p.route.version, "source": p.route.source, "missing": list(p.missing),
                         "applies_in_s": round(max(0.0, p.since + self.grace_s - self.clock()), 3)}
                        for h, p in sorted(self._pending.items())],
            "pending_grace_s": self.grace_s,
            "security": security_dump(self.security),
            **({"gateway": gateway_dump(self.gateway)} if self.compile_gateway is not None else {}),
        }
