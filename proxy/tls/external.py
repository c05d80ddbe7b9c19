"""TLS to services outside the mesh: DestinationRule `tls` SIMPLE and MUTUAL, with certificate files.

    external_context(tls) -> ssl.SSLContext                 OSError / ssl.SSLError / ValueError: refuse the push
    ExternalTls(tls, context)                               the origination a Target carries (duck-typed as
                                                            proxy/tls/origination.TlsOrigination)

As Istio's ClientTLSSettings: SIMPLE verifies the server against `caCertificates` (unset: the system's trust
store, Istio's VERIFY_CERTIFICATE_AT_CLIENT) unless `insecureSkipVerify`; MUTUAL also presents
`clientCertificate` with `privateKey`. `sni` is sent as the server name. The server's certificate must carry one of
`subjectAltNames` (DNS, URI or IP entries) when they are given, else the `sni` as a host name when it is set,
else only its chain is checked (Envoy's SAN matchers as Istio sets them). TLS 1.2 minimum. Files are read once,
when the push that names them is applied; a file that cannot be read refuses the push (NACK), so traffic never
goes out in plaintext or with a half-built context.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from typing import Any

import structlog

from proto.xds import TLS_MUTUAL, ClientTls
from proxy.tls.transport import connect_checked

log = structlog.get_logger("proxy.tls")


def external_context(tls: ClientTls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        if tls.ca_certificates:
            context.load_verify_locations(cafile=tls.ca_certificates)
        else:
            context.load_default_certs()
        context.check_hostname = bool(tls.sni) and not tls.subject_alt_names
    if tls.mode == TLS_MUTUAL:
        context.load_cert_chain(tls.client_certificate, tls.private_key)
    return context


def _names(cert: dict[str, Any]) -> list[str]:
    return [str(value) for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "URI", "IP Address")]


def _matches(name: str, wanted: str) -> bool:
    if name == wanted:
        return True
    try:
        return ipaddress.ip_address(name) == ipaddress.ip_address(wanted)
    except ValueError:
        return name.startswith("*.") and wanted.count(".") >= 2 and wanted.split(".", 1)[1] == name[2:]


class ExternalTls:
    """SIMPLE or MUTUAL TLS to one DestinationRule's servers; its connections pool apart by its settings."""

    __slots__ = ("_context", "expected_id", "sni", "key", "sans")

    def __init__(self, tls: ClientTls, context: ssl.SSLContext) -> None:
        self._context = context
        self.expected_id = ""
        self.sni = tls.sni
        self.sans = tuple(tls.subject_alt_names)
        self.key = ("tls", tls.mode, tls.ca_certificates, tls.client_certificate, tls.sni, self.sans,
                    tls.insecure_skip_verify)

    def context(self) -> ssl.SSLContext:
        return self._context

    async def connect(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol],
                      address: str, port: int, timeout: float) -> tuple[asyncio.BaseTransport, Any]:
        """A connection to address:port over this TLS, its peer checked (proxy/tls/transport.connect_checked)."""
        return await connect_checked(loop, factory, address, port, self, timeout)

    def check(self, peercert: dict[str, Any] | None, endpoint: str) -> None:
        """Raise ssl.SSLError (logged with both) unless the server presents one of the subjectAltNames;
        peercert: the transport's get_extra_info("peercert")."""
        if not self.sans:
            return
        found = _names(peercert or {})
        if any(_matches(name, wanted) for name in found for wanted in self.sans):
            return
        log.warning("upstream certificate names none of the DestinationRule's subjectAltNames: connection refused",
                    endpoint=endpoint, expected=",".join(self.sans), found=",".join(found) or "no SAN")
        raise ssl.SSLError(f"expected one of {', '.join(self.sans)}, found {', '.join(found) or 'no SAN'}")
