"""The peer's identity on an mTLS connection as Istio's principals name it.

Istio's principal for spiffe://cluster.local/ns/default/sa/sleep is `cluster.local/ns/default/sa/sleep`
(istio.io/latest/docs/reference/config/security/authorization-policy/#Source); read once per connection
after the handshake, never per request. The SPIFFE ID itself is read by proxy/identity/tls.py.
"""

from __future__ import annotations

import asyncio

from proxy.identity.spiffe import PREFIX
from proxy.identity.tls import peer_identity


def peer_principal(transport: asyncio.BaseTransport) -> str | None:
    """`<trust-domain>/ns/<ns>/sa/<sa>` of the peer on a TLS transport, else None (plaintext, or a peer
    without exactly one SPIFFE ID)."""
    if transport.get_extra_info("ssl_object") is None:
        return None
    found = peer_identity(transport.get_extra_info("peercert"))
    return found[len(PREFIX):] if found.startswith(PREFIX) and "," not in found else None
