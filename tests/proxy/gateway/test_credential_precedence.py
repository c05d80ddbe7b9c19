"""More credentialNames than a gateway holds (secret_client.MAX_WANTED): the older Gateways' servers keep theirs.
Before, the names were cut alphabetically, so a newer Gateway (from any namespace whose selector picks the
gateway) naming 1,500 credentials `c0`..`c1499` evicted `reviews-credential` and its server stopped serving."""

from __future__ import annotations

from proto.gateway_xds import GatewayListeners, GatewayPortConfig, GatewayServer, ServerTls
from proxy.gateway.compiled import compile_gateway
from proxy.gateway.secret_client import MAX_WANTED, SecretClient


def tls_server(gateway: str, host: str, credential: str, port: int = 443) -> GatewayServer:
    return GatewayServer(gateway=gateway, port=port, protocol="HTTPS", hosts=[host],
                         tls=ServerTls(mode="SIMPLE", credential_name=credential))


def test_a_newer_gateway_naming_too_many_credentials_crowds_out_only_its_own() -> None:
    old = [tls_server("istio-system/reviews", "reviews.example.com", "reviews-credential"),
           tls_server("istio-system/mtls", "mtls.example.com", "mtls-credential")]
    many = [tls_server("team-x/many", f"h{i}.example.com", f"c{i}") for i in range(MAX_WANTED + 500)]
    other_port = [tls_server("istio-system/admin", "admin.example.com", "admin-credential", 8443),
                  tls_server("team-x/many", "z.example.com", "c-on-8443", 8443)]
    compiled = compile_gateway(GatewayListeners(
        workload="gw", version=1, namespace="istio-system",
        ports=[GatewayPortConfig(port=443, servers=old + many), GatewayPortConfig(port=8443, servers=other_port)]))
    assert compiled is not None
    names = compiled.credentials()
    assert names[:4] == ["reviews-credential", "admin-credential", "mtls-credential", "c-on-8443"]
    assert len(names) == len(set(names)) == MAX_WANTED + 504
    client = SecretClient("istio-system", "istio-ingressgateway-service-account")
    client.want(names)
    wanted = client._wanted
    assert len(wanted) == MAX_WANTED
    assert {"reviews-credential", "mtls-credential", "admin-credential"} <= wanted
    assert f"c{MAX_WANTED + 499}" not in wanted  # the newest are the ones left out
