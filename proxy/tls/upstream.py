"""The sidecar's TLS source for the outbound stages: turns the per-endpoint decision of
proxy/outbound/upstream_tls.py into a TlsOrigination, once per endpoint and port per push.

ISTIO_MUTUAL: the workload certificate (`provider.current.client`, read per new connection, so a renewal
applies to the next connection and open ones keep theirs), the server held to the DestinationRule's first
`subjectAltNames` entry when set, else to the SPIFFE ID the endpoint registered with (Istio's SAN for auto
mTLS); `sni` as the DestinationRule sets it. One origination per distinct (identity, sni), shared by every
endpoint that presents it, so their connections pool by identity and nothing is built per request.
"""

from __future__ import annotations

import ssl

from proto.xds import TLS_ISTIO_MUTUAL, ClientTls, Endpoint
from proxy.identity.tls import TlsProvider
from proxy.tls.origination import TlsOrigination

MAX_ORIGINATIONS = 4096  # distinct (identity, sni) pairs held; past it the cache starts over (bounded memory)


class UpstreamTls:
    """`originate(tls, endpoint)` for ConfigState.originate (proxy/outbound/upstream_tls.Originate)."""

    def __init__(self, provider: TlsProvider) -> None:
        self.provider = provider
        self._made: dict[tuple[str, str], TlsOrigination] = {}

    def client_context(self) -> ssl.SSLContext | None:
        current = self.provider.current
        return current.client if current is not None else None

    def originate(self, tls: ClientTls, endpoint: Endpoint) -> TlsOrigination:
        """Raises ValueError for a mode it cannot originate (SIMPLE, MUTUAL: refused at apply before this)."""
        if tls.mode != TLS_ISTIO_MUTUAL:
            raise ValueError(f"tls mode {tls.mode} is not originated by this sidecar")
        expected = tls.subject_alt_names[0] if tls.subject_alt_names else endpoint.identity
        key = (expected, tls.sni)
        made = self._made.get(key)
        if made is None:
            if len(self._made) >= MAX_ORIGINATIONS:
                self._made.clear()
            made = self._made[key] = TlsOrigination(self.client_context, expected, tls.sni)
        return made
