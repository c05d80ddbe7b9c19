"""Istio's standard metric labels, as this sidecar fills them (proto.observations.HTTP_LABELS order).

    LocalWorkload          this sidecar's own workload: the source_* labels of what it sends (reporter=source,
                           the outbound listener), the destination_* labels of what it receives (reporter=destination)
    outbound(...)          label values of a request / connection this sidecar sent to an endpoint
    inbound(...)           label values of a request / connection this sidecar received
    tcp_values(values)     the same values in TCP_LABELS order

Each function returns every label value of one peer (the far side of a call) in HTTP_LABELS order, with
response_code and response_flags left "" (filled per series: proxy/telemetry/metrics.py). They run once per
endpoint, connection or peer metadata value, never per request. Values follow Istio's stats filter
(istio/proxy source/extensions/filters/http/istio_stats/istio_stats.cc, populatePeerInfo):

- reporter=source: source_principal is this workload's SPIFFE ID when the upstream connection is mutual TLS
  (Envoy's local SAN of the upstream connection), else "unknown"; destination_* come from the Endpoint pilot
  pushed (workload_name, cluster, identity = destination_principal, labels app/version); destination_service
  is the cluster's host (FQDN), destination_service_name/namespace its `<name>.<namespace>.svc.<suffix>`
  parts (another host, e.g. a ServiceEntry's: name = the host, namespace "unknown"). connection_security_policy
  is "unknown", as Istio's client side always reports it (its docs: "set to unknown when report is from source
  since security policy cannot be properly populated"); dashboards read mTLS from reporter=destination.
- reporter=destination: destination_* are this workload, destination_principal its SPIFFE ID on mutual TLS
  (else "unknown"); source_principal the caller's certificate (mutual TLS), source_workload_namespace the
  namespace of that SPIFFE ID, else the peer metadata's; source_workload/app/version/canonical_*/cluster from
  the peer metadata the calling sidecar sent (proxy/telemetry/peer_metadata.py); connection_security_policy
  mutual_tls / none from the connection.
Unknown values are "unknown" (canonical revisions "latest"), grpc_response_status "" (no gRPC status here).
"""

from __future__ import annotations

from proto.observations import (HTTP_LABELS, PeerMetadata, canonical_revision_of, canonical_service_of,
                                workload_name_of)

UNKNOWN = "unknown"
RESPONSE_CODE = HTTP_LABELS.index("response_code")
GRPC_STATUS = HTTP_LABELS.index("grpc_response_status")
RESPONSE_FLAGS = HTTP_LABELS.index("response_flags")
PASSTHROUGH_CLUSTERS = frozenset(("PassthroughCluster", "BlackHoleCluster"))

Values = tuple[str, ...]


class LocalWorkload:
    """This sidecar's workload, as its metrics name it (`proxy run` --service, --namespace, --labels,
    --workload-name, --cluster, --service-account and the trust domain)."""

    __slots__ = ("service", "namespace", "workload", "app", "version", "canonical_service", "canonical_revision",
                 "cluster", "principal", "service_host", "domain_suffix")

    def __init__(self, service: str, namespace: str, labels: dict[str, str], workload_name: str = "",
                 cluster: str = "", service_account: str = "default", trust_domain: str = "cluster.local",
                 domain_suffix: str = "svc.cluster.local") -> None:
        self.service = service
        self.namespace = namespace
        self.workload = workload_name_of(service, labels, workload_name)
        self.app = labels.get("app") or UNKNOWN
        self.version = labels.get("version") or UNKNOWN
        self.canonical_service = canonical_service_of(labels, self.workload)
        self.canonical_revision = canonical_revision_of(labels)
        self.cluster = cluster or UNKNOWN
        self.principal = f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
        self.domain_suffix = domain_suffix
        self.service_host = f"{service}.{namespace}.{domain_suffix}".lower()

    def peer_metadata(self) -> PeerMetadata:
        """What this sidecar tells the sidecars it calls about itself (their source_* labels)."""
        return PeerMetadata(workload=self.workload, namespace=self.namespace, app=self.app, version=self.version,
                            canonical_service=self.canonical_service, canonical_revision=self.canonical_revision,
                            cluster=self.cluster, service=self.service)

    def service_parts(self, host: str) -> tuple[str, str]:
        """(destination_service_name, destination_service_namespace) of a cluster host."""
        suffix = "." + self.domain_suffix
        if host.endswith(suffix):
            name, dot, namespace = host[: -len(suffix)].partition(".")
            if dot and "." not in namespace:
                return name, namespace
        return host, UNKNOWN


def namespace_of_spiffe(identity: str) -> str:
    """<ns> of spiffe://<td>/ns/<ns>/sa/<sa>, "" for another shape."""
    parts = identity.split("/")
    return parts[4] if len(parts) == 7 and parts[3] == "ns" and parts[5] == "sa" else ""


def outbound(me: LocalWorkload, protocol: str, host: str, service_name: str, service_namespace: str,
             endpoint: object = None, mtls: bool = False) -> Values:
    """A call from this workload to `host` (the cluster's FQDN, or what the app asked for when no cluster was
    found), through `endpoint` (a proto.xds.Endpoint, None when none was picked: the sidecar answered itself)."""
    workload = namespace = principal = app = version = cluster = UNKNOWN
    canonical_service, canonical_revision = UNKNOWN, "latest"
    if endpoint is not None:
        labels: dict[str, str] = endpoint.labels  # type: ignore[attr-defined]
        workload = endpoint.workload_name or UNKNOWN  # type: ignore[attr-defined]
        principal = endpoint.identity or UNKNOWN  # type: ignore[attr-defined]
        namespace = namespace_of_spiffe(principal) or (service_namespace if endpoint.workload_name  # type: ignore[attr-defined]
                                                       and service_namespace != UNKNOWN else UNKNOWN)
        app = labels.get("app") or UNKNOWN
        version = labels.get("version") or UNKNOWN
        canonical_service = canonical_service_of(labels, workload)
        canonical_revision = canonical_revision_of(labels)
        cluster = endpoint.cluster or UNKNOWN  # type: ignore[attr-defined]
    return ("source", me.workload, me.namespace, me.principal if mtls else UNKNOWN, me.app, me.version,
            me.canonical_service, me.canonical_revision, me.cluster,
            workload, namespace, principal, app, version, host or UNKNOWN, service_name or UNKNOWN,
            service_namespace or UNKNOWN, canonical_service, canonical_revision, cluster,
            protocol, "", "", "", UNKNOWN)


def inbound(me: LocalWorkload, protocol: str, principal: str | None, peer: PeerMetadata | None) -> Values:
    """A call to this workload from a caller whose mTLS principal is `principal` (`<td>/ns/<ns>/sa/<sa>`, None
    for plaintext) and whose sidecar sent `peer` (None when it sent none, or none that could be read)."""
    spiffe = f"spiffe://{principal}" if principal else UNKNOWN
    namespace = namespace_of_spiffe(spiffe) if principal else ""
    if peer is not None:
        source = (peer.workload or UNKNOWN, namespace or peer.namespace or UNKNOWN, spiffe, peer.app or UNKNOWN,
                  peer.version or UNKNOWN, peer.canonical_service or UNKNOWN, peer.canonical_revision or "latest",
                  peer.cluster or UNKNOWN)
    else:
        source = (UNKNOWN, namespace or UNKNOWN, spiffe, UNKNOWN, UNKNOWN, UNKNOWN, "latest", UNKNOWN)
    return ("destination", *source,
            me.workload, me.namespace, me.principal if principal else UNKNOWN, me.app, me.version, me.service_host,
            me.service, me.namespace, me.canonical_service, me.canonical_revision, me.cluster,
            protocol, "", "", "", "mutual_tls" if principal else "none")


def tcp_values(values: Values) -> Values:
    """HTTP_LABELS-ordered values in TCP_LABELS order (without response_code and grpc_response_status)."""
    return values[:RESPONSE_CODE] + values[GRPC_STATUS + 1:]
