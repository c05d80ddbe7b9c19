"""subjectAltNames of a MUTUAL / OPTIONAL_MUTUAL server: the client certificate must carry one of them.

    checked_protocol(allowed) -> a HttpProxyProtocol subclass that closes a connection whose client
                                 certificate (verified by the handshake) carries none of the names

Envoy checks them in the handshake (match_typed_subject_alt_names: the handshake fails, `certificate verify
failed`); Python's ssl has no verify callback, so here the handshake completes and the connection is closed
at once, before a byte of it is read (the client sees the connection closed, never an answer). A SAN of any
type (DNS, URI, email, IP) that equals a name passes. With OPTIONAL_MUTUAL, a client that sent no certificate
is not checked (Envoy's behaviour: the names apply to a certificate that is presented). Only ports with such
a server pay for it: once per connection, a cached SNI lookup and a look at the decoded certificate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.http.server import HttpProxyProtocol
from runtime.log import get_logger

log = get_logger("proxy.gateway")

Allowed = Callable[[str], "tuple[list[str], bool] | None"]  # SNI -> (names, certificate required) or None


def peer_names(peercert: dict | None) -> set[str]:  # type: ignore[type-arg]
    return {value for _, value in (peercert or {}).get("subjectAltName", ())}


def checked_protocol(allowed: Allowed) -> type[HttpProxyProtocol]:
    class SanChecked(HttpProxyProtocol):
        __slots__ = ()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            rule = allowed(self.sni)
            if rule is not None and rule[0]:
                peercert = transport.get_extra_info("peercert")
                if (peercert or rule[1]) and not peer_names(peercert) & set(rule[0]):
                    log.info("client certificate refused: none of the server's subjectAltNames",
                             sni=self.sni[:253])
                    transport.abort()
                    return
            super().connection_made(transport)
    return SanChecked
