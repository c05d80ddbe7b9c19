"""services/pilot/validate/gateway.py and the VirtualService gateway rules: Istio's ValidateGateway,
validateGatewayNames and validateTLSRoute, each problem with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pilot.validate.documents import by_path, decode, paths

YAML = Path(__file__).resolve().parent.parent / "gateway_yaml"


def gw(servers: str, selector: str = "selector: {istio: ingressgateway}", name: str = "gw") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  {selector}
  servers:
{servers}
"""


HTTP = """  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""


@pytest.mark.parametrize("name", sorted(p.name for p in YAML.glob("*.yaml")))
def test_istios_task_yaml_is_accepted_unchanged(name):
    resources, errors, _ = decode((YAML / name).read_text())
    assert errors == []
    assert resources


def test_a_gateway_without_servers_is_refused():
    _, errors, _ = decode(gw("    []"))
    assert "at least one server" in by_path(errors, "spec.servers").message


def test_a_gateway_without_selector_is_accepted_with_a_warning_it_applies_to_every_gateway():
    _, errors, warnings = decode(gw(HTTP, selector=""))
    assert errors == []
    assert "every gateway" in by_path(warnings, "spec.selector").message


def test_a_gateway_name_with_a_dot_is_refused():
    _, errors, _ = decode(gw(HTTP, name="my.gw"))
    assert "DNS-1123 label" in by_path(errors, "metadata.name").message


@pytest.mark.parametrize("port, message", [
    ("{number: 0, name: http, protocol: HTTP}", "1..65535"),
    ("{number: 65536, name: http, protocol: HTTP}", "1..65535"),
])
def test_port_numbers_out_of_range_are_refused(port, message):
    _, errors, _ = decode(gw(f"  - port: {port}\n    hosts: ['*']\n"))
    assert message in by_path(errors, "spec.servers[0].port.number").message


def test_a_port_at_the_range_ends_is_accepted():
    for number in (1, 65535):
        _, errors, _ = decode(gw(f"  - port: {{number: {number}, name: http, protocol: HTTP}}\n    hosts: ['*']\n"))
        assert errors == []


@pytest.mark.parametrize("protocol", ["MONGO", "REDIS", "UDP", "GRPC-WEB", "bogus"])
def test_protocols_the_gateway_does_not_speak_are_refused_with_the_reason(protocol):
    _, errors, _ = decode(gw(f"  - port: {{number: 80, name: p, protocol: {protocol}}}\n    hosts: ['*']\n"))
    message = by_path(errors, "spec.servers[0].port.protocol").message
    assert "not supported" in message and "HTTP, HTTPS" in message


def test_protocol_names_are_case_insensitive_as_istios():
    _, errors, _ = decode(gw("  - port: {number: 80, name: http, protocol: http}\n    hosts: ['*']\n"))
    assert errors == []


def test_port_name_is_required_and_unique():
    _, errors, _ = decode(gw("  - port: {number: 80, protocol: HTTP}\n    hosts: ['*']\n"))
    assert "must be set" in by_path(errors, "spec.servers[0].port.name").message
    _, errors, _ = decode(gw(HTTP + "  - port: {number: 81, name: http, protocol: HTTP}\n    hosts: ['*']\n"))
    assert "unique" in by_path(errors, "spec.servers[1].port.name").message


@pytest.mark.parametrize("host, message", [
    ("httpbin", "short names"),
    ("bad_ns!/a.example.com", "invalid namespace"),
    ("/a.example.com", "cannot be empty"),
    ("ns/", "cannot be empty"),
    ("*a.example.com", "not a valid host"),
    ("a.*.com", "not a valid host"),
])
def test_bad_server_hosts_are_refused(host, message):
    _, errors, _ = decode(gw(f"  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: ['{host}']\n"))
    assert message in by_path(errors, "spec.servers[0].hosts[0]").message


def test_server_hosts_with_namespaces_and_wildcards_are_accepted():
    hosts = "['*', '*/a.example.com', './b.example.com', 'prod/*.example.com', 'c.example.com', '10.0.0.1']"
    _, errors, _ = decode(gw(f"  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: {hosts}\n"))
    assert errors == []


def test_a_server_needs_hosts():
    _, errors, _ = decode(gw("  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: []\n"))
    assert "at least one host" in by_path(errors, "spec.servers[0].hosts").message


def tls_server(tls: str, protocol: str = "HTTPS") -> str:
    return f"  - port: {{number: 443, name: https, protocol: {protocol}}}\n    hosts: [a.example.com]\n    tls: {tls}\n"


@pytest.mark.parametrize("tls, path, message", [
    ("{mode: AUTO_PASSTHROUGH}", "spec.servers[0].tls.mode", "AUTO_PASSTHROUGH is not supported"),
    ("{mode: WHATEVER}", "spec.servers[0].tls.mode", "unknown tls mode"),
    ("{mode: SIMPLE}", "spec.servers[0].tls.serverCertificate", "requires a server certificate"),
    ("{mode: SIMPLE, serverCertificate: /c.pem}", "spec.servers[0].tls.privateKey", "requires a private key"),
    ("{mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}", "spec.servers[0].tls.caCertificates",
     "client CA bundle"),
    ("{mode: OPTIONAL_MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}", "spec.servers[0].tls.caCertificates",
     "client CA bundle"),
    ("{mode: ISTIO_MUTUAL, credentialName: x}", "spec.servers[0].tls.credentialName", "ISTIO_MUTUAL"),
    ("{mode: ISTIO_MUTUAL, serverCertificate: /c.pem}", "spec.servers[0].tls.serverCertificate", "ISTIO_MUTUAL"),
    ("{mode: SIMPLE, credentialName: x, serverCertificate: /c, privateKey: /k}", "spec.servers[0].tls",
     "only one of"),
    ("{credentialName: x, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}",
     "spec.servers[0].tls.minProtocolVersion", "above maxProtocolVersion"),
    ("{credentialName: x, minProtocolVersion: TLSV2}", "spec.servers[0].tls.minProtocolVersion",
     "unknown TLS version"),
    ("{credentialName: x, cipherSuites: [NOT-A-SUITE]}", "spec.servers[0].tls.cipherSuites[0]", "unknown cipher"),
])
def test_tls_settings_are_checked_as_istio(tls, path, message):
    _, errors, _ = decode(gw(tls_server(tls)))
    assert message in by_path(errors, path).message


def test_valid_tls_settings_are_accepted():
    for tls in ("{mode: SIMPLE, credentialName: c}", "{mode: MUTUAL, credentialName: c}",
                "{mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca}",
                "{mode: ISTIO_MUTUAL}", "{mode: PASSTHROUGH}",
                "{credentialName: c, minProtocolVersion: TLSV1_2, maxProtocolVersion: TLSV1_3, "
                "cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256, AES256-SHA]}"):
        _, errors, _ = decode(gw(tls_server(tls)))
        assert errors == [], tls


def test_duplicate_cipher_suites_are_a_warning():
    _, errors, warnings = decode(gw(tls_server("{credentialName: c, cipherSuites: [AES128-SHA, AES128-SHA]}")))
    assert errors == []
    assert "duplicate" in by_path(warnings, "spec.servers[0].tls.cipherSuites[1]").message


def test_https_and_tls_need_tls_settings_and_plain_ports_refuse_them():
    _, errors, _ = decode(gw("  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['*']\n"))
    assert "must have TLS settings" in by_path(errors, "spec.servers[0].tls").message
    _, errors, _ = decode(gw(tls_server("{credentialName: c}", protocol="HTTP")))
    assert "plain text HTTP" in by_path(errors, "spec.servers[0].tls").message
    _, errors, _ = decode(gw(tls_server("{credentialName: c}", protocol="TCP")))
    assert "non HTTPS/TLS" in by_path(errors, "spec.servers[0].tls").message


def test_https_redirect_on_http_is_accepted_and_warned_elsewhere():
    _, errors, _ = decode(gw(tls_server("{httpsRedirect: true}", protocol="HTTP")))
    assert errors == []
    _, errors, warnings = decode(gw(tls_server("{httpsRedirect: true, credentialName: c}")))
    assert errors == []
    assert "only be used with http" in by_path(warnings, "spec.servers[0].tls.httpsRedirect").message


def test_passthrough_is_accepted_on_https_as_istio_does():
    _, errors, _ = decode(gw(tls_server("{mode: PASSTHROUGH}", protocol="HTTPS")))
    assert errors == []
    _, errors, _ = decode(gw(tls_server("{mode: PASSTHROUGH}", protocol="TLS")))
    assert errors == []


def test_one_port_with_two_protocols_or_one_host_twice_is_refused():
    _, errors, _ = decode(gw(HTTP + "  - port: {number: 80, name: tcp, protocol: TCP}\n    hosts: ['*']\n"))
    assert "one port serves one protocol" in by_path(errors, "spec.servers[1].port.protocol").message
    _, errors, _ = decode(gw(HTTP + "  - port: {number: 80, name: http2, protocol: HTTP}\n    hosts: ['*']\n"))
    assert "already served on port 80" in by_path(errors, "spec.servers[1].hosts[0]").message


def test_https_and_tls_servers_may_share_a_port_with_different_hosts():
    servers = tls_server("{credentialName: c}") + \
        "  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [b.example.com]\n    tls: {mode: PASSTHROUGH}\n"
    _, errors, _ = decode(gw(servers))
    assert errors == []


def test_unix_binds_and_bad_bind_addresses_are_refused():
    _, errors, _ = decode(gw(HTTP + "    bind: unix:///tmp/s\n"))
    assert "unix" in by_path(errors, "spec.servers[0].bind").message
    _, errors, _ = decode(gw(HTTP + "    bind: not-an-ip\n"))
    assert "not an IP" in by_path(errors, "spec.servers[0].bind").message


# VirtualService: gateway bindings and tls routes

def vs(body: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: v, namespace: prod}}
spec:
{body}
"""


ROUTE = "    route:\n    - destination: {host: reviews}\n"
LONE = "  - route:\n    - destination: {host: reviews}\n"  # a rule without matches


def test_gateway_names_mesh_name_and_namespace_name_are_accepted():
    _, errors, _ = decode(vs("  hosts: [a.example.com]\n  gateways: [mesh, gw, istio-system/gw]\n  http:\n" + LONE))
    assert errors == []


@pytest.mark.parametrize("name, message", [
    ("Bad_Name", "invalid value for gateway name"),
    ("ns/Bad_Name", "invalid value for gateway name"),
    ("Bad_NS/gw", "invalid value for namespace"),
    ("/gw", "cannot be empty"),
])
def test_bad_gateway_names_are_refused(name, message):
    _, errors, _ = decode(vs(f"  hosts: [a.example.com]\n  gateways: ['{name}']\n  http:\n" + LONE))
    assert message in by_path(errors, "spec.gateways[0]").message


def test_legacy_gateway_name_is_a_warning():
    _, errors, warnings = decode(vs("  hosts: [a.example.com]\n  gateways: [gw.istio-system]\n  http:\n" + LONE))
    assert errors == []
    assert "istio-system/gw" in by_path(warnings, "spec.gateways[0]").message


def test_a_match_naming_only_gateways_is_no_longer_warned_about():
    body = "  hosts: [a.example.com]\n  gateways: [gw, mesh]\n  http:\n  - match:\n    - gateways: [gw]\n" + ROUTE
    _, errors, warnings = decode(vs(body))
    assert errors == [] and warnings == []


def test_host_star_is_allowed_only_when_bound_to_gateways_only():
    _, errors, _ = decode(vs("  hosts: ['*']\n  gateways: [gw]\n  http:\n" + LONE))
    assert errors == []
    for gateways in ("", "  gateways: [gw, mesh]\n"):
        _, errors, _ = decode(vs("  hosts: ['*']\n" + gateways + "  http:\n" + LONE))
        assert "bound to the mesh" in by_path(errors, "spec.hosts[0]").message


def test_wildcard_hosts_at_gateways_are_accepted():
    _, errors, _ = decode(vs("  hosts: ['*.example.com']\n  gateways: [gw]\n  http:\n" + LONE))
    assert errors == []


TLS = """  tls:
  - match:
    - port: 443
      sniHosts: [{sni}]
    route:
    - destination: {{host: my-nginx, port: {{number: 443}}}}
"""


def test_tls_route_at_a_gateway_is_accepted():
    _, errors, _ = decode(vs("  hosts: ['*.example.com']\n  gateways: [gw]\n" + TLS.format(sni="a.example.com")))
    assert errors == []


def test_sni_host_must_be_a_subset_of_a_vs_host():
    _, errors, _ = decode(vs("  hosts: [nginx.example.com]\n  gateways: [gw]\n" + TLS.format(sni="other.example.com")))
    assert "not a compatible subset" in by_path(errors, "spec.tls[0].match[0].sniHosts[0]").message
    _, errors, _ = decode(vs("  hosts: [a.example.com]\n  gateways: [gw]\n" + TLS.format(sni="'*.example.com'")))
    assert "not a compatible subset" in by_path(errors, "spec.tls[0].match[0].sniHosts[0]").message


def test_tls_route_needs_matches_sni_hosts_and_a_route():
    body = "  hosts: [a.example.com]\n  gateways: [gw]\n  tls:\n  - match:\n    - port: 443\n"
    _, errors, _ = decode(vs(body))
    assert "at least one SNI host" in by_path(errors, "spec.tls[0].match[0].sniHosts").message
    assert "TLS route is required" in by_path(errors, "spec.tls[0].route").message
    _, errors, _ = decode(vs("  hosts: [a.example.com]\n  gateways: [gw]\n  tls:\n" + LONE))
    assert "at least one match" in by_path(errors, "spec.tls[0].match").message


def test_tls_route_port_and_weights_are_checked_as_tcp():
    body = """  hosts: [a.example.com]
  gateways: [gw]
  tls:
  - match:
    - port: 70000
      sniHosts: [a.example.com]
    route:
    - destination: {host: a}
      weight: 0
    - destination: {host: b}
      weight: 0
"""
    _, errors, _ = decode(vs(body))
    assert "1..65535" in by_path(errors, "spec.tls[0].match[0].port").message
    assert "weight = 0" in by_path(errors, "spec.tls[0].route").message


@pytest.mark.parametrize("gateways, match_gateways", [("", ""), ("  gateways: [gw, mesh]\n", ""),
                                                      ("  gateways: [gw]\n", "      gateways: [mesh]\n")])
def test_tls_routes_that_would_apply_to_sidecars_are_refused(gateways, match_gateways):
    body = "  hosts: [a.example.com]\n" + gateways + "  tls:\n  - match:\n    - sniHosts: [a.example.com]\n" \
        + match_gateways + ROUTE
    _, errors, _ = decode(vs(body))
    assert "sidecars do not route TLS" in by_path(errors, "spec.tls[0].match[0]").message


def test_a_tls_match_bound_to_a_gateway_in_a_mesh_vs_is_accepted():
    body = "  hosts: [a.example.com]\n  gateways: [gw, mesh]\n  tls:\n  - match:\n    - sniHosts: [a.example.com]\n" \
        "      gateways: [gw]\n" + ROUTE
    _, errors, _ = decode(vs(body))
    assert errors == []
    assert "spec.tls[0].match[0]" not in paths(errors)


def test_a_binding_to_a_gateway_that_does_not_exist_is_a_warning_only():
    from services.pilot.validate import gateway_warnings
    text = vs("  hosts: [a.example.com]\n  gateways: [gw, istio-system/edge, mesh]\n  http:\n  - match:\n"
              "    - gateways: [other]\n" + ROUTE)
    resources, errors, _ = decode(text)
    assert errors == []
    warnings = gateway_warnings(resources, [])
    assert paths(warnings) == ["spec.gateways[0]", "spec.gateways[1]", "spec.http[0].match[0].gateways[0]"]
    assert "prod/gw does not exist" in warnings[0].message
    stored, _, _ = decode(gw(HTTP, name="edge") + "---\n" + gw(HTTP, name="gw").replace("istio-system", "prod"))
    assert paths(gateway_warnings(resources, stored)) == ["spec.http[0].match[0].gateways[0]"]
