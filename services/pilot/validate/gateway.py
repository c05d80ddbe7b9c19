"""Semantic checks of a Gateway (Istio's ValidateGateway, validateServer, validateServerPort, validateServerBind
and validateTLSOptions in pkg/config/validation/validation.go), each problem with its field path.

What Isthmus refuses that Istio accepts, with the reason: protocols other than HTTP, HTTPS, HTTP2, GRPC,
TCP and TLS (MONGO, REDIS, MYSQL, GRPC-WEB, UDP ...: the gateway proxy speaks none of them), tls mode
AUTO_PASSTHROUGH (multi-network SNI routing), unix-socket binds, and cipher suite names outside Istio's list
(Istio warns and drops them; Isthmus's gateway could not honour an expression like `-AES128-SHA` either).
The TLS mode when `tls.mode` is unset is Istio's enum default, PASSTHROUGH, unless a certificate is given
(credentialName or serverCertificate): then SIMPLE (proto/gateway.py); values.effective_mode() says which.
"""

from __future__ import annotations

from proto.gateway import GatewaySpec, Server, ServerTLSSettings
from proto.gateway_xds import GATEWAY_PROTOCOLS, SERVER_TLS_ISTIO_MUTUAL, SERVER_TLS_MODES, SERVER_TLS_PASSTHROUGH, \
    SERVER_TLS_SIMPLE
from services.pilot.validate.checks import DNS1123_LABEL, check_port, host_problem, is_ip
from services.pilot.validate.findings import Findings
from services.pilot.validate.values import effective_mode

TLS_VERSIONS = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
# Istio's ValidCipherSuites (pkg/config/security/security.go): BoringSSL's names Envoy accepts
CIPHER_SUITES = frozenset((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
))
TLS_PROTOCOLS = ("HTTPS", "TLS")  # Istio's IsTLS()
HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC")  # Istio's IsHTTP() among the supported ones


def gateway(spec: GatewaySpec, f: Findings) -> None:
    if f.name and "." in f.name:  # VirtualServices name it `namespace/name`: Istio wants a DNS label
        f.error("metadata.name", f"invalid gateway name `{f.name}`: a Gateway's name must be a DNS-1123 label (no dots)")
    if not spec.selector:
        f.warn("spec.selector", "a Gateway without a selector applies to every gateway workload of the mesh "
                                "(as Istio's); add e.g. `istio: ingressgateway` to pick one")
    if not spec.servers:
        f.error("spec.servers", "gateway must have at least one server")
    names: dict[str, int] = {}
    protocols: dict[int, tuple[str, int]] = {}
    hosts_on_port: dict[tuple[int, str, str], int] = {}
    for i, server in enumerate(spec.servers):
        path = f"spec.servers[{i}]"
        _server(server, path, f)
        port, protocol = server.port, server.port.protocol.upper()
        if port.name:
            if port.name in names:
                f.error(f"{path}.port.name", f"port names in servers must be unique: duplicate name {port.name} "
                                             f"(spec.servers[{names[port.name]}])")
            names.setdefault(port.name, i)
        if server.tls is not None and server.tls.https_redirect and protocol not in HTTP_PROTOCOLS:
            f.warn(f"{path}.tls.httpsRedirect", "tls.httpsRedirect should only be used with http servers")
        # Istio's MergeGateways drops such servers at push time (and logs it); Isthmus refuses them at apply
        first = protocols.setdefault(port.number, (protocol, i))
        if first[0] != protocol and not ({first[0], protocol} <= {"HTTPS", "TLS"}):
            f.error(f"{path}.port.protocol", f"port {port.number} is already {first[0]} in spec.servers[{first[1]}]: "
                                             "one port serves one protocol")
        for j, host in enumerate(server.hosts):
            key = (port.number, *_split(host, ""))
            if key in hosts_on_port and hosts_on_port[key] != i:
                f.error(f"{path}.hosts[{j}]", f"host `{host}` is already served on port {port.number} by "
                                              f"spec.servers[{hosts_on_port[key]}]")
            hosts_on_port.setdefault(key, i)


def _split(host: str, default_ns: str) -> tuple[str, str]:
    ns, slash, name = host.partition("/")
    return (ns, name.lower()) if slash else ("*" if not default_ns else default_ns, host.lower())


def _server(server: Server, path: str, f: Findings) -> None:
    if not server.hosts:
        f.error(f"{path}.hosts", "server config must contain at least one host")
    for j, host in enumerate(server.hosts):
        _server_host(host, f"{path}.hosts[{j}]", f)
    port = server.port
    protocol = port.protocol.upper()
    check_port(port.number, f"{path}.port.number", f)
    if protocol not in GATEWAY_PROTOCOLS:
        f.error(f"{path}.port.protocol", f"protocol `{port.protocol}` is not supported by Isthmus's gateway "
                                         f"(one of {', '.join(GATEWAY_PROTOCOLS)})")
    if not port.name:
        f.error(f"{path}.port.name", "port name must be set")
    if server.bind:
        if server.bind.startswith("unix://"):
            f.error(f"{path}.bind", "unix domain socket binds are not supported by Isthmus's gateway")
        elif not is_ip(server.bind):
            f.error(f"{path}.bind", f"`{server.bind}` is not an IP address")
    if server.tls is not None:
        _tls(server.tls, f"{path}.tls", f)
    if protocol in TLS_PROTOCOLS and server.tls is None:
        f.error(f"{path}.tls", "server must have TLS settings for HTTPS/TLS protocols")
    elif protocol not in TLS_PROTOCOLS and server.tls is not None and protocol in GATEWAY_PROTOCOLS:
        tls = server.tls
        if protocol in HTTP_PROTOCOLS:  # only httpsRedirect (a passthrough tls block without certificates)
            if effective_mode(tls) != SERVER_TLS_PASSTHROUGH or tls.ca_certificates or tls.private_key \
                    or tls.server_certificate:
                f.error(f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports")
        else:
            f.error(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")


def _server_host(host: str, path: str, f: Findings) -> None:
    """`[namespace/]dnsName` (Istio's ValidateNamespaceSlashWildcardHostname for gateways)."""
    ns, slash, name = host.partition("/")
    if not slash:
        ns, name = "*", host
    elif not ns or not name:
        f.error(path, "config namespace and dnsName in host entry cannot be empty")
        return
    if ns not in ("*", ".") and not DNS1123_LABEL.match(ns):
        f.error(path, f"invalid namespace value `{ns}` in gateway (`*`, `.` or a namespace name)")
    if name == "*" or is_ip(name):
        return
    if "." not in name:
        f.error(path, f"short names (non FQDN) are not allowed: `{name}`")
        return
    problem = host_problem(name[2:] if name.startswith("*.") else name)
    if problem:
        f.error(path, f"`{name}` is not a valid host (`*`, `*.suffix` or a FQDN): {problem}")


def _tls(tls: ServerTLSSettings, path: str, f: Findings) -> None:
    mode = effective_mode(tls)
    if tls.mode == "AUTO_PASSTHROUGH":
        f.error(f"{path}.mode", "AUTO_PASSTHROUGH is not supported by Isthmus (it routes by multi-network SNI "
                                "cluster names, which Isthmus's gateway does not serve)")
        return
    if mode not in SERVER_TLS_MODES:
        f.error(f"{path}.mode", f"unknown tls mode `{tls.mode}` (one of {', '.join(SERVER_TLS_MODES)})")
        return
    for field, version in (("minProtocolVersion", tls.min_protocol_version),
                           ("maxProtocolVersion", tls.max_protocol_version)):
        if version is not None and version not in TLS_VERSIONS:
            f.error(f"{path}.{field}", f"unknown TLS version `{version}` (one of {', '.join(TLS_VERSIONS)})")
    low, high = tls.min_protocol_version or "TLS_AUTO", tls.max_protocol_version or "TLS_AUTO"
    if low in TLS_VERSIONS and high in TLS_VERSIONS and low != "TLS_AUTO" and high != "TLS_AUTO" \
            and TLS_VERSIONS.index(low) > TLS_VERSIONS.index(high):
        f.error(f"{path}.minProtocolVersion", f"minProtocolVersion {low} is above maxProtocolVersion {high}")
    if low in ("TLSV1_0", "TLSV1_1") and not tls.cipher_suites:
        f.warn(f"{path}.minProtocolVersion", "TLS version below TLSV1_2 require setting compatible ciphers as by "
                                             "default they no longer include compatible ciphers")
    seen: set[str] = set()
    for k, suite in enumerate(tls.cipher_suites or []):
        if suite not in CIPHER_SUITES:
            f.error(f"{path}.cipherSuites[{k}]", f"unknown cipher suite `{suite}` (Istio's list of BoringSSL "
                                                 f"names: {', '.join(sorted(CIPHER_SUITES))})")
        elif suite in seen:
            f.warn(f"{path}.cipherSuites[{k}]", f"duplicate cipher suite `{suite}` is ignored")
        seen.add(suite)
    if mode == SERVER_TLS_ISTIO_MUTUAL:
        for field, value in (("serverCertificate", tls.server_certificate), ("privateKey", tls.private_key),
                             ("caCertificates", tls.ca_certificates), ("credentialName", tls.credential_name)):
            if value:
                f.error(f"{path}.{field}", f"ISTIO_MUTUAL TLS cannot have an associated {field}: it uses the "
                                           "gateway's workload certificate and the mesh trust bundle")
        return
    if mode == SERVER_TLS_PASSTHROUGH:
        if tls.server_certificate or tls.private_key or tls.ca_certificates or tls.credential_name:
            f.warn(path, "PASSTHROUGH mode does not use certificates, they will be ignored")
        return
    if tls.credential_name and (tls.server_certificate or tls.private_key):
        f.error(path, "only one of credentialName, serverCertificate/privateKey should be specified")
    if tls.credential_name:
        if not DNS1123_LABEL.match(tls.credential_name.split(".")[0]):
            f.error(f"{path}.credentialName", f"`{tls.credential_name}` is not a valid secret name")
        return  # the secret holds the certificate, key and (MUTUAL) the CA bundle
    prefix = "SIMPLE TLS" if mode == SERVER_TLS_SIMPLE else "MUTUAL TLS"
    if mode != SERVER_TLS_SIMPLE and not tls.ca_certificates:
        f.error(f"{path}.caCertificates", f"{prefix} requires a client CA bundle")
    if not tls.server_certificate:
        f.error(f"{path}.serverCertificate", f"{prefix} requires a server certificate")
    if not tls.private_key:
        f.error(f"{path}.privateKey", f"{prefix} requires a private key")
