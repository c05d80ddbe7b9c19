"""The sidecar's TLS source for the outbound stages: turns the per-endpoint decision of
proxy/outbound/upstream_tls.py into a TlsOrigination, once per endpoint and port per push.

ISTIO_MUTUAL: the workload certificate (`provider.current.client`, read per new connection, so a renewal
applies to the next connection and open ones keep theirs), the server held to the DestinationRule's first
`subjectAltNames` entry when set, else to the SPIFFE ID the endpoint registered with (Istio's SAN for auto
mTLS); `sni` as the DestinationRule sets it, else the cluster's own name as Istio sends it
(`outbound_.<port>_.<subset>_.<host>`, proxy/outbound/upstream_tls.istio_sni, passed in once per cluster port).
One origination per distinct (identity, sni), shared by every endpoint of a cluster (subset, port) that presents
that identity, so their connections pool by identity and cluster, and nothing is built per request.

SIMPLE and MUTUAL (services outside the mesh): proxy/tls/external.py, one context per distinct settings, built
when the push that names them is applied (`problem`, which ConfigState calls to NACK a push whose files
cannot be loaded) and reused by every endpoint and later push with the same settings.
"""

from __future__ import annotations

import ssl

from proto.xds import TLS_ISTIO_MUTUAL, TLS_MUTUAL, TLS_SIMPLE, ClientTls, Endpoint
from proxy.identity.tls import TlsProvider
from proxy.tls.external import ExternalTls, external_context
from proxy.tls.origination import TlsOrigination

MAX_ORIGINATIONS = 4096  # distinct (identity, sni) pairs held; past it the cache starts over (bounded memory)


class UpstreamTls:
    """`originate(tls, endpoint, sni)` for ConfigState.originate (proxy/outbound/upstream_tls.Originate)."""

    def __init__(self, provider: TlsProvider) -> None:
        self.provider = provider
        self._made: dict[tuple[str, str], TlsOrigination] = {}
        self._external: dict[tuple[object, ...], ExternalTls] = {}  # by settings (_settings)

    def problem(self, tls: ClientTls) -> str:
        """"" when `tls` can be originated; else why not (a SIMPLE/MUTUAL file that cannot be loaded), for a
        NACK. Builds and keeps the context of SIMPLE and MUTUAL settings, once per distinct settings."""
        if tls.mode not in (TLS_SIMPLE, TLS_MUTUAL) or _settings(tls) in self._external:
            return ""
        try:
            context = external_context(tls)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return f"tls {tls.mode}: cannot load its certificate files: {exc}"
        if len(self._external) >= MAX_ORIGINATIONS:
            self._external.clear()
        self._external[_settings(tls)] = ExternalTls(tls, context)
        return ""

    def client_context(self) -> ssl.SSLContext | None:
        current = self.provider.current
        return current.client if current is not None else None

    def originate(self, tls: ClientTls, endpoint: Endpoint, sni: str = "") -> TlsOrigination:
        """ISTIO_MUTUAL: a TlsOrigination sending `tls.sni`, else `sni` (the cluster's default, "" for none);
        SIMPLE, MUTUAL: the ExternalTls `problem` built when the push was applied (built here if it was not),
        with only its own `sni`, as Istio. Raises ValueError for another mode or files that cannot be loaded
        (refused at apply before this)."""
        if tls.mode in (TLS_SIMPLE, TLS_MUTUAL):
            external = self._external.get(_settings(tls))
            if external is None:
                problem = self.problem(tls)
                if problem:
                    raise ValueError(problem)
                external = self._external[_settings(tls)]
            return external  # type: ignore[return-value]
        if tls.mode != TLS_ISTIO_MUTUAL:
            raise ValueError(f"tls mode {tls.mode} is not originated by this sidecar")
        expected = tls.subject_alt_names[0] if tls.subject_alt_names else endpoint.identity
        key = (expected, tls.sni or sni)
        made = self._made.get(key)
        if made is None:
            if len(self._made) >= MAX_ORIGINATIONS:
                self._made.clear()
            made = self._made[key] = TlsOrigination(self.client_context, expected, key[1])
        return made


def _settings(tls: ClientTls) -> tuple[object, ...]:
    return (tls.mode, tls.ca_certificates, tls.client_certificate, tls.private_key, tuple(tls.subject_alt_names),
            tls.sni, tls.insecure_skip_verify)
