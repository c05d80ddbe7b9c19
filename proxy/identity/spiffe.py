"""SPIFFE IDs as Istio forms them: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`
(istio.io/latest/docs/concepts/security/#istio-identity)."""

from __future__ import annotations

from cryptography import x509

PREFIX = "spiffe://"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """`spiffe://cluster.local/ns/default/sa/reviews`."""
    return f"{PREFIX}{trust_domain}/ns/{namespace}/sa/{service_account}"


def cert_spiffe_ids(cert: x509.Certificate) -> list[str]:
    """The certificate's URI SANs that are SPIFFE IDs (a workload certificate from the ca holds exactly one)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [uri for uri in san.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith(PREFIX)]


def peer_spiffe_ids(peercert: dict | None) -> list[str]:  # type: ignore[type-arg]
    """The SPIFFE URI SANs of a verified peer as `ssl.SSLObject.getpeercert()` gives them (no parsing:
    the stdlib decoded them during the handshake)."""
    if not peercert:
        return []
    return [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI" and value.startswith(PREFIX)]
