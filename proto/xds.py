"""Compiled proxy config pushed by pilot (our xDS over NATS), and what proxies report back.

A push is a delta: only the resources a change touched, keyed by service host (routes: proto/routes.py;
a gateway's listeners: proto/gateway_xds.py). Clusters (policy,
subsets, endpoints of one service) and routes (the VirtualService rules for one host) travel in the
same message, so a proxy applies clusters before the routes that use them (make before break).
Every resource carries `version`, the etcd revision it was compiled from; pushes carry `epoch`
(one per pilot leadership term) and `seq` (+1 per push) so a proxy can detect a gap and resync.
"""

from __future__ import annotations

from proto.base import Message
from proto.gateway_xds import GatewayListeners
from proto.security import AuthzRule, JwtRule
from proto.routes import (  # noqa: F401 (re-exported: the route types of a push, defined in proto/routes.py)
    DEFAULT_RETRY, DEFAULT_RETRY_ON, CorsPolicy, DirectResponse, FaultPolicy, HeaderOperations, Headers, HttpRule,
    MirrorPolicy, Redirect, RetryPolicy, Rewrite, RouteConfig, RouteMatch, StringMatch, TcpMatch, TcpRule,
    WeightedDestination,
)
from proto.telemetry import TelemetryPolicy
from proto.workload_group import Probe


class Endpoint(Message):
    address: str
    ports: dict[int, int] = {}  # service port -> port to connect to on this endpoint
    labels: dict[str, str] = {}
    healthy: bool = True
    workload: str = ""  # registration id or "WorkloadEntry ns/name"
    locality: str = ""
    weight: int = 1
    # Auto mTLS inputs (Istio's enableAutoMtls), decided by pilot once per push (docs/decisions.md, "Mutual TLS"):
    sidecar: bool = False  # a sidecar terminates mTLS here: registered by an Isthmus proxy, or tlsMode istio
    identity: str = ""  # with a sidecar: the SPIFFE ID it must present, spiffe://<trust domain>/ns/<ns>/sa/<sa>
    # service ports on which auto mTLS sends ISTIO_MUTUAL here: it has a sidecar and its workload's effective
    # PeerAuthentication mode for the port is not DISABLE (and the service is not MESH_EXTERNAL); others: plaintext
    auto_mtls: list[int] = []
    # Istio's destination_* metric labels for this endpoint: its workload's name (Workload.workload_name, or
    # the WorkloadEntry's name) and cluster; app/version/canonical labels are read from `labels`
    workload_name: str = ""
    cluster: str = ""


# ClientTls modes (DestinationRule trafficPolicy.tls, Istio's ClientTLSSettings.TLSmode)
TLS_DISABLE = "DISABLE"
TLS_SIMPLE = "SIMPLE"
TLS_MUTUAL = "MUTUAL"
TLS_ISTIO_MUTUAL = "ISTIO_MUTUAL"
CLIENT_TLS_MODES = (TLS_DISABLE, TLS_SIMPLE, TLS_MUTUAL, TLS_ISTIO_MUTUAL)


class ClientTls(Message):
    """How a client sidecar originates TLS to an upstream: a DestinationRule's `tls`, or auto mTLS's choice.

    DISABLE: plaintext. ISTIO_MUTUAL: mTLS with the sidecar's workload certificate and the mesh trust bundle;
    the server must present `subject_alt_names` if given, else the endpoint's `identity`. SIMPLE: TLS, the
    server verified against `ca_certificates` (unset: the system's trust store, as Istio's
    VERIFY_CERTIFICATE_AT_CLIENT) unless `insecure_skip_verify`. MUTUAL: SIMPLE plus the client certificate
    and key files. File paths are on the client sidecar's host.
    """

    mode: str = TLS_DISABLE
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    subject_alt_names: list[str] = []
    sni: str = ""
    insecure_skip_verify: bool = False


PLAINTEXT = ClientTls(mode=TLS_DISABLE)
AUTO_MTLS = ClientTls(mode=TLS_ISTIO_MUTUAL)


class HashPolicy(Message):
    """Consistent hashing (lb == "CONSISTENT_HASH"): exactly one key source is set."""

    header: str = ""  # lower-case header name
    cookie: str = ""  # cookie name
    cookie_path: str = ""
    cookie_ttl_s: float | None = None  # set: the sidecar generates the cookie when absent (0: session cookie)
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


class RetryBudget(Message):
    """Envoy's retry budget: retries outstanding at once <= max(min_concurrency, percent of the requests
    in flight and waiting); with interval_ms, of the requests started in the last interval instead."""

    percent: float = 20.0
    min_concurrency: int = 3
    interval_ms: int = 0


class Keepalive(Message):
    time_s: int = 0  # 0: the OS's
    interval_s: int = 0
    probes: int = 0


class PoolLimits(Message):
    """DestinationRule connectionPool, as the proxy's circuit breaker (proxy/outbound/circuit_breaker.py) runs it.

    0 means no limit (Istio's unset). max_connections caps the requests in flight to the whole upstream
    cluster (an HTTP/1.1 upstream connection carries one at a time); max_pending caps those waiting for one.
    """

    max_connections: int = 0
    max_pending: int = 0
    max_requests: int = 0  # http2MaxRequests: requests in flight and waiting together
    connect_timeout_ms: int = 0  # 0: the proxy's own connect timeout
    max_requests_per_connection: int = 0  # 1: no keep-alive
    max_retries: int = 0  # retries outstanding at once (unless a retry budget is set)
    retry_budget: RetryBudget | None = None
    idle_timeout_ms: int = 0  # http.idleTimeout of pooled upstream connections; 0: the proxy's own
    max_connection_duration_ms: int = 0  # tcp.maxConnectionDuration; 0: none
    tcp_idle_timeout_ms: int | None = None  # tcp.idleTimeout of opaque TCP connections; None: 1 h, 0: none
    keepalive: Keepalive | None = None  # tcp.tcpKeepalive: SO_KEEPALIVE on upstream sockets


class OutlierPolicy(Message):
    """DestinationRule outlierDetection (proxy/outbound/outlier.py), with Envoy's defaults as Istio leaves them."""

    consecutive_5xx: int = 5  # 0: off
    consecutive_gateway: int = 0  # 0: off (Envoy does not enforce it unless set)
    interval_ms: int = 10_000
    base_ejection_ms: int = 30_000
    max_ejection_percent: int = 10
    min_health_percent: int = 0  # below this share of endpoints not ejected, ejections are ignored


class SubsetPolicy(Message):
    name: str
    labels: dict[str, str] = {}
    lb: str | None = None  # None: the cluster's lb
    hash: HashPolicy | None = None  # with lb == "CONSISTENT_HASH"
    locality: LocalityPolicy | None = None
    port_lb: dict[int, LbPolicy] = {}  # portLevelSettings: service port -> policy for that port
    limits: PoolLimits | None = None  # None: the cluster's (limits and port_limits), as with lb
    port_limits: dict[int, PoolLimits] = {}
    outlier: OutlierPolicy | None = None  # with lb None: the cluster's
    # the subset's own trafficPolicy.tls (None: not set at this level) and its portLevelSettings by port
    # (a port entry replaces the rest for that port; None there: that entry sets no tls). See dr_tls().
    tls: ClientTls | None = None
    port_tls: dict[int, ClientTls | None] = {}


class RateLimitRule(Message):
    """A RateLimit (isthmus.io) enforced on the inbound side of the service's workloads its selector picks."""

    name: str  # "namespace/name" of the RateLimit
    selector: dict[str, str] = {}  # the sidecar enforces it when its own labels include these
    matches: list[RouteMatch] = []  # any of; empty: every request
    max_tokens: int = 1
    tokens_per_fill: int = 1
    fill_interval_ms: int = 1000


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
    limits: PoolLimits | None = None  # connectionPool; None: no limits
    port_limits: dict[int, PoolLimits] = {}  # portLevelSettings connectionPool: service port -> limits
    outlier: OutlierPolicy | None = None  # outlierDetection; None: off
    ratelimits: list[RateLimitRule] = []  # RateLimits on this service's workloads (inbound), oldest first
    tcp_ports: list[int] = []  # service ports that are opaque TCP (--app-tcp, ServiceEntry TCP/TLS/...): CONNECT ok
    # the DestinationRule's top-level trafficPolicy.tls (None: not set) and its portLevelSettings by port, as
    # SubsetPolicy's; see dr_tls() and client_tls()
    tls: ClientTls | None = None
    port_tls: dict[int, ClientTls | None] = {}


def dr_tls(cluster: ClusterConfig, subset: str | None, port: int) -> ClientTls | None:
    """The DestinationRule's tls for traffic to `cluster` through `subset` (None: no subset) on service `port`,
    merged as Istio's MergeSubsetTrafficPolicy: a subset's portLevelSettings entry for the port, else the
    subset's own tls, else the top level's portLevelSettings entry for the port, else the top level's tls.
    A portLevelSettings entry replaces its level wholesale for its port, so one without tls yields None
    there. None: the DestinationRule sets no tls for this traffic (auto mTLS decides)."""
    for candidate in cluster.subsets:
        if subset and candidate.name == subset:
            if port in candidate.port_tls:
                return candidate.port_tls[port]
            if candidate.tls is not None:
                return candidate.tls
            break
    if port in cluster.port_tls:
        return cluster.port_tls[port]
    return cluster.tls


def client_tls(cluster: ClusterConfig, subset: str | None, port: int, endpoint: Endpoint) -> ClientTls:
    """What a client sidecar does towards `endpoint` on service `port` (Istio's auto mTLS, enableAutoMtls on):
    the DestinationRule's tls when it sets one (dr_tls), else ISTIO_MUTUAL when `port` is in the endpoint's
    `auto_mtls`, else plaintext (mode DISABLE)."""
    chosen = dr_tls(cluster, subset, port)
    if chosen is not None:
        return chosen
    return AUTO_MTLS if port in endpoint.auto_mtls else PLAINTEXT


class AuthzPolicy(Message):
    """One AuthorizationPolicy as pilot validated it, for the sidecars it applies to (the proxy compiles
    `rules` into matchers once per push: proxy/inbound/authz/).

    name: "namespace/name" (access-log lines and /config_dump name it); action: ALLOW, DENY or AUDIT (never
    CUSTOM, refused at apply); rules: Istio's rules, [] for a policy without rules (ALLOW: matches nothing).
    """

    name: str
    action: str
    rules: list[AuthzRule] = []


class JwtProvider(Message):
    """One jwtRule of a RequestAuthentication that applies to a workload.

    source: "namespace/name" of the RequestAuthentication; rule: Istio's JWTRule, its `jwks` the key set
    pilot fetched from `jwksUri` when the rule names one; jwks_error: why that fetch failed ("" when it did
    not): then no token of this issuer verifies (401), as Istio when istiod cannot fetch a jwksUri.
    """

    source: str
    rule: JwtRule
    jwks_error: str = ""


# Inbound mutual TLS modes (PeerAuthentication, resolved: never UNSET)
MTLS_STRICT = "STRICT"
MTLS_PERMISSIVE = "PERMISSIVE"
MTLS_DISABLE = "DISABLE"
INBOUND_MTLS_MODES = (MTLS_STRICT, MTLS_PERMISSIVE, MTLS_DISABLE)


class WorkloadSecurity(Message):
    """The security policy of one registered workload, for its own sidecar's inbound side; keyed by `workload`
    (the registration id, which is the proxy's id). Every registered workload has one, the default (PERMISSIVE
    on every port, Istio's default; no authorization, JWT or probe) when no policy applies; a sidecar without
    its entry admits nothing (pilot has not seen its registration) and keeps its last entry after a removal
    (services/pilot/compile/security.py, proxy/control/security_state.py).

    mtls_mode: the effective PeerAuthentication mode of the workload (workload-selector policy, else its
    namespace's, else the root namespace's mesh-wide one, UNSET inheriting the level above; no policy:
    PERMISSIVE), for every port not in port_mtls. port_mtls: workload port (the port the app listens on,
    as Istio's portLevelMtls) -> mode. peer_authentications: "namespace/name" of the policies that decided
    it, mesh-wide first.
    """

    workload: str
    version: int
    namespace: str = ""
    # the service and service account of the registration it was compiled from (with `namespace`): the registry
    # keys a workload by namespace/service/id, so another identity may register the same id elsewhere, and a
    # sidecar takes only an entry of its own registration (proxy/control/security_state.py); "": an older pilot
    service: str = ""
    service_account: str = ""
    instance: str = ""  # the registration's Workload.instance: the sidecar run that registered it ("": unknown)
    mtls_mode: str = MTLS_PERMISSIVE
    port_mtls: dict[int, str] = {}
    peer_authentications: list[str] = []
    # The AuthorizationPolicies that apply to this workload (root namespace's mesh-wide ones, its namespace's,
    # those whose selector its labels match), oldest first, and the RequestAuthentications' JWT rules.
    authorization: list[AuthzPolicy] = []
    jwt: list[JwtProvider] = []
    # The Telemetry resources that apply to this workload, merged (proto/telemetry.py); None: the mesh defaults.
    # (The entry is the workload's whole pushed policy, security and telemetry alike.)
    telemetry: TelemetryPolicy | None = None
    # The readiness probe of the WorkloadGroup the workload is bound to (Workload.workload_group), which its
    # sidecar runs instead of its TCP check of the app's port; None: no group, or a group without a probe.
    probe: Probe | None = None

    def mode_for(self, port: int) -> str:
        """The inbound mode for connections to the app's `port`."""
        return self.port_mtls.get(port, self.mtls_mode)


ALLOW_ANY = "ALLOW_ANY"
REGISTRY_ONLY = "REGISTRY_ONLY"
OUTBOUND_TRAFFIC_POLICIES = (ALLOW_ANY, REGISTRY_ONLY)


class MeshConfig(Message):
    """Mesh-wide settings every proxy applies (Istio's meshConfig), set on pilot and carried by every push."""

    # meshConfig.outboundTrafficPolicy.mode: what a sidecar does with a host the registry does not know.
    # ALLOW_ANY: pass it through (PassthroughCluster); REGISTRY_ONLY: refuse it, 502 (BlackHoleCluster).
    outbound_traffic_policy: str = ALLOW_ANY
    # meshConfig.defaultConfig.tracing.sampling: the percentage (0..100) of requests without a sampling decision
    # that a sidecar samples when no Telemetry resource sets randomSamplingPercentage (Istio's default: 1)
    trace_sampling: float = 1.0


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
    # The pilot's mesh settings, on every push; None (a pilot older than the field): a delta changes nothing,
    # a snapshot means the defaults.
    mesh: MeshConfig | None = None
    # per registered workload, its sidecar's inbound policy (a sidecar reads the entry with its own id; none yet:
    # it admits nothing); a delta carries the entries that changed and the ids of workloads that left
    security: list[WorkloadSecurity] = []
    removed_security: list[str] = []
    # per registered gateway workload, what it serves (proto/gateway_xds.GatewayListeners, keyed by workload id,
    # as `security`); a delta carries the entries that changed and the ids of removed ones
    gateways: list[GatewayListeners] = []
    removed_gateways: list[str] = []


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
    # the proxy's bus user (`proxy.<credential id>`): the operator asks it on isthmus.proxy.debug.<credential id>
    bus_user: str = ""
    proxy_version: str = ""  # the proxy's Isthmus version (`isthmus version`)
    gateway: bool = False  # a gateway (`isthmus gateway run`), not a sidecar


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
    bus_user: str = ""
    proxy_version: str = ""
    gateway: bool = False


class ProxyStatusRequest(Message):
    """Asks pilot (xds.status) for every proxy's last report; `namespace` None: all. `snapshot_for`: a proxy
    id whose compiled snapshot pilot adds to the reply (`isthmus proxy-status PROXY`'s diff)."""

    namespace: str | None = None
    snapshot_for: str = ""
    # `isthmus x describe service`: a service's FQDN whose compiled cluster (policy, subsets, endpoints with their
    # health) and routes pilot adds to the reply
    host: str = ""


class ProxyStatusReply(Message, omit_defaults=False):
    ok: bool
    version: int = 0  # the config version pilot pushes now: a proxy that ACKed less is STALE
    proxies: list[ProxyStatus] = []
    error: str = ""
    # per kind of config, the version of pilot's last push that changed it: "clusters" and "routes" (the same
    # for every proxy), and per proxy id its own "security" and "gateways" entries (absent: none is sent to it)
    kinds: dict[str, int] = {}
    workload_kinds: dict[str, dict[str, int]] = {}
    # with ProxyStatusRequest.snapshot_for: what pilot would send that proxy (clusters, routes, its security and
    # gateway entries), as JSON text; "" when pilot knows no such proxy
    snapshot: str = ""
    # with ProxyStatusRequest.host: {"cluster": ClusterConfig | null, "route": RouteConfig | null} as JSON text
    service: str = ""
