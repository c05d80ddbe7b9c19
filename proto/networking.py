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


class HTTPRouteDestination(IstioStruct):
    destination: Destination
    weight: int | None = None


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
    """Istio's retryRemoteLocalities, retryIgnorePreviousHosts and backoff are not declared: rejected."""

    attempts: int = 0
    per_try_timeout: str | None = None  # a Duration ("2s", "250ms")
    retry_on: str | None = None


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


class HTTPRoute(IstioStruct):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    timeout: str | None = None  # a Duration; unset: no timeout
    retries: HTTPRetry | None = None  # unset: Istio's default retry policy
    fault: HTTPFaultInjection | None = None


class VirtualServiceSpec(IstioStruct):
    hosts: list[str] = []
    gateways: list[str] | None = None
    http: list[HTTPRoute] = []


class HTTPCookie(IstioStruct):
    name: str
    path: str | None = None
    ttl: str | None = None  # accepted by the schema, rejected by the validator: Set-Cookie is not wired yet


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


class PortTrafficPolicy(IstioStruct):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None


class TrafficPolicy(IstioStruct):
    load_balancer: LoadBalancerSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None


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
