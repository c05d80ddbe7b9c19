"""Auto mTLS inputs of one endpoint (Istio's enableAutoMtls, which Isthmus always has on).

    endpoint_security(labels, default_sidecar, namespace, service_account, workload_ports, peers, trust_domain)
        -> {"sidecar", "identity", "auto_mtls"}  (Endpoint keyword arguments)

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

from typing import Any

from proto.xds import MTLS_DISABLE
from services.pilot.compile.peer_authn import PeerAuthn

TLS_MODE_LABEL = "security.istio.io/tlsMode"
ISTIO_TLS_MODE = "istio"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def endpoint_security(labels: dict[str, str], default_sidecar: bool, namespace: str, service_account: str,
                      workload_ports: dict[int, int], peers: PeerAuthn | None, trust_domain: str) -> dict[str, Any]:
    """`workload_ports`: service port -> the workload port it reaches (what portLevelMtls names)."""
    label = labels.get(TLS_MODE_LABEL)
    sidecar = default_sidecar if label is None else label == ISTIO_TLS_MODE
    if not sidecar:
        return {}
    effective = peers.resolve(namespace, labels) if peers is not None else None
    auto = sorted(port for port, target in workload_ports.items()
                  if effective is None or effective.mode_for(target) != MTLS_DISABLE)
    identity = spiffe_id(trust_domain, namespace, service_account) if service_account else ""
    return {"sidecar": True, "identity": identity, "auto_mtls": auto}
