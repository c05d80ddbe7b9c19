"""Which SSLContext a gateway's TLS handshake gets: per Gateway port, the SNI picks the server, the server its
context. Contexts are built once per change (push, credential rotation, workload certificate), never per
connection; a handshake reads one attribute.

    contexts = ServerContexts(provider, secrets)     secrets: a SecretClient (proxy/gateway/secret_client.py)
    contexts.apply(compiled)                         after each push: want() its credentialNames, build contexts
    contexts.for_port(port)(sni) -> SSLContext|None  the TlsAcceptor's context callback (by_sni)

A credentialName server whose secret is missing (not stored, not readable, not yet fetched) has no context:
its handshakes fail with a handshake_failure alert, as Envoy's filter chain without its SDS secret, while the
port's other servers keep serving. A rotated credential (SecretClient's listeners) gets a new context at once;
open connections keep the one they began with. ISTIO_MUTUAL servers use the workload certificate's server
context (client certificate required, the mesh trust bundle: proxy/identity/tls.py) as the agent rotates it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec

from proxy.gateway.compiled import CompiledGateway, TlsServer
from proxy.gateway.hosts import pick_by_name
from proxy.gateway.tls_context import server_context
from runtime.log import get_logger

log = get_logger("proxy.gateway")


class Credential(Protocol):
    """proxy/gateway/secret_client.TlsCredential, as read here."""

    name: str
    version: int
    cert_chain_pem: str
    key_pem: str
    ca_cert_pem: str
    ca_version: int  # the `-cacert` companion's version its CA came from, else 0


class Secrets(Protocol):
    """proxy/gateway/secret_client.SecretClient, as used here."""

    current: dict[str, Any]
    missing: set[str]
    listeners: list[Callable[[], None]]

    def want(self, wanted: Iterable[str]) -> None: ...


class CertificateSource(Protocol):
    current: Any  # proxy.identity.tls.TlsContexts | None


def _key(server: TlsServer) -> bytes:
    """A server's TLS settings as bytes: an unchanged server keeps the context built for its credential."""
    return msgspec.json.encode(server.server.tls)


class ServerContexts:
    def __init__(self, provider: CertificateSource, secrets: Secrets | None = None) -> None:
        self.provider = provider
        self.secrets = secrets
        self.compiled: CompiledGateway | None = None
        self.errors: dict[str, str] = {}  # credentialName -> why its context could not be built
        if secrets is not None:
            secrets.listeners.append(self.refresh)

    def apply(self, compiled: CompiledGateway | None) -> None:
        """A push was applied: keep the contexts already built for unchanged credentials, build the rest."""
        old = self.compiled
        if old is not None and compiled is not None and compiled is not old:
            built = {_key(s): s for p in old.ports.values() for s in p.tls_servers() if s.credential}
            for port in compiled.ports.values():
                for server in port.tls_servers():
                    before = built.get(_key(server)) if server.credential else None
                    if before is not None:
                        server.context_of_credential = before.context_of_credential
                        server.credential_version = before.credential_version
                        server.credential_ca_version = before.credential_ca_version
        self.compiled = compiled
        if self.secrets is not None:
            self.secrets.want(compiled.credentials() if compiled is not None else set())
        self.refresh()

    def refresh(self) -> None:
        """Build the context of every credential server whose secret changed (or went missing)."""
        compiled = self.compiled
        if compiled is None:
            return
        current = self.secrets.current if self.secrets is not None else {}
        for port in compiled.ports.values():
            for server in port.tls_servers():
                if server.credential:
                    self._build(server, current.get(server.credential))

    def _build(self, server: TlsServer, credential: Credential | None) -> None:
        if credential is None:
            if server.context_of_credential is not None:
                log.warning("credential gone: its server stops serving TLS", credential=server.credential,
                            server=server.where)
            server.context_of_credential, server.credential_version, server.credential_ca_version = None, -1, -1
            return
        # the primary's version and its companion's: a `-cacert` secret created or rotated alone rebuilds too
        stamp = (credential.version, credential.ca_version)
        if stamp == (server.credential_version, server.credential_ca_version):
            return
        assert server.server.tls is not None
        server.credential_version, server.credential_ca_version = stamp
        try:
            server.context_of_credential = server_context(server.server.tls, credential.cert_chain_pem,
                                                          credential.key_pem, credential.ca_cert_pem, server.where)
            self.errors.pop(server.credential, None)
        except ValueError as exc:  # a secret OpenSSL refuses: that server does not serve, the others do
            server.context_of_credential = None
            self.errors[server.credential] = str(exc)
            log.warning("credential cannot be used", credential=server.credential, error=str(exc))

    def context(self, server: TlsServer) -> ssl.SSLContext | None:
        if server.fixed is not None:
            return server.fixed
        if server.istio:
            current = self.provider.current
            return current.server if current is not None else None
        return server.context_of_credential

    def for_port(self, port: int) -> Callable[[str], ssl.SSLContext | None]:
        """The per-connection callback of the listener serving Gateway port `port`."""
        def pick(sni: str) -> ssl.SSLContext | None:
            compiled = self.compiled
            entry = compiled.ports.get(port) if compiled is not None else None
            if entry is None or not entry.tls:
                return None
            server = pick_by_name(entry.servers, sni, entry.default)
            return self.context(server) if server is not None else None
        return pick

    def dump(self) -> dict[str, Any]:
        """/config_dump: per TLS server, where its certificate comes from and whether it can serve now."""
        compiled = self.compiled
        out: list[dict[str, Any]] = []
        for port in (compiled.ports.values() if compiled is not None else ()):
            for server in port.tls_servers():
                source = ("credential " + server.credential if server.credential else
                          "workload certificate" if server.istio else "files")
                out.append({"port": port.port, "hosts": server.server.hosts, "mode": server.server.tls.mode  # type: ignore[union-attr]
                            , "certificate": source, "serving": self.context(server) is not None,
                            **({"error": self.errors[server.credential]} if server.credential in self.errors else {})})
        return {"servers": out}
