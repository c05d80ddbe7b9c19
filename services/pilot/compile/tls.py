"""DestinationRule trafficPolicy.tls -> ClientTls, per level (top, subset) and per port.

Each level carries its own `tls` and its portLevelSettings' tls by port; proto.xds.dr_tls() merges them for
one (subset, port) the way Istio's MergeSubsetTrafficPolicy does, and client_tls() adds auto mTLS. An unset
mode is DISABLE (Istio's enum default). Inputs have passed validation (validate/client_tls.py).
"""

from __future__ import annotations

from proto.networking import ClientTLSSettings, TrafficPolicy
from proto.xds import TLS_DISABLE, ClientTls


def client_tls(settings: ClientTLSSettings | None) -> ClientTls | None:
    if settings is None:
        return None
    return ClientTls(mode=settings.mode or TLS_DISABLE, client_certificate=settings.client_certificate or "",
                     private_key=settings.private_key or "", ca_certificates=settings.ca_certificates or "",
                     subject_alt_names=list(settings.subject_alt_names or []), sni=settings.sni or "",
                     insecure_skip_verify=bool(settings.insecure_skip_verify))


def level_tls(policy: TrafficPolicy | None) -> tuple[ClientTls | None, dict[int, ClientTls | None]]:
    """(the level's tls, {port: tls of its portLevelSettings entry, None when that entry sets none})."""
    if policy is None:
        return None, {}
    ports = {p.port.number: client_tls(p.tls) for p in policy.port_level_settings or [] if p.port is not None}
    return client_tls(policy.tls), ports
