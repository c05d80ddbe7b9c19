"""The resource envelope (apiVersion/kind/metadata/spec) and the table of supported kinds."""

from __future__ import annotations

from typing import Any

import msgspec

from proto.base import IstioStruct
from proto.gateway import GatewaySpec
from proto.networking import DestinationRuleSpec, ServiceEntrySpec, VirtualServiceSpec, WorkloadEntrySpec
from proto.ratelimit import RateLimitSpec
from proto.security import AuthorizationPolicySpec, PeerAuthenticationSpec, RequestAuthenticationSpec
from proto.telemetry import TelemetrySpec
from proto.workload_group import WorkloadGroupSpec


class ObjectMeta(IstioStruct):
    name: str = ""
    namespace: str = "default"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    # Written by a Kubernetes API server; accepted so exported YAML applies unchanged, never acted on.
    resource_version: str | None = None
    uid: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    managed_fields: list[Any] | None = None


class Resource(IstioStruct):
    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: Any


class VirtualService(Resource, kw_only=True):
    spec: VirtualServiceSpec


class DestinationRule(Resource, kw_only=True):
    spec: DestinationRuleSpec


class Gateway(Resource, kw_only=True):
    spec: GatewaySpec


class ServiceEntry(Resource, kw_only=True):
    spec: ServiceEntrySpec


class WorkloadEntry(Resource, kw_only=True):
    spec: WorkloadEntrySpec


class WorkloadGroup(Resource, kw_only=True):
    spec: WorkloadGroupSpec


class RateLimit(Resource, kw_only=True):
    spec: RateLimitSpec


class PeerAuthentication(Resource, kw_only=True):
    spec: PeerAuthenticationSpec


class AuthorizationPolicy(Resource, kw_only=True):
    spec: AuthorizationPolicySpec


class RequestAuthentication(Resource, kw_only=True):
    spec: RequestAuthenticationSpec


class Telemetry(Resource, kw_only=True):
    spec: TelemetrySpec


class KindInfo(msgspec.Struct, frozen=True):
    kind: str
    group: str
    versions: tuple[str, ...]
    type: type
    aliases: tuple[str, ...]


NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")
SECURITY_VERSIONS = ("v1", "v1beta1")
TELEMETRY_VERSIONS = ("v1", "v1alpha1")
ISTHMUS_GROUP = "isthmus.io"  # Isthmus's own kinds (RateLimit), not Istio's

KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo("VirtualService", "networking.istio.io", NETWORKING_VERSIONS, VirtualService,
                 ("virtualservice", "virtualservices", "vs")),
        KindInfo("DestinationRule", "networking.istio.io", NETWORKING_VERSIONS, DestinationRule,
                 ("destinationrule", "destinationrules", "dr")),
        KindInfo("Gateway", "networking.istio.io", NETWORKING_VERSIONS, Gateway, ("gateway", "gateways", "gw")),
        KindInfo("ServiceEntry", "networking.istio.io", NETWORKING_VERSIONS, ServiceEntry,
                 ("serviceentry", "serviceentries", "se")),
        KindInfo("WorkloadEntry", "networking.istio.io", NETWORKING_VERSIONS, WorkloadEntry,
                 ("workloadentry", "workloadentries", "we")),
        KindInfo("WorkloadGroup", "networking.istio.io", NETWORKING_VERSIONS, WorkloadGroup,
                 ("workloadgroup", "workloadgroups", "wg")),
        KindInfo("PeerAuthentication", "security.istio.io", SECURITY_VERSIONS, PeerAuthentication,
                 ("peerauthentication", "peerauthentications", "pa")),
        KindInfo("AuthorizationPolicy", "security.istio.io", SECURITY_VERSIONS, AuthorizationPolicy,
                 ("authorizationpolicy", "authorizationpolicies", "ap")),
        KindInfo("RequestAuthentication", "security.istio.io", SECURITY_VERSIONS, RequestAuthentication,
                 ("requestauthentication", "requestauthentications", "ra")),
        KindInfo("Telemetry", "telemetry.istio.io", TELEMETRY_VERSIONS, Telemetry, ("telemetry", "telemetries")),
        KindInfo("RateLimit", ISTHMUS_GROUP, ("v1alpha1",), RateLimit, ("ratelimit", "ratelimits", "rl")),
    )
}

_ALIASES = {alias: info.kind for info in KINDS.values() for alias in (*info.aliases, info.kind.lower())}


def kind_from_alias(text: str) -> str | None:
    """`vs`, `VirtualServices`, `virtualservice` -> `VirtualService`; None when unknown."""
    return _ALIASES.get(text.lower())
