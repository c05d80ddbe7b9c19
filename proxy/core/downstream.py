"""Who is calling, as the inbound stages see it: the connection's peer (once per connection) and the
request's authenticated JWT (once per request that carries one).

Neutral: imports nothing of the proxy, so the transport, authentication and authorization stages all
depend on it and not on each other.

    Downstream   per connection: Istio's source.principal / source.namespace (mTLS peer, else None / ""),
                 source.ip, destination.ip / destination.port (the address the caller reached), connection.sni
    RequestAuth  per request: request.auth.principal (`<iss>/<sub>`), audiences, presenter (azp), claims
"""

from __future__ import annotations

from typing import Any


class Downstream:
    """The caller on one inbound connection. `principal` is `<trust-domain>/ns/<ns>/sa/<sa>` from the peer's
    mTLS certificate (proxy/tls/peer.py), None for a plaintext caller, so rules on principals and namespaces
    never match it (istio/istio#21259); `namespace` is the <ns> of the principal ("" without one)."""

    __slots__ = ("principal", "namespace", "source_ip", "destination_ip", "destination_port", "sni")

    def __init__(self, principal: str | None = None, source_ip: str = "", destination_ip: str = "",
                 destination_port: int = 0, sni: str = "") -> None:
        self.principal = principal
        self.namespace = namespace_of(principal)
        self.source_ip = source_ip
        self.destination_ip = destination_ip
        self.destination_port = destination_port
        self.sni = sni


def namespace_of(principal: str | None) -> str:
    """`ns` of `<td>/ns/<ns>/sa/<sa>`; "" for None or another shape."""
    if not principal:
        return ""
    parts = principal.split("/")
    return parts[2] if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa" else ""


PLAINTEXT = Downstream()  # an unknown caller without a certificate (tests, the outbound listener)


class RequestAuth:
    """A request's verified JWT (RequestAuthentication): principal `<iss>/<sub>`, audiences (`aud`, a
    list), presenter (`azp`, "" when absent) and the whole claim set (nested objects kept as they are)."""

    __slots__ = ("principal", "audiences", "presenter", "claims")

    def __init__(self, principal: str, audiences: list[str], presenter: str, claims: dict[str, Any]) -> None:
        self.principal = principal
        self.audiences = audiences
        self.presenter = presenter
        self.claims = claims
