"""The peer's identity on an mTLS connection: its certificate's SPIFFE ID, as Istio's principals name it.

Istio's principal for spiffe://cluster.local/ns/default/sa/sleep is `cluster.local/ns/default/sa/sleep`
(istio.io/latest/docs/reference/config/security/authorization-policy/#Source); read once per connection
after the handshake, never per request.
"""

from __future__ import annotations

import asyncio
import ssl

SPIFFE = "spiffe://"


def spiffe_id(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The URI SAN of the verified peer certificate that is a SPIFFE ID, or None (no TLS, no peer
    certificate, or none of its URIs is a SPIFFE ID). Istio workload certificates carry exactly one."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "URI" and value.startswith(SPIFFE):
            return value
    return None


def peer_principal(transport: asyncio.BaseTransport) -> str | None:
    """`<trust-domain>/ns/<ns>/sa/<sa>` of the peer on a TLS transport, else None (plaintext)."""
    found = spiffe_id(transport.get_extra_info("ssl_object"))
    return found[len(SPIFFE):] if found is not None else None
