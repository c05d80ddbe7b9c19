"""proxy/gateway/router.py over ConfigState with a hand-built push: routing by port and Host, 404 NR, 503
before config, httpsRedirect, the gateway's own policies before routing, NACK of a bad gateway entry."""

from __future__ import annotations

import pytest

from proto.gateway_xds import GatewayListeners, GatewayPortConfig, GatewayServer, ServerTls, VirtualHost
from proto.xds import (
    ClusterConfig, Endpoint, HttpRule, Push, RouteConfig, RouteMatch, StringMatch, WeightedDestination,
    WorkloadSecurity,
)
from proxy.control.config_state import ConfigRejected, ConfigState
from proxy.core.downstream import Downstream
from proxy.core.errors import NoRoute
from proxy.core.request import RequestHead
from proxy.gateway.compiled import compile_gateway
from proxy.gateway.router import GatewayNotConfigured, GatewayRouter
from proxy.inbound.local_app import LocalAppRouter, NotConfigured
from proxy.outbound.router import MeshRouter

GW_ID = "istio-ingressgateway-host-8080.istio-system"
PRODUCTPAGE = "productpage.default.svc.cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"


def cluster(host: str, address: str) -> ClusterConfig:
    return ClusterConfig(host=host, version=1, ports=[9080],
                         endpoints=[Endpoint(address=address, ports={9080: 15006})])


def route(source: str, dest: str, prefix: str | None = None) -> RouteConfig:
    matches = [RouteMatch(uri=StringMatch(prefix=prefix))] if prefix else []
    return RouteConfig(host=dest, version=1, source=source,
                       rules=[HttpRule(matches=matches, destinations=[WeightedDestination(host=dest, weight=100)])])


def listeners(**changes) -> GatewayListeners:
    http = GatewayPortConfig(
        port=80,
        servers=[GatewayServer(gateway="default/bookinfo-gateway", port=80, protocol="HTTP",
                               hosts=["bookinfo.example.com", "*.reviews.example.com"]),
                 GatewayServer(gateway="default/redirect", port=80, protocol="HTTP", hosts=["secure.example.com"],
                               tls=ServerTls(https_redirect=True))],
        virtual_hosts=[VirtualHost(domains=["bookinfo.example.com"], route=route("default/bookinfo", PRODUCTPAGE)),
                       VirtualHost(domains=["*.reviews.example.com"], route=route("default/reviews", REVIEWS, "/r"))])
    fields = dict(workload=GW_ID, version=3, namespace="istio-system", gateways=["default/bookinfo-gateway"],
                  ports=[http])
    fields.update(changes)
    return GatewayListeners(**fields)


def gateway_state() -> ConfigState:
    state = ConfigState(workload_id=GW_ID)
    state.compile_gateway = compile_gateway
    return state


def router(state: ConfigState, port: int = 80) -> GatewayRouter:
    policies = LocalAppRouter("127.0.0.1", 15000, "istio-ingressgateway", state, "istio-system",
                              labels={"istio": "ingressgateway"})
    mesh = MeshRouter(state, "istio-system", labels={"istio": "ingressgateway"})
    return GatewayRouter(port, state, mesh, policies)


def head(host: str, path: str = "/", port: int = 80) -> RequestHead:
    return RequestHead("GET", host, port, path, [(b"host", host.encode())])


def own_security(version: int = 3) -> WorkloadSecurity:
    """The default entry pilot pushes for a registered gateway no policy selects."""
    return WorkloadSecurity(workload=GW_ID, version=version, namespace="istio-system")


def push(*gateways: GatewayListeners, **more) -> Push:
    more.setdefault("security", [own_security()])
    return Push(epoch="e", seq=1, version=3, full=True,
                clusters=[cluster(PRODUCTPAGE, "10.0.0.1"), cluster(REVIEWS, "10.0.0.2")],
                gateways=list(gateways), **more)


def test_before_any_push_the_gateway_answers_503_and_a_port_without_servers_503_too():
    state = gateway_state()
    r, other = router(state), router(state, port=443)
    with pytest.raises(NotConfigured):
        r.pick(head("bookinfo.example.com"))
    state.apply(push(listeners()))
    with pytest.raises(GatewayNotConfigured) as caught:
        other.pick(head("bookinfo.example.com"))
    assert caught.value.status == 503


def test_hosts_route_to_their_virtual_host_and_an_unknown_host_is_404_NR():
    state = gateway_state()
    r = router(state)
    state.apply(push(listeners()))
    target = r.pick(head("BookInfo.example.com"))
    assert (target.address, target.cluster) == ("10.0.0.1", f"outbound|9080||{PRODUCTPAGE}")
    assert r.pick(head("v2.reviews.example.com", "/r/1")).address == "10.0.0.2"
    with pytest.raises(NoRoute):
        r.pick(head("v2.reviews.example.com", "/other"))  # the rule's match is applied
    with pytest.raises(NoRoute) as caught:
        r.pick(head("unknown.example.com"))
    assert (caught.value.status, caught.value.flag) == (404, "NR")
    with pytest.raises(NoRoute) as caught:  # a client's 10 KB Host is not echoed back whole in the 404's body
        r.pick(head("a" * 10_000 + ".example.com"))
    assert len(str(caught.value)) < 400


def test_https_redirect_answers_301_to_https_with_the_host_as_sent():
    state = gateway_state()
    r = router(state)
    state.apply(push(listeners()))
    target = r.pick(RequestHead("GET", "secure.example.com", 8080, "/a?b=1", [(b"host", b"secure.example.com:8080")]))
    status, response = target.policy.local.respond(
        RequestHead("GET", "secure.example.com", 8080, "/a?b=1", [(b"host", b"secure.example.com:8080")]), False,
        False)
    assert status == 301
    assert b"location: https://secure.example.com:8080/a?b=1\r\n" in response
    plain = RequestHead("GET", "secure.example.com", 80, "/", [(b"host", b"secure.example.com")])
    assert b"location: https://secure.example.com/\r\n" in target.policy.local.respond(plain, False, False)[1]


def test_only_this_gateways_entry_applies_and_a_removal_or_snapshot_without_it_keeps_it():
    state = gateway_state()
    r = router(state)
    state.apply(push(listeners(workload="other-gateway")))
    with pytest.raises(GatewayNotConfigured):
        r.pick(head("bookinfo.example.com"))
    state.apply(push(listeners()))
    assert r.pick(head("bookinfo.example.com")).address == "10.0.0.1"
    # pilot forgot the gateway (its lease lapsed while the registry was away): the edge keeps serving
    state.apply(Push(epoch="e", seq=2, version=4, removed_gateways=[GW_ID]))
    assert r.pick(head("bookinfo.example.com")).address == "10.0.0.1"
    state.apply(push(listeners(workload="other-gateway")))  # a snapshot without it: the same
    assert r.pick(head("bookinfo.example.com")).address == "10.0.0.1"
    state.apply(push(listeners(ports=[])))  # no Gateway selects it any more: an empty entry
    with pytest.raises(GatewayNotConfigured):
        r.pick(head("bookinfo.example.com"))
    assert state.dump()["gateway"] is not None


def test_a_bad_gateway_entry_is_refused_whole_and_the_previous_one_keeps_serving():
    state = gateway_state()
    r = router(state)
    state.apply(push(listeners()))
    bad = listeners(ports=[GatewayPortConfig(port=443, servers=[GatewayServer(
        gateway="default/gw", port=443, protocol="HTTPS", hosts=["*"],
        tls=ServerTls(mode="SIMPLE", server_certificate="/nonexistent.crt", private_key="/nonexistent.key"))])])
    with pytest.raises(ConfigRejected, match="serverCertificate /nonexistent.crt"):
        state.apply(push(bad))
    assert r.pick(head("bookinfo.example.com")).address == "10.0.0.1"
    with pytest.raises(ConfigRejected, match="cipher suite 'NOT-A-CIPHER'"):
        state.apply(push(listeners(ports=[GatewayPortConfig(port=443, servers=[GatewayServer(
            gateway="default/gw", port=443, protocol="HTTPS", hosts=["*"],
            tls=ServerTls(mode="SIMPLE", credential_name="c", cipher_suites=["NOT-A-CIPHER"]))])])))
    with pytest.raises(ConfigRejected, match="TLS version 'TLSV9'"):
        state.apply(push(listeners(ports=[GatewayPortConfig(port=443, servers=[GatewayServer(
            gateway="default/gw", port=443, protocol="HTTPS", hosts=["*"],
            tls=ServerTls(mode="SIMPLE", credential_name="c", min_protocol_version="TLSV9"))])])))


def test_the_gateways_own_authorization_policy_runs_before_routing():
    from proto.xds import AuthzPolicy, AuthzRule

    state = gateway_state()
    r = router(state)
    deny_all = WorkloadSecurity(workload=GW_ID, version=3,
                                authorization=[AuthzPolicy(name="istio-system/deny", action="DENY",
                                                           rules=[AuthzRule()])])
    state.apply(push(listeners(), security=[deny_all]))
    with pytest.raises(Exception) as caught:
        r.pick(head("bookinfo.example.com"))
    assert getattr(caught.value, "status", None) == 403
    state.apply(push(listeners()))  # a snapshot whose entry has no policy: admitted again
    assert r.pick(head("bookinfo.example.com")).address == "10.0.0.1"


def test_a_rate_limit_selecting_the_gateway_answers_429_before_routing():
    from proto.xds import RateLimitRule
    from proxy.core.errors import RateLimited

    state = gateway_state()
    r = router(state)
    own = ClusterConfig(host="istio-ingressgateway.istio-system.svc.cluster.local", version=1, ports=[80],
                        ratelimits=[RateLimitRule(name="istio-system/edge", selector={"istio": "ingressgateway"},
                                                  max_tokens=2, tokens_per_fill=1, fill_interval_ms=3_600_000)])
    state.apply(Push(epoch="e", seq=1, version=3, full=True,
                     clusters=[cluster(PRODUCTPAGE, "10.0.0.1"), cluster(REVIEWS, "10.0.0.2"), own],
                     gateways=[listeners()], security=[own_security()]))
    assert r.pick(head("bookinfo.example.com")).address == "10.0.0.1"
    assert r.pick(head("bookinfo.example.com")).address == "10.0.0.1"
    with pytest.raises(RateLimited) as caught:
        r.pick(head("bookinfo.example.com"))
    assert caught.value.status == 429


def test_on_a_tls_port_a_host_of_another_server_than_the_sni_picked_is_404():
    """SNI reviews.example.com (SIMPLE) with `Host: mtls.example.com` must not reach the MUTUAL server's routes:
    Istio gives each server its own filter chain and route config. Before, the port's virtual hosts were shared,
    so a client with no certificate reached the MUTUAL server's backend this way."""
    https = GatewayPortConfig(
        port=443,
        servers=[GatewayServer(gateway="istio-system/simple", port=443, protocol="HTTPS", hosts=["bookinfo.example.com"],
                               tls=ServerTls(mode="SIMPLE", credential_name="simple")),
                 GatewayServer(gateway="istio-system/mutual", port=443, protocol="HTTPS", hosts=["*.reviews.example.com"],
                               tls=ServerTls(mode="MUTUAL", credential_name="mutual"))],
        virtual_hosts=[VirtualHost(domains=["bookinfo.example.com"], route=route("default/bookinfo", PRODUCTPAGE)),
                       VirtualHost(domains=["*.reviews.example.com"], route=route("default/reviews", REVIEWS))])
    state = gateway_state()
    r = router(state, port=443)
    state.apply(push(listeners(ports=[https])))

    def on(sni: str, host: str) -> RequestHead:
        return RequestHead("GET", host, 443, "/", [(b"host", host.encode())], downstream=Downstream(sni=sni))
    assert r.pick(on("bookinfo.example.com", "bookinfo.example.com")).address == "10.0.0.1"
    assert r.pick(on("v1.reviews.example.com", "V2.reviews.example.com")).address == "10.0.0.2"  # same server
    assert r.pick(on("", "bookinfo.example.com")).address == "10.0.0.1"  # no SNI: the port's first server
    for sni, host in (("bookinfo.example.com", "v1.reviews.example.com"), ("", "v1.reviews.example.com"),
                      ("v1.reviews.example.com", "bookinfo.example.com")):
        with pytest.raises(NoRoute) as caught:
            r.pick(on(sni, host))
        assert (caught.value.status, caught.value.flag) == (404, "NR")


def test_a_gateway_takes_only_the_listeners_compiled_from_its_own_registration():
    # as its security entry: another identity's registration under its id, or its previous run's (other labels,
    # so other Gateways select it), must not give it their servers (a plaintext one where its own is MUTUAL)
    from proxy.control.security_state import Owner

    state = gateway_state()
    state.owner = Owner("istio-system", "istio-ingressgateway", "gw-sa", "run2")
    mine = listeners(service="istio-ingressgateway", service_account="gw-sa", instance="run2")
    state.apply(Push(epoch="e", seq=1, version=3, full=True, gateways=[mine]))
    assert state.gateway is mine
    for other in (listeners(version=4, namespace="evil", service="x", service_account="default", ports=[]),
                  listeners(version=4, service="istio-ingressgateway", service_account="gw-sa", instance="run1",
                            ports=[])):
        state.apply(Push(epoch="e", seq=2, version=4, gateways=[other]))
        assert state.gateway is mine and state.gateway_compiled.ports
