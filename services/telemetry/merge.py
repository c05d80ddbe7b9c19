"""The merge of every sidecar's cumulative snapshots into mesh-wide Istio series (pure logic, no bus).

Each proxy instance sends cumulative values (proto.observations.MetricsSnapshot). The merged value of a label
set is the sum over proxies, kept so it never goes down, as Prometheus' rate() reads counters:

- a new `instance` for a proxy id (the sidecar restarted), or any value of a label set lower than the last
  one from that instance, is a counter reset: the old values stay in the total (Prometheus keeps the value
  before a reset as a base) and the new ones are added to it;
- a proxy silent for `retire_after` seconds is retired: its values stay in the total, its state is freed.
  If that same instance speaks again, its next snapshot is taken as the new zero (what it counted while
  silent is not counted; a scrape of a vanished target loses the same);
- a snapshot whose seq is not newer than the last of its instance is a duplicate and ignored.

Bounds (docs/telemetry-service.md): at most `max_proxies` proxies held (a snapshot of one more is dropped
and counted), at most `max_series` merged label sets (label sets past it are dropped and counted), at most
`max_held` label sets remembered over all proxies (each proxy's last values, needed for its next delta; one
identity may publish under many proxy ids, so max_proxies x max_series alone bounded nothing: past it a
proxy's new label sets are dropped and counted), label values at most MAX_LABEL characters. Proxies are keyed by the identity of the subject they published on and
their proxy id, so one proxy cannot reset another identity's counts; the namespace of that subject is the
reporter's own workload namespace in every series (a payload that claims another is dropped).

Two replicas given the same messages hold the same totals (retiring changes no total).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from proto.observations import MetricsSnapshot
from services.telemetry.istio import HTTP, LABEL_INDEX, TCP, TCP_LABEL_INDEX, Key, Vector, http_vector, tcp_vector

MAX_LABEL = 1024  # characters of one label value (a SPIFFE ID fits; a path never is a label)
_HTTP_LABELS = len(LABEL_INDEX)
_TCP_LABELS = len(TCP_LABEL_INDEX)


class SnapshotRefused(ValueError):
    """Why a snapshot was dropped as a whole (logged by the service)."""


@dataclass
class _Proxy:
    instance: str
    seq: int
    last_seen: float
    values: dict[Key, Vector] = field(default_factory=dict)


@dataclass
class MergeStats:
    snapshots: int = 0
    resets: int = 0
    retired: int = 0
    refused_proxies: int = 0  # snapshots of proxies past max_proxies
    refused_series: int = 0  # label sets past max_series
    invalid_series: int = 0  # wrong label count, histogram buckets, negative values, oversized labels
    duplicates: int = 0


def _labels_ok(labels: list[str], width: int) -> bool:
    return len(labels) == width and all(len(v) <= MAX_LABEL and v.isprintable() for v in labels)


class MetricsMerger:
    def __init__(self, max_proxies: int = 10_000, max_series: int = 100_000, retire_after: float = 600.0,
                 max_held: int = 1_000_000) -> None:
        self.max_proxies = max_proxies
        self.max_series = max_series
        self.max_held = max_held
        self.held = 0  # label sets remembered over all proxies (sum of len(proxy.values))
        self.retire_after = retire_after
        self.totals: dict[Key, Vector] = {}
        self.proxies: dict[tuple[str, str, str], _Proxy] = {}
        # instances retired, so their return is recognised (ids only; at most 2 x max_proxies remembered)
        self.retired: OrderedDict[str, None] = OrderedDict()
        self.stats = MergeStats()

    def add(self, snapshot: MetricsSnapshot, namespace: str, service_account: str, now: float) -> None:
        """Merge one snapshot published on `TELEMETRY_METRICS.<namespace>.<service_account>`; SnapshotRefused
        when it is dropped as a whole (its namespace is not the subject's, too many proxies)."""
        if snapshot.namespace != namespace:
            raise SnapshotRefused(f"the snapshot says namespace {snapshot.namespace[:80]!r} but was published by "
                                  f"an identity of namespace {namespace!r}")
        if not (snapshot.proxy_id and len(snapshot.proxy_id) <= MAX_LABEL and len(snapshot.instance) <= MAX_LABEL):
            raise SnapshotRefused("proxy_id is empty, or proxy_id or instance is too long")
        key = (namespace, service_account, snapshot.proxy_id)
        proxy = self.proxies.get(key)
        values = self._values(snapshot, namespace)
        if proxy is None or proxy.instance != snapshot.instance:
            if proxy is None and len(self.proxies) >= self.max_proxies:
                self.stats.refused_proxies += 1
                raise SnapshotRefused(f"{len(self.proxies)} proxies held already (max_proxies)")
            returning = proxy is None and snapshot.instance in self.retired
            if proxy is not None:
                self.stats.resets += 1  # a restart: the old instance's values stay in the totals
                self.held -= len(proxy.values)
            proxy = self.proxies[key] = _Proxy(snapshot.instance, snapshot.seq, now)
            self.retired.pop(snapshot.instance, None)
            if returning:  # counted up to its retirement; what it sends now is its new zero
                for k, v in values.items():
                    if k in self.totals and self.held < self.max_held:
                        proxy.values[k] = v
                        self.held += 1
                return
        elif snapshot.seq <= proxy.seq:
            self.stats.duplicates += 1
            return
        proxy.seq, proxy.last_seen = snapshot.seq, now
        self.stats.snapshots += 1
        for k, new in values.items():
            old = proxy.values.get(k)
            if old is None and self.held >= self.max_held:
                self.stats.refused_series += 1
                continue
            total = self.totals.get(k)
            if total is None:
                if len(self.totals) >= self.max_series:
                    self.stats.refused_series += 1
                    continue
                total = self.totals[k] = [0.0] * len(new)
            if old is None or any(n < o for n, o in zip(new, old)):
                if old is not None:
                    self.stats.resets += 1
                for i, n in enumerate(new):
                    total[i] += n
            else:
                for i, n in enumerate(new):
                    total[i] += n - old[i]
            if old is None:
                self.held += 1
            proxy.values[k] = new

    def _values(self, snapshot: MetricsSnapshot, namespace: str) -> dict[Key, Vector]:
        """The snapshot's series as vectors; the reporter's own namespace label set to `namespace`. Invalid
        series are counted and left out."""
        values: dict[Key, Vector] = {}
        for h in snapshot.http:
            vector = http_vector(h) if _labels_ok(h.labels, _HTTP_LABELS) else None
            if vector is None:
                self.stats.invalid_series += 1
                continue
            _put(values, (HTTP, _own_namespace(h.labels, namespace, LABEL_INDEX)), vector)
        for t in snapshot.tcp:
            vector = tcp_vector(t) if _labels_ok(t.labels, _TCP_LABELS) else None
            if vector is None:
                self.stats.invalid_series += 1
                continue
            _put(values, (TCP, _own_namespace(t.labels, namespace, TCP_LABEL_INDEX)), vector)
        return values

    def retire(self, now: float) -> int:
        """Free the state of proxies silent for retire_after seconds (their values stay in the totals)."""
        gone = [k for k, p in self.proxies.items() if now - p.last_seen > self.retire_after]
        for k in gone:
            proxy = self.proxies.pop(k)
            self.held -= len(proxy.values)
            self.retired[proxy.instance] = None
        while len(self.retired) > 2 * self.max_proxies:
            self.retired.popitem(last=False)
        self.stats.retired += len(gone)
        return len(gone)


def _put(values: dict[Key, Vector], key: Key, vector: Vector) -> None:
    """One label set twice in a snapshot (two listeners of one proxy, or labels made equal by the subject's
    namespace) is one series: their counts add."""
    known = values.get(key)
    if known is None:
        values[key] = vector
    else:
        for i, v in enumerate(vector):
            known[i] += v


def _own_namespace(labels: list[str], namespace: str, index: dict[str, int]) -> tuple[str, ...]:
    """Labels with the reporter's own workload namespace taken from the subject: source_workload_namespace for
    reporter=source, destination_workload_namespace for reporter=destination."""
    out = list(labels)
    reporter = out[index["reporter"]]
    if reporter == "source":
        out[index["source_workload_namespace"]] = namespace
    elif reporter == "destination":
        out[index["destination_workload_namespace"]] = namespace
    return tuple(out)
