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
    method: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: int | None = None


class HTTPRoute(IstioStruct):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None


class VirtualServiceSpec(IstioStruct):
    hosts: list[str] = []
    gateways: list[str] | None = None
    http: list[HTTPRoute] = []


class LoadBalancerSettings(IstioStruct):
    simple: str | None = None


class TrafficPolicy(IstioStruct):
    load_balancer: LoadBalancerSettings | None = None


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
