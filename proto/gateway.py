"""Istio's Gateway resource (networking.istio.io, v1/v1beta1/v1alpha3), the part Isthmus supports.

istio.io/latest/docs/reference/config/networking/gateway/: a Gateway describes the ports a gateway
workload (picked by `selector` among registered gateways' labels, `istio: ingressgateway` in Istio's own
install) exposes, the hosts each port serves and its TLS settings. VirtualServices bind to it by name
(`spec.gateways`) to route what it receives. Fields not declared here are rejected with their path at
decode (IstioStruct forbids unknown fields): targetPort, defaultEndpoint, caCrl, credentialNames,
tlsCertificates, verifyCertificateSpki/Hash.
"""

from __future__ import annotations

from proto.base import IstioStruct


class GatewayPort(IstioStruct):
    """A server's port. protocol: HTTP, HTTPS, GRPC, HTTP2, TCP or TLS (Istio's MONGO and the rest refused)."""

    number: int
    protocol: str
    name: str | None = None


class ServerTLSSettings(IstioStruct):
    """mode: SIMPLE, MUTUAL, OPTIONAL_MUTUAL, PASSTHROUGH or ISTIO_MUTUAL (AUTO_PASSTHROUGH refused: it needs
    multi-network SNI names). Certificates come from `credentialName` (a secret in the gateway workload's
    namespace, `isthmus create secret tls`) or from files on the gateway's host (serverCertificate,
    privateKey, caCertificates). Protocol versions: TLS_AUTO, TLSV1_0..TLSV1_3 (Envoy's names); cipherSuites
    in Envoy's (BoringSSL's) names, which apply to TLS 1.2 and below."""

    https_redirect: bool | None = None
    mode: str | None = None  # unset: SIMPLE when a certificate is given (Istio's enum default is PASSTHROUGH=0)
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    min_protocol_version: str | None = None
    max_protocol_version: str | None = None
    cipher_suites: list[str] | None = None


class Server(IstioStruct):
    port: GatewayPort
    hosts: list[str] = []  # "[namespace/]dnsName": namespace `*` or `.` (the Gateway's), dnsName `*`, `*.x`
    tls: ServerTLSSettings | None = None
    bind: str | None = None
    name: str | None = None


class GatewaySpec(IstioStruct):
    selector: dict[str, str] = {}
    servers: list[Server] = []
