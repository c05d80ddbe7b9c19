"""SPIFFE IDs as Istio forms them: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`
(istio.io/latest/docs/concepts/security/#istio-identity). A certificate's are read by the X.509 worker
(x509_read.cert_spiffe_ids), a verified peer's from what the TLS handshake decoded."""

from __future__ import annotations

PREFIX = "spiffe://"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """`spiffe://cluster.local/ns/default/sa/reviews`."""
    return f"{PREFIX}{trust_domain}/ns/{namespace}/sa/{service_account}"


def peer_spiffe_ids(peercert: dict | None) -> list[str]:  # type: ignore[type-arg]
    """The SPIFFE URI SANs of a verified peer as `ssl.SSLObject.getpeercert()` gives them (no parsing:
    the stdlib decoded them during the handshake)."""
    if not peercert:
        return []
    return [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI" and value.startswith(PREFIX)]
