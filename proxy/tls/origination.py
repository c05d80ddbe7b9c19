"""Mutual TLS from the client sidecar to the endpoint's sidecar (Istio's ISTIO_MUTUAL and auto mTLS).

The client presents its workload certificate and checks that the server's chain leads to a root of the
trust bundle and that the server's SPIFFE ID is the one the endpoint registered with; a sidecar that
answers with another identity is refused (Envoy: the connection fails its SAN match; response flag UF) and a
log line says which identity was expected and which was found. Host names are not checked: a workload's
identity is its SPIFFE ID, not a DNS name (Istio's SAN-only verification).

Per connection, never per request: pooled connections are keyed by the identity they were verified for, so
a connection verified for one identity never carries a request meant for another.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import structlog

from proxy.identity.tls import check_peer_identity
from proxy.tls.transport import connect_checked

log = structlog.get_logger("proxy.tls")


class TlsOrigination:
    """How to open a connection to one endpoint: `context()` gives the current client context (None while
    this workload has no certificate); `expected_id` is the endpoint's SPIFFE ID; `sni` is sent as the
    server name when set (DestinationRule tls.sni, else Istio's `outbound_.<port>_.<subset>_.<host>`), never
    checked against the server's certificate. `key` tells pooled connections apart."""

    __slots__ = ("context", "expected_id", "sni", "key")

    def __init__(self, context: Callable[[], ssl.SSLContext | None], expected_id: str, sni: str = "") -> None:
        self.context = context
        self.expected_id = expected_id
        self.sni = sni
        self.key = ("mtls", expected_id, sni)

    async def connect(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol],
                      address: str, port: int, timeout: float) -> tuple[asyncio.BaseTransport, Any]:
        """A connection to address:port over this TLS, its peer checked (proxy/tls/transport.connect_checked)."""
        return await connect_checked(loop, factory, address, port, self, timeout)

    def check(self, peercert: dict[str, Any] | None, endpoint: str) -> None:
        """check_peer on the peer's decoded certificate (a transport's get_extra_info("peercert")):
        PeerIdentityMismatch unless it is ours."""
        check_peer(peercert, self, endpoint)


class PeerIdentityMismatch(ssl.SSLError):
    """The server's certificate is valid for the bundle but names another workload."""


def check_peer(peercert: dict[str, Any] | None, tls: TlsOrigination, endpoint: str) -> None:
    """Raise PeerIdentityMismatch (logged with both identities) unless the peer is `tls.expected_id`."""
    matched, found = check_peer_identity(peercert, tls.expected_id)
    if not matched:
        log.warning("upstream identity mismatch: connection refused", endpoint=endpoint,
                    expected=tls.expected_id, found=found or "no SPIFFE ID")
        raise PeerIdentityMismatch(f"expected {tls.expected_id}, found {found or 'no SPIFFE ID'}")
