"""Compiled gateway config pushed by pilot: what one gateway workload serves on each Gateway port.

Pilot does Istio's gateway semantics once per push (pilot/pkg/networking/core/gateway.go, model/gateway.go):
it picks the Gateways whose `selector` the registered gateway's labels match, merges their servers per
port, binds the VirtualServices that name those Gateways (`gateways:`) to the servers whose hosts they
intersect (honouring `namespace/` prefixes), keeps only the matches meant for the gateway, and compiles
their http/tcp rules with the same compiler as sidecar routes. The gateway proxy then only looks up:

    per connection   port -> the server its SNI (TLS) picks: exact host, then longest wildcard, then `*`
    per request      (port, Host) -> the VirtualHost, then the RouteConfig's rules as on a sidecar

One GatewayListeners per registered gateway workload, keyed by `workload` (its registration id, which is
the proxy's id), carried by Push.gateways / Push.removed_gateways as WorkloadSecurity is.
"""

from __future__ import annotations

from proto.base import Message
from proto.routes import RouteConfig, TcpRule, WeightedDestination

# Server TLS modes (Istio's ServerTLSSettings.TLSmode)
SERVER_TLS_SIMPLE = "SIMPLE"
SERVER_TLS_MUTUAL = "MUTUAL"
SERVER_TLS_OPTIONAL_MUTUAL = "OPTIONAL_MUTUAL"
SERVER_TLS_PASSTHROUGH = "PASSTHROUGH"
SERVER_TLS_ISTIO_MUTUAL = "ISTIO_MUTUAL"
SERVER_TLS_MODES = (SERVER_TLS_SIMPLE, SERVER_TLS_MUTUAL, SERVER_TLS_OPTIONAL_MUTUAL, SERVER_TLS_PASSTHROUGH,
                    SERVER_TLS_ISTIO_MUTUAL)

GATEWAY_PROTOCOLS = ("HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS")


class ServerTls(Message):
    """A server's TLS, as validated. Certificates: `credential_name` (a secret in the gateway workload's own
    namespace, fetched from the ca's secret store: proto/secrets.py) or the three file paths on the gateway's
    host; ISTIO_MUTUAL uses the gateway's workload certificate and the mesh trust bundle. Versions: Envoy's
    names ("" for TLS_AUTO: TLS 1.2 minimum, 1.3 maximum, Envoy's server defaults)."""

    mode: str = SERVER_TLS_SIMPLE
    https_redirect: bool = False
    credential_name: str = ""
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    subject_alt_names: list[str] = []  # MUTUAL / OPTIONAL_MUTUAL: a client certificate must carry one of these
    min_protocol_version: str = ""
    max_protocol_version: str = ""
    cipher_suites: list[str] = []  # Envoy/BoringSSL names; []: Envoy's defaults


class GatewayServer(Message):
    """One Gateway server on a port. hosts: the dnsName parts ("example.com", "*.example.com", "*"),
    lower-case, namespace prefixes already applied by pilot."""

    gateway: str  # "namespace/name" of the Gateway
    port: int  # the Gateway port number (the gateway proxy maps it to a listen port: `--port LISTEN:PORT`)
    protocol: str  # one of GATEWAY_PROTOCOLS
    hosts: list[str] = []
    name: str = ""
    bind: str = ""
    tls: ServerTls | None = None  # None: plaintext (HTTP, TCP servers; or HTTP with httpsRedirect in tls)


class VirtualHost(Message):
    """HTTP routing for some domains on one port: the VirtualServices bound to the port's servers, their
    rules merged in Istio's order (older VirtualService first). domains: "example.com", "*.example.com" or
    "*" (matched against the Host header without its port, case-insensitively)."""

    domains: list[str]
    route: RouteConfig  # route.source: "namespace/name" of the (first) VirtualService


class TlsRule(Message):
    """A VirtualService tls route at a PASSTHROUGH (or TLS) server: the connection goes, unterminated, to a
    destination picked by weight when its SNI matches `sni_hosts` (wildcards as domains)."""

    sni_hosts: list[str]
    destinations: list[WeightedDestination] = []
    source: str = ""  # "namespace/name" of the VirtualService


class GatewayPortConfig(Message):
    """Everything one gateway serves on one Gateway port: servers (in Gateway then server order), HTTP
    virtual hosts (HTTP/HTTPS/HTTP2/GRPC servers, and TLS-terminated ones), tls routes (PASSTHROUGH servers)
    and tcp routes (TCP servers, and TLS servers that terminate)."""

    port: int
    servers: list[GatewayServer] = []
    virtual_hosts: list[VirtualHost] = []
    tls_routes: list[TlsRule] = []
    tcp_routes: list[TcpRule] = []


class GatewayListeners(Message):
    """The compiled config of one gateway workload (keyed by `workload`, its registration id)."""

    workload: str
    version: int
    namespace: str = ""  # the gateway workload's namespace: where credentialName secrets are looked up
    # the registration it was compiled from, as WorkloadSecurity's (a gateway takes only its own registration's)
    service: str = ""
    service_account: str = ""
    instance: str = ""
    gateways: list[str] = []  # "namespace/name" of every Gateway whose selector picks this workload
    ports: list[GatewayPortConfig] = []
