"""Compiled proxy config pushed by pilot (our xDS over NATS), and what proxies report back.

A push is a delta: only the resources a change touched, keyed by service host. Clusters (policy,
subsets, endpoints of one service) and routes (the VirtualService rules for one host) travel in the
same message, so a proxy applies clusters before the routes that use them (make before break).
Every resource carries `version`, the etcd revision it was compiled from; pushes carry `epoch`
(one per pilot leadership term) and `seq` (+1 per push) so a proxy can detect a gap and resync.
"""

from __future__ import annotations

from proto.base import Message


class StringMatch(Message):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class RouteMatch(Message):
    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: dict[str, StringMatch] = {}  # lower-case header names; a match with no field: header present
    port: int | None = None
    scheme: StringMatch | None = None
    authority: StringMatch | None = None  # the Host header value, as sent
    query_params: dict[str, StringMatch] = {}  # a match with no field: parameter present
    without_headers: dict[str, StringMatch] = {}  # none of these may match
    ignore_uri_case: bool = False  # uri exact and prefix only, as Istio
    source_labels: dict[str, str] = {}  # the calling proxy's labels must include these
    source_namespace: str | None = None


class WeightedDestination(Message):
    host: str  # FQDN of the destination service
    subset: str | None = None
    port: int | None = None  # None: the port the request was sent to
    weight: int = 100


class RetryPolicy(Message):
    attempts: int = 0  # retries after the first try; 0: retries disabled
    per_try_timeout_ms: int | None = None
    retry_on: list[str] = []  # Envoy retry_on conditions (validated by pilot)
    status_codes: list[int] = []  # for retriable-status-codes


# Istio's policy for a route whose VirtualService sets no `retries` (and for services without one):
# pilot/pkg/networking/core/route/retry DefaultPolicy.
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_RETRY = RetryPolicy(attempts=2, retry_on=list(DEFAULT_RETRY_ON), status_codes=[503])


class FaultPolicy(Message):
    delay_ms: int = 0
    delay_percent: float = 0.0  # 0..100
    abort_status: int = 0  # 0: no abort
    abort_percent: float = 0.0


class HttpRule(Message):
    name: str = ""
    matches: list[RouteMatch] = []  # empty: matches every request
    destinations: list[WeightedDestination] = []
    timeout_ms: int | None = None  # None: no route timeout
    retry: RetryPolicy | None = None  # None: Istio's default policy (proxy/outbound/retry.py)
    fault: FaultPolicy | None = None


class RouteConfig(Message):
    """Routing for one host (FQDN), compiled from the VirtualService that claims it."""

    host: str
    version: int
    source: str = ""  # "namespace/name" of the VirtualService
    rules: list[HttpRule] = []


class Endpoint(Message):
    address: str
    ports: dict[int, int] = {}  # service port -> port to connect to on this endpoint
    labels: dict[str, str] = {}
    healthy: bool = True
    workload: str = ""  # registration id or "WorkloadEntry ns/name"
    locality: str = ""
    weight: int = 1


class HashPolicy(Message):
    """Consistent hashing (lb == "CONSISTENT_HASH"): exactly one key source is set."""

    header: str = ""  # lower-case header name
    cookie: str = ""  # cookie name (hash an existing cookie; generating one is not implemented)
    cookie_path: str = ""
    query: str = ""  # query parameter name
    source_ip: bool = False
    table: str = "RING_HASH"  # or "MAGLEV"
    size: int = 1024  # ringHash.minimumRingSize or maglev.tableSize


class LocalityPolicy(Message):
    """localityLbSetting: prefer the caller's locality; fail over by priority when it has nothing healthy."""

    failover: dict[str, str] = {}  # from region -> to region


class LbPolicy(Message):
    """A load balancer beyond its simple name: the hash key and locality settings of one level."""

    lb: str = "ROUND_ROBIN"
    hash: HashPolicy | None = None
    locality: LocalityPolicy | None = None


class SubsetPolicy(Message):
    name: str
    labels: dict[str, str] = {}
    lb: str | None = None  # None: the cluster's lb
    hash: HashPolicy | None = None  # with lb == "CONSISTENT_HASH"
    locality: LocalityPolicy | None = None
    port_lb: dict[int, LbPolicy] = {}  # portLevelSettings: service port -> policy for that port


class ClusterConfig(Message):
    """Everything a proxy needs to reach one service: ports, subsets, balancing, endpoints."""

    host: str
    version: int
    ports: list[int] = []
    lb: str = "ROUND_ROBIN"  # ROUND_ROBIN, RANDOM, LEAST_REQUEST or CONSISTENT_HASH
    subsets: list[SubsetPolicy] = []
    hash: HashPolicy | None = None  # with lb == "CONSISTENT_HASH"
    locality: LocalityPolicy | None = None
    port_lb: dict[int, LbPolicy] = {}  # portLevelSettings: service port -> policy for that port
    endpoints: list[Endpoint] = []
    source: str = ""  # "namespace/name" of the DestinationRule, if any


class Push(Message):
    """A delta (or, with full=True, the whole config) sent on subject xds.push or as a snapshot reply."""

    epoch: str
    seq: int
    version: int  # highest etcd revision compiled into this push
    full: bool = False
    clusters: list[ClusterConfig] = []
    routes: list[RouteConfig] = []
    removed_clusters: list[str] = []
    removed_routes: list[str] = []


class SnapshotRequest(Message):
    proxy_id: str


class Ack(Message):
    """A proxy's report after applying (ok) or rejecting (not ok, with error) a push."""

    proxy_id: str
    epoch: str
    seq: int
    version: int
    ok: bool = True
    error: str = ""
    service: str = ""
    namespace: str = ""


class ProxyStatus(Message, omit_defaults=False):
    """What pilot records per proxy (etcd /isthmus/status/proxies/<id>)."""

    proxy_id: str
    service: str = ""
    namespace: str = ""
    epoch: str = ""
    seq: int = 0
    version: int = 0
    ok: bool = True
    error: str = ""
    updated_at: float = 0.0
