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
    headers: dict[str, StringMatch] = {}  # lower-case header names
    port: int | None = None


class WeightedDestination(Message):
    host: str  # FQDN of the destination service
    subset: str | None = None
    port: int | None = None  # None: the port the request was sent to
    weight: int = 100


class HttpRule(Message):
    name: str = ""
    matches: list[RouteMatch] = []  # empty: matches every request
    destinations: list[WeightedDestination] = []


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


class SubsetPolicy(Message):
    name: str
    labels: dict[str, str] = {}
    lb: str | None = None  # None: the cluster's lb


class ClusterConfig(Message):
    """Everything a proxy needs to reach one service: ports, subsets, balancing, endpoints."""

    host: str
    version: int
    ports: list[int] = []
    lb: str = "ROUND_ROBIN"
    subsets: list[SubsetPolicy] = []
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
