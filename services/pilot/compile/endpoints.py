"""Services and their endpoints: from registered workloads and from ServiceEntries.

- A registered workload is an endpoint of `<service>.<namespace>.<suffix>` on its service_port,
  reached at its address on its sidecar's inbound port. A registered gateway (Workload.gateway) is an
  endpoint of its service on every Gateway port of `gateway_ports`, reached at the listen port it maps to,
  without a sidecar (no auto mTLS to it); its ports are HTTP-routed service ports (a TCP/TLS server on it
  is reached as an opaque stream only if a ServiceEntry says so).
- A ServiceEntry's hosts get the SE's ports and, as endpoints, its `endpoints` (STATIC, DNS), the
  WorkloadEntries and registered workloads of its namespace that its `workloadSelector` selects, or, for
  DNS/NONE with neither, the host itself on each port.
- A WorkloadEntry/SE endpoint maps service port P to ports[P's name] if set, else P's targetPort,
  else P itself.
A host that a registered service and a ServiceEntry share merges ports and endpoints; when several
ServiceEntries claim a host, the oldest wins (as for DestinationRules and VirtualServices).
Each endpoint carries its auto mTLS inputs (sidecar, identity, auto_mtls: automtls.py says what decides them),
and its workload's name and cluster for Istio's destination_workload / destination_cluster metric labels: a
registered workload's own (Workload.workload_name, else proto.observations.workload_name_of), a WorkloadEntry's
name (as Istio names a WorkloadEntry's workload), none for a ServiceEntry's inline endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from proto.networking import ServicePort, WorkloadEntrySpec
from proto.observations import workload_name_of
from proto.registry import Workload
from proto.xds import Endpoint
from runtime.hostnames import fqdn, service_host
from services.pilot.compile.automtls import endpoint_security
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.state import MeshState, Stored


# Istio's protocols that are not routed as HTTP; a port's protocol is its `protocol`, else its name's prefix
# (`tls-api`); unset or unknown: HTTP, as Isthmus routes it (Istio would sniff)
OPAQUE_PROTOCOLS = frozenset(("TCP", "TLS", "HTTPS", "MONGO", "MYSQL", "REDIS"))


def opaque(port: ServicePort) -> bool:
    return (port.protocol or (port.name or "").split("-", 1)[0]).upper() in OPAQUE_PROTOCOLS


@dataclass
class Service:
    host: str
    ports: set[int] = field(default_factory=set)
    endpoints: list[Endpoint] = field(default_factory=list)
    revision: int = 0  # the highest revision among the inputs that produced it
    service_entry: str = ""  # "ns/name" of the ServiceEntry that claimed the host, if any
    tcp_ports: set[int] = field(default_factory=set)  # ports that are opaque TCP (not HTTP-routed)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def workload_endpoint(w: Workload, ports: dict[int, int], peers: PeerAuthn | None = None,
                      trust_domain: str = "cluster.local") -> Endpoint:
    """A registered workload as an endpoint; `ports`: service port -> port to connect to (its sidecar's
    listener, or a gateway's listen port). A gateway has no sidecar, so no identity is checked and no auto
    mTLS is sent to it (Istio's gateway pods carry no tlsMode label): plaintext unless a DestinationRule says
    ISTIO_MUTUAL."""
    if w.gateway:
        sidecar, identity, auto = False, "", []
    else:
        sidecar, identity, auto = endpoint_security(w.labels, True, w.namespace, w.service_account or "default",
                                                    ports, w.app_ports, peers, trust_domain)
    return Endpoint(address=w.address, ports=ports, labels=dict(w.labels), healthy=w.healthy, workload=w.id,
                    locality=w.locality, sidecar=sidecar, identity=identity, auto_mtls=auto,
                    workload_name=workload_name_of(w.service, w.labels, w.workload_name), cluster=w.cluster)


def entry_endpoint(ep: WorkloadEntrySpec, ports: list[ServicePort], workload: str, namespace: str = "default",
                   peers: PeerAuthn | None = None, trust_domain: str = "cluster.local",
                   workload_name: str = "") -> Endpoint:
    """A WorkloadEntry (`workload_name`: its name), or an endpoint of a ServiceEntry in `namespace`, for the
    ServiceEntry's `ports`."""
    mapping = {}
    for port in ports:
        if port.name and port.name in ep.ports:
            mapping[port.number] = ep.ports[port.name]
        else:
            mapping[port.number] = port.target_port or port.number
    sidecar, identity, auto = endpoint_security(ep.labels, bool(ep.service_account), namespace,
                                                ep.service_account or "", mapping, mapping, peers, trust_domain)
    return Endpoint(address=ep.address or "", ports=mapping, labels=dict(ep.labels), workload=workload,
                    locality=ep.locality or "", weight=ep.weight or 1, sidecar=sidecar, identity=identity,
                    auto_mtls=auto, workload_name=workload_name)


def collect_services(state: MeshState, peers: PeerAuthn | None = None) -> dict[str, Service]:
    """`peers`: the mesh's PeerAuthentications (built from `state` when None), for the endpoints' auto mTLS."""
    peers = peers if peers is not None else PeerAuthn(state)
    services: dict[str, Service] = {}
    for _, (w, revision) in sorted(state.workloads.items()):
        host = service_host(w.service, w.namespace, state.domain_suffix)
        svc = services.get(host) or services.setdefault(host, Service(host))
        svc.revision = max(svc.revision, revision)
        if w.gateway:  # Gateway port -> listen port, every port HTTP-routed (as the sidecar's service port)
            svc.ports.update(w.gateway_ports)
            svc.endpoints.append(workload_endpoint(w, dict(w.gateway_ports), peers, state.trust_domain))
            continue
        svc.ports.add(w.service_port)
        svc.ports.update(w.tcp_ports)  # opaque TCP service ports, each to its own inbound TCP listener
        svc.tcp_ports.update(w.tcp_ports)
        svc.endpoints.append(workload_endpoint(w, {w.service_port: w.inbound_port, **w.tcp_ports}, peers,
                                               state.trust_domain))
    for stored in state.of_kind("ServiceEntry"):
        _add_service_entry(state, stored, services, peers)
    return services


def _add_service_entry(state: MeshState, stored: Stored, services: dict[str, Service], peers: PeerAuthn) -> None:
    se = stored.resource
    spec, namespace = se.spec, se.metadata.namespace
    selected, revision = _selected_endpoints(state, stored, peers)
    if spec.location == "MESH_EXTERNAL":  # never auto mTLS outside the mesh (Istio: meshExternal)
        selected = [msgspec.structs.replace(ep, auto_mtls=[]) if ep.auto_mtls else ep for ep in selected]
    for written in spec.hosts:
        host = fqdn(written, namespace, state.domain_suffix)
        svc = services.get(host)
        if svc is not None and svc.service_entry:
            continue  # an older ServiceEntry owns this host
        if svc is None:
            svc = services[host] = Service(host)
        svc.service_entry = stored.source
        svc.ports.update(p.number for p in spec.ports)
        svc.tcp_ports.update(p.number for p in spec.ports if opaque(p))
        svc.revision = max(svc.revision, revision)
        if selected or spec.endpoints is not None or spec.workload_selector is not None:
            svc.endpoints.extend(selected)
        elif (spec.resolution or "NONE") in ("DNS", "NONE"):
            ports = {p.number: p.target_port or p.number for p in spec.ports}
            svc.endpoints.append(Endpoint(address=written.lower(), ports=ports,
                                          workload=f"ServiceEntry {stored.source}"))


def _selected_endpoints(state: MeshState, stored: Stored, peers: PeerAuthn) -> tuple[list[Endpoint], int]:
    """The SE's own endpoints plus those its workloadSelector selects, and the highest input revision."""
    spec, namespace = stored.resource.spec, stored.resource.metadata.namespace
    revision = stored.revision
    td = state.trust_domain
    found = [entry_endpoint(ep, spec.ports, f"ServiceEntry {stored.source}", namespace, peers, td)
             for ep in spec.endpoints or [] if ep.address]
    if spec.workload_selector is None:
        return found, revision
    selector = spec.workload_selector.labels
    for entry in state.of_kind("WorkloadEntry"):
        we = entry.resource
        if we.metadata.namespace == namespace and we.spec.address and selects(selector, we.spec.labels):
            found.append(entry_endpoint(we.spec, spec.ports, f"WorkloadEntry {entry.source}", namespace, peers, td,
                                        we.metadata.name))
            revision = max(revision, entry.revision)
    for _, (w, w_revision) in sorted(state.workloads.items()):
        if w.namespace == namespace and selects(selector, w.labels):
            # a port the workload serves as opaque TCP goes to its inbound TCP listener, the rest to its HTTP one
            ports = {p.number: (w.gateway_ports.get(p.number, p.number) if w.gateway
                                else w.tcp_ports.get(p.number, w.inbound_port)) for p in spec.ports}
            found.append(workload_endpoint(w, ports, peers, td))
            revision = max(revision, w_revision)
    return found, revision
