"""Compiled config and its distribution: deltas on xds.push, full snapshots on request.

Pilot recompiles the mesh after a debounce and diffs the result against what it published last,
so one change becomes one message holding only the resources it touched (clusters, routes, the
per-workload security entries and the gateway workloads' listeners). Only the leader
publishes; every push increments `seq` within the leader's `epoch`, so a proxy that misses one
sees the gap and asks for a snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from proto.gateway_xds import GatewayListeners
from proto.xds import ClusterConfig, MeshConfig, Push, RouteConfig, WorkloadSecurity
from runtime.bus import encode
from services.pilot.compile import Authz, JwksLookup, MeshState, PeerAuthn, compile_security, compile_with_gateways, \
    diff, diff_gateways, diff_security


class Pusher:
    def __init__(self, mesh: MeshConfig | None = None, jwks: JwksLookup | None = None,
                 jwks_sweep: tuple[Callable[[], None], Callable[[], None]] | None = None) -> None:
        """`mesh`: the mesh-wide settings (pilot's settings) every push carries to every proxy; `jwks`: the
        lookup of fetched jwksUri key sets (jwks_resolver.JwksResolver.lookup), `jwks_sweep` its (begin, end)
        called around each compile so key sets no rule uses any more are dropped."""
        self.mesh = mesh or MeshConfig()
        self.jwks = jwks
        self.jwks_sweep = jwks_sweep
        self.clusters: dict[str, ClusterConfig] = {}
        self.routes: dict[str, RouteConfig] = {}
        self.security: dict[str, WorkloadSecurity] = {}  # workload id -> its sidecar's inbound policy
        self.gateways: dict[str, GatewayListeners] = {}  # gateway workload id -> what it serves
        self.epoch = uuid.uuid4().hex[:12]
        self.seq = 0
        self.version = 0
        self.pushed_version = 0  # the version of the last push that changed something: proxy-status's SYNCED
        # per kind, the version of the last push that changed it (proxy-status per kind): "clusters" and
        # "routes" for every proxy, "security" and "gateways" per workload id
        self.changed: dict[str, int] = {}
        self.changed_for: dict[str, dict[str, int]] = {}
        self._snapshot_key: tuple[str, int, int] = ("", -1, -1)
        self._snapshot_cache = b""

    def new_epoch(self) -> Push:
        """A new leadership term: proxies that see the new epoch resync by snapshot."""
        self.epoch = uuid.uuid4().hex[:12]
        self.seq += 1
        return Push(epoch=self.epoch, seq=self.seq, version=self.version, mesh=self.mesh)

    def nudge(self) -> Push:
        """An empty push, the next in sequence (services/pilot/resync.py): a no-op for proxies that hold
        everything, a gap for those that missed a push."""
        self.seq += 1
        return Push(epoch=self.epoch, seq=self.seq, version=self.version, mesh=self.mesh)

    def recompile(self, state: MeshState, revision: int) -> Push | None:
        """Compile, diff against the last result and return the delta (None when nothing changed)."""
        peers = PeerAuthn(state)  # indexed once: endpoints (auto mTLS) and workloads (inbound mode) share it
        clusters, routes, gateways = compile_with_gateways(state, (self.clusters, self.routes, self.gateways), peers)
        if self.jwks_sweep is not None:
            self.jwks_sweep[0]()
        security = compile_security(state, self.security, peers, Authz(state, self.jwks))
        if self.jwks_sweep is not None:
            self.jwks_sweep[1]()
        changed_clusters, changed_routes, removed_clusters, removed_routes = diff(
            self.clusters, self.routes, clusters, routes)
        changed_security, removed_security = diff_security(self.security, security)
        changed_gateways, removed_gateways = diff_gateways(self.gateways, gateways)
        self.clusters, self.routes, self.security, self.gateways = clusters, routes, security, gateways
        self.version = max(self.version, revision)
        if not (changed_clusters or changed_routes or removed_clusters or removed_routes or changed_security
                or removed_security or changed_gateways or removed_gateways):
            return None
        self.seq += 1
        self.pushed_version = self.version
        self._note_changes(bool(changed_clusters or removed_clusters), bool(changed_routes or removed_routes),
                           [s.workload for s in changed_security] + removed_security,
                           [g.workload for g in changed_gateways] + removed_gateways)
        return Push(epoch=self.epoch, seq=self.seq, version=self.version,
                    clusters=changed_clusters, routes=changed_routes,
                    removed_clusters=removed_clusters, removed_routes=removed_routes, mesh=self.mesh,
                    security=changed_security, removed_security=removed_security,
                    gateways=changed_gateways, removed_gateways=removed_gateways)

    def _note_changes(self, clusters: bool, routes: bool, security: list[str], gateways: list[str]) -> None:
        if clusters:
            self.changed["clusters"] = self.version
        if routes:
            self.changed["routes"] = self.version
        for kind, ids, held in (("security", security, self.security), ("gateways", gateways, self.gateways)):
            for workload in ids:
                if workload in held:
                    self.changed_for.setdefault(workload, {})[kind] = self.version
                else:  # removed: nothing of that kind is sent to it any more
                    self.changed_for.get(workload, {}).pop(kind, None)
        for workload in [w for w, kinds in self.changed_for.items() if not kinds]:
            del self.changed_for[workload]

    def snapshot_bytes(self) -> bytes:
        """The encoded snapshot, built once per push: a thousand proxies starting together ask for
        the same bytes."""
        key = (self.epoch, self.seq, self.version)
        if self._snapshot_key != key:
            self._snapshot_cache = encode(self.snapshot())
            self._snapshot_key = key
        return self._snapshot_cache

    def snapshot(self) -> Push:
        return Push(epoch=self.epoch, seq=self.seq, version=self.version, full=True,
                    clusters=sorted(self.clusters.values(), key=lambda c: c.host),
                    routes=sorted(self.routes.values(), key=lambda r: r.host), mesh=self.mesh,
                    security=[self.security[k] for k in sorted(self.security)],
                    gateways=[self.gateways[k] for k in sorted(self.gateways)])
