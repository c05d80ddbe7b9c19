"""Istio networking.istio.io resources, the subset Isthmus supports today.

Fields not declared here are rejected at decode time (IstioStruct forbids unknown fields), which is
how "not supported yet" reaches the user with the field's path. Enumerations are plain strings checked
by the validator, so its message can say which values are supported.
"""

from __future__ import annotations

from proto.base import IstioStruct


class StringMatch(IstioStruct):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class PortSelector(IstioStruct):
    number: int


class Destination(IstioStruct):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class HeaderOperations(IstioStruct):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(IstioStruct):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPRouteDestination(IstioStruct):
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


class HTTPMatchRequest(IstioStruct):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: int | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] | None = None
    source_namespace: str | None = None


class Percent(IstioStruct):
    value: float = 0.0


class HTTPRetry(IstioStruct):
    attempts: int = 0
    per_try_timeout: str | None = None  # a Duration ("2s", "250ms")
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None  # unset: true, as Istio's default policy
    backoff: str | None = None  # a Duration: the base interval of the jittered exponential back-off


class FaultDelay(IstioStruct):
    """exponentialDelay is not declared: rejected."""

    fixed_delay: str | None = None
    percentage: Percent | None = None
    percent: int | None = None  # deprecated integer form of percentage


class FaultAbort(IstioStruct):
    """grpcStatus and http2Error are not declared: rejected."""

    http_status: int | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(IstioStruct):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPBody(IstioStruct, rename={"string_": "string", "bytes_": "bytes"}):
    string_: str | None = None
    bytes_: str | None = None  # base64, as protobuf JSON writes bytes


class HTTPDirectResponse(IstioStruct):
    status: int = 0
    body: HTTPBody | None = None


class HTTPRedirect(IstioStruct):
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: str | None = None  # FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT
    scheme: str | None = None
    redirect_code: int | None = None  # unset: 301


class RegexRewrite(IstioStruct):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(IstioStruct):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class CorsPolicy(IstioStruct):
    """unmatchedPreflights is not declared: rejected."""

    allow_origins: list[StringMatch] | None = None
    allow_origin: list[str] | None = None  # deprecated: exact origins
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: str | None = None  # a Duration, whole seconds
    allow_credentials: bool | None = None


class HTTPMirrorPolicy(IstioStruct):
    destination: Destination
    percentage: Percent | None = None  # unset: every request


class HTTPRoute(IstioStruct):
    """mirrorPercent (deprecated integer), delegate, ... are not declared: rejected."""

    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    rewrite: HTTPRewrite | None = None
    headers: Headers | None = None
    cors_policy: CorsPolicy | None = None
    mirror: Destination | None = None
    mirror_percentage: Percent | None = None  # unset: every request
    mirrors: list[HTTPMirrorPolicy] | None = None
    timeout: str | None = None  # a Duration; unset: no timeout
    retries: HTTPRetry | None = None  # unset: Istio's default retry policy
    fault: HTTPFaultInjection | None = None


class L4MatchAttributes(IstioStruct):
    """destinationSubnets is not declared: rejected (a sidecar proxies by name, it has no original destination)."""

    port: int | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None


class RouteDestination(IstioStruct):
    destination: Destination
    weight: int | None = None


class TCPRoute(IstioStruct):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class TLSMatchAttributes(IstioStruct):
    """A tls route's match (Istio's TLSMatchAttributes): the ClientHello's SNI against sniHosts (wildcards as
    the VirtualService's hosts), and the port. destinationSubnets is not declared: rejected."""

    sni_hosts: list[str] = []
    port: int | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None


class TLSRoute(IstioStruct):
    """Unterminated TLS (a PASSTHROUGH gateway server, or a TLS service port), routed by SNI."""

    match: list[TLSMatchAttributes] = []
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(IstioStruct):
    """exportTo is not declared: rejected. `gateways`: unset means `mesh` (every sidecar); names are
    `<gateway>` (the VirtualService's namespace), `<namespace>/<gateway>`, or `mesh`."""

    hosts: list[str] = []
    gateways: list[str] | None = None
    http: list[HTTPRoute] = []
    tls: list[TLSRoute] = []
    tcp: list[TCPRoute] = []


class HTTPCookie(IstioStruct):
    name: str
    path: str | None = None
    ttl: str | None = None  # a Duration: set, the sidecar generates the cookie when absent (0s: a session cookie)


class RingHash(IstioStruct):
    minimum_ring_size: int | None = None


class Maglev(IstioStruct):
    table_size: int | None = None


class ConsistentHashLB(IstioStruct):
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: Maglev | None = None
    minimum_ring_size: int | None = None  # deprecated by Istio in favour of ringHash.minimumRingSize


class LocalityFailover(IstioStruct, rename={"from_": "from"}):
    from_: str | None = None
    to: str | None = None


class LocalityLoadBalancerSetting(IstioStruct):
    failover: list[LocalityFailover] | None = None
    enabled: bool | None = None


class LoadBalancerSettings(IstioStruct):
    simple: str | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None


class TcpKeepalive(IstioStruct):
    probes: int | None = None  # unset: the OS's (Linux: 9)
    time: str | None = None  # a Duration, whole seconds; unset: the OS's (Linux: 7200s)
    interval: str | None = None  # a Duration, whole seconds; unset: the OS's (Linux: 75s)


class TCPSettings(IstioStruct):
    max_connections: int | None = None
    connect_timeout: str | None = None  # a Duration
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: str | None = None  # a Duration
    idle_timeout: str | None = None  # a Duration: opaque TCP connections; unset 1h, 0s: none


class HTTPSettings(IstioStruct):
    """connectionPool.http. Not declared, so rejected: h2UpgradePolicy, useClientProtocol, maxConcurrentStreams
    (Isthmus's upstreams are HTTP/1.1)."""

    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None  # requests in flight or waiting, on HTTP/1.1 too (as Istio says)
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: str | None = None  # a Duration; unset: 1h


class ConnectionPoolSettings(IstioStruct):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


_OUTLIER_NAMES = {"consecutive_5xx_errors": "consecutive5xxErrors",
                  "consecutive_gateway_errors": "consecutiveGatewayErrors", "interval": "interval",
                  "base_ejection_time": "baseEjectionTime", "max_ejection_percent": "maxEjectionPercent",
                  "min_health_percent": "minHealthPercent"}


class OutlierDetection(IstioStruct, rename=_OUTLIER_NAMES):
    """Not declared, so rejected: consecutiveErrors (deprecated), consecutiveLocalOriginFailures,
    splitExternalLocalOriginErrors."""

    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    interval: str | None = None  # a Duration
    base_ejection_time: str | None = None  # a Duration
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


class ClientTLSSettings(IstioStruct):
    """DestinationRule trafficPolicy.tls (Istio's ClientTLSSettings). An unset mode is DISABLE, as Istio's enum.
    The file paths are read by the client's sidecar on its own host. credentialName and caCrl are declared
    only so the validator can refuse them with a reason (services/pilot/validate/client_tls.py)."""

    mode: str | None = None  # DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    credential_name: str | None = None  # refused: no secret store yet
    ca_crl: str | None = None  # refused: not supported yet


class PortTrafficPolicy(IstioStruct):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    tls: ClientTLSSettings | None = None


class RetryBudget(IstioStruct):
    percent: float | None = None  # of active and pending requests; unset: 20
    min_retry_concurrency: int | None = None  # unset: 3
    budget_interval: str | None = None  # a Duration; unset: only requests in flight count


class TrafficPolicy(IstioStruct):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None  # port-level outlierDetection is not declared: rejected
    port_level_settings: list[PortTrafficPolicy] | None = None
    retry_budget: RetryBudget | None = None
    tls: ClientTLSSettings | None = None


class Subset(IstioStruct):
    name: str
    labels: dict[str, str] = {}
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(IstioStruct):
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = []


class WorkloadEntrySpec(IstioStruct):
    address: str | None = None
    ports: dict[str, int] = {}
    labels: dict[str, str] = {}
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None


class ServicePort(IstioStruct):
    number: int
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None


class WorkloadSelector(IstioStruct):
    labels: dict[str, str] = {}


class ServiceEntrySpec(IstioStruct):
    hosts: list[str]
    addresses: list[str] | None = None
    ports: list[ServicePort] = []
    location: str | None = None
    resolution: str | None = None
    endpoints: list[WorkloadEntrySpec] | None = None
    workload_selector: WorkloadSelector | None = None
