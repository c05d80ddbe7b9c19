"""Auto mTLS inputs of one endpoint (Istio's enableAutoMtls, which Isthmus always has on).

    endpoint_security(labels, default_sidecar, namespace, service_account, ports, workload_ports, peers,
                      trust_domain) -> (sidecar, identity, auto_mtls)   (Endpoint fields)

What decides it, exactly:
- sidecar: the label `security.istio.io/tlsMode` when present (`istio`: yes, any other value: no); without
  it, a workload registered by an Isthmus proxy has one, and a WorkloadEntry or ServiceEntry endpoint has
  one only when it names a serviceAccount (Istio's getTLSModeFromWorkloadEntry). A ServiceEntry host's own
  name (DNS/NONE without endpoints) never has one.
- identity: with a sidecar and a service account, spiffe://<trust domain>/ns/<namespace>/sa/<account>;
  a registered workload's account defaults to `default`. Empty: no identity to check beyond the trust bundle.
- auto_mtls: the service ports P for which the client sends ISTIO_MUTUAL when no DestinationRule sets tls:
  the endpoint has a sidecar, and the effective PeerAuthentication mode of its workload (namespace and
  labels, services/pilot/compile/peer_authn.py) for the workload port P maps to is not DISABLE. Empty for
  MESH_EXTERNAL ServiceEntries (endpoints.py), as Istio never auto-detects mTLS for mesh-external services.
Istio additionally turns auto mTLS off for a whole service whose namespace-level (or mesh) mode is DISABLE,
even where a workload policy says otherwise (BestEffortInferServiceMTLSMode); Isthmus decides per endpoint
from its own workload's mode, so a STRICT workload in a DISABLE namespace still gets mTLS from its clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from proto.xds import MTLS_DISABLE
from services.pilot.compile.peer_authn import PeerAuthn

TLS_MODE_LABEL = "security.istio.io/tlsMode"
ISTIO_TLS_MODE = "istio"


@lru_cache(maxsize=8192)
def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """One string per identity, shared by every endpoint that has it."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def endpoint_security(labels: dict[str, str], default_sidecar: bool, namespace: str, service_account: str,
                      ports: Mapping[int, int], workload_ports: Mapping[int, int], peers: PeerAuthn | None,
                      trust_domain: str) -> tuple[bool, str, list[int]]:
    """(sidecar, identity, auto_mtls) of an endpoint serving the service ports in `ports`; `workload_ports`:
    service port -> the workload port it reaches, what portLevelMtls names (a port missing there is itself)."""
    label = labels.get(TLS_MODE_LABEL)
    if not (default_sidecar if label is None else label == ISTIO_TLS_MODE):
        return False, "", []
    effective = peers.resolve(namespace, labels) if peers is not None else None
    if effective is None or (not effective.ports and effective.mode != MTLS_DISABLE):
        auto = list(ports)  # every port (the common case: no port-level policy)
    elif not effective.ports:
        auto = []  # DISABLE on every port
    else:
        auto = [port for port in ports if effective.mode_for(workload_ports.get(port, port)) != MTLS_DISABLE]
    if len(auto) > 1:
        auto.sort()
    return True, spiffe_id(trust_domain, namespace, service_account) if service_account else "", auto
