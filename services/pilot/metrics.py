"""Pilot's own metrics, with istiod's names and meaning (pilot/pkg/xds/monitoring.go, pkg/xds/monitoring.go,
pkg/webhooks/validation/server/monitoring.go), published by runtime/metrics.py.

    pilot_proxy_convergence_time   histogram, s: from the commit of a config change (pilot's watcher sees its
                                   etcd revision) to a proxy's ACK of a version that holds it; Istio's buckets
    pilot_xds_pushes{type}         pushes sent, by the kind of resource they carry (cds, eds, rds, lds); a
                                   push is one bus message that every proxy receives
    pilot_xds                      proxies this pilot serves: the leader counts every registered workload,
                                   other replicas 0 (one push stream per mesh; the sum is the mesh's)
    pilot_total_xds_rejects{type}  NACKs: pushes a proxy rejected (type "push")
    galley_validation_passed       config submissions accepted (apply)
    galley_validation_failed{reason}  refused: "invalid" (validation errors), "other" (store, deadline, size)

Bounded: the commit times of the last MAX_COMMITS config revisions, the last ACKed version of at most
MAX_PROXIES proxies (the least recently heard forgotten first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from prometheus_client import CollectorRegistry, Gauge, Histogram

from proto.xds import Ack, Push
from runtime.metrics import IstioSum

CONVERGENCE_BUCKETS = (0.1, 0.5, 1, 3, 5, 10, 20, 30)  # istiod's pilot_proxy_convergence_time
MAX_COMMITS = 1024
MAX_PROXIES = 100_000


class _Outcome(msgspec.Struct):
    ok: bool = False
    errors: list[msgspec.Raw] = []


_outcome = msgspec.json.Decoder(_Outcome)


class PilotMetrics:
    def __init__(self, registry: CollectorRegistry, connected: Callable[[], int]) -> None:
        self.convergence = Histogram(
            "pilot_proxy_convergence_time", "Delay in seconds between a config change's commit and a proxy's ACK "
            "of a version holding it.", buckets=CONVERGENCE_BUCKETS, registry=registry)
        self.pushes = IstioSum("pilot_xds_pushes", "Pushes sent, by resource type (cds, eds, rds, lds).", ["type"],
                               registry)
        self.rejects = IstioSum("pilot_total_xds_rejects", "Total number of pushes rejected by proxies (NACK).",
                                ["type"], registry)
        self.passed = IstioSum("galley_validation_passed", "Config submissions that passed validation.", (),
                               registry)
        self.failed = IstioSum("galley_validation_failed", "Config submissions refused.", ["reason"], registry)
        self.xds = Gauge("pilot_xds", "Proxies served by this pilot (the leader: every registered workload).",
                         registry=registry)
        self.xds.set_function(lambda: float(connected()))
        self.commits: OrderedDict[int, float] = OrderedDict()
        self.acked: OrderedDict[str, int] = OrderedDict()

    def committed(self, revision: int, now: float | None = None) -> None:
        """A config change at etcd `revision` was seen (pilot's watcher)."""
        self.commits.setdefault(revision, time.time() if now is None else now)
        while len(self.commits) > MAX_COMMITS:
            self.commits.popitem(last=False)

    def ack(self, ack: Ack, now: float | None = None) -> None:
        """An ACK or NACK: a NACK counts as a reject; an ACK that newly covers committed changes observes the
        time since the newest of them (a proxy's first ACK only sets where it starts)."""
        if not ack.ok:
            self.rejects.inc("push")
            return
        before = self.acked.pop(ack.proxy_id, None)
        self.acked[ack.proxy_id] = max(before or 0, ack.version)
        while len(self.acked) > MAX_PROXIES:
            self.acked.popitem(last=False)
        if before is None or ack.version <= before:
            return
        covered = [r for r in self.commits if before < r <= ack.version]
        if covered:
            now = time.time() if now is None else now
            self.convergence.observe(max(0.0, now - self.commits[max(covered)]))

    def pushed(self, push: Push) -> None:
        """A delta push published."""
        self.served_snapshot(bool(push.clusters or push.removed_clusters), bool(push.routes or push.removed_routes),
                             bool(push.security or push.removed_security))

    def served_snapshot(self, clusters: bool, routes: bool, security: bool) -> None:
        """A push (a delta, or a full snapshot one proxy asked for) holding these kinds of resources."""
        for kind, present in (("cds", clusters), ("eds", clusters), ("rds", routes), ("lds", security)):
            if present:
                self.pushes.inc(kind)

    def applied(self, reply: bytes) -> None:
        """Count a config API reply (ApplyReply JSON) as passed or failed."""
        try:
            outcome = _outcome.decode(reply)
        except msgspec.DecodeError:
            return
        if outcome.ok:
            self.passed.inc()
        else:
            self.failed.inc("invalid" if outcome.errors else "other")
