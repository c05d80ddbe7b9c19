"""The transport-out decision per endpoint and port (proxy/outbound/upstream_tls.py, Pool.transport), made once
per push and carried on every Target (plans, picks, retries, mirrors); the inbound mode switch hold
(proxy/tls/modes.py). Pure logic: no sockets."""

from __future__ import annotations

import pytest

from proto.xds import (ClientTls, ClusterConfig, Endpoint, HttpRule, Push, RouteConfig, SubsetPolicy,
                       WeightedDestination, WorkloadSecurity)
from proxy.control.config_state import ConfigRejected, ConfigState
from proxy.core.request import RequestHead
from proxy.identity.tls import TlsProvider
from proxy.outbound.router import MeshRouter
from proxy.outbound.route import CompiledRoute
from proxy.outbound.table import build_table
from proxy.outbound.upstream_tls import MAX_SNI, istio_sni
from proxy.tls.modes import InboundModes
from proxy.tls.origination import TlsOrigination
from proxy.tls.upstream import UpstreamTls

HOST = "reviews.default.svc.cluster.local"
ID = "spiffe://cluster.local/ns/default/sa/reviews"
SNI = f"outbound_.9080_._.{HOST}"  # Istio's SNI for auto mTLS to service port 9080, no subset


def sidecar_endpoint(address: str = "10.0.0.1", auto: tuple[int, ...] = (9080,)) -> Endpoint:
    return Endpoint(address=address, ports={9080: 15006, 9081: 15007}, sidecar=True, identity=ID,
                    auto_mtls=list(auto), labels={"version": "v1"})


def router_for(cluster: ClusterConfig, routes: dict[str, CompiledRoute] | None = None) -> MeshRouter:
    originate = UpstreamTls(TlsProvider()).originate

    class Source:
        table = build_table({cluster.host: cluster}, routes or {}, None, originate)
    return MeshRouter(Source(), "default")


def pick(router: MeshRouter, port: int = 9080):  # type: ignore[no-untyped-def]
    return router.pick(RequestHead("GET", "reviews", port, "/", []))


def test_an_endpoint_without_a_sidecar_gets_plaintext() -> None:
    plain = Endpoint(address="10.0.0.2", ports={9080: 8080})
    target = pick(router_for(ClusterConfig(host=HOST, version=1, ports=[9080], endpoints=[plain])))
    assert target.tls is None and target.key == ("10.0.0.2", 8080)


def test_a_sidecar_endpoint_gets_istio_mutual_held_to_its_registered_identity() -> None:
    target = pick(router_for(ClusterConfig(host=HOST, version=1, ports=[9080], endpoints=[sidecar_endpoint()])))
    assert isinstance(target.tls, TlsOrigination) and target.tls.expected_id == ID
    assert target.key == ("10.0.0.1", 15006, "mtls", ID, SNI) and target.tls.sni == SNI
    assert target.tls.context() is None  # no certificate yet: the pool refuses to connect rather than go plain


def test_a_destination_rule_tls_disable_wins_over_auto_mtls() -> None:
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080], endpoints=[sidecar_endpoint()],
                            tls=ClientTls(mode="DISABLE"))
    target = pick(router_for(cluster))
    assert target.tls is None and target.key == ("10.0.0.1", 15006)


def test_a_port_not_in_auto_mtls_is_plaintext_and_the_other_port_is_not() -> None:
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080, 9081], endpoints=[sidecar_endpoint(auto=(9080,))])
    router = router_for(cluster)
    assert pick(router, 9081).tls is None
    assert pick(router, 9080).tls is not None


def test_subject_alt_names_of_a_destination_rule_set_the_expected_identity() -> None:
    other = "spiffe://cluster.local/ns/default/sa/other"
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080], endpoints=[sidecar_endpoint(auto=())],
                            tls=ClientTls(mode="ISTIO_MUTUAL", subject_alt_names=[other], sni="reviews"))
    target = pick(router_for(cluster))
    assert target.tls.expected_id == other and target.key[-3:] == ("mtls", other, "reviews")


def test_the_decision_is_made_once_per_push_and_retries_carry_it() -> None:
    endpoints = [sidecar_endpoint("10.0.0.1"), sidecar_endpoint("10.0.0.2")]
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080], lb="ROUND_ROBIN", endpoints=endpoints)
    router = router_for(cluster)
    first, second, third = pick(router), pick(router), pick(router)
    assert first.tls is third.tls and first.key is third.key  # the same objects: nothing built per request
    assert {first.key[0], second.key[0]} == {"10.0.0.1", "10.0.0.2"}
    retried = router.retry_pick(first, RequestHead("GET", "reviews", 9080, "/", []), [first.key[:2]])
    assert retried.address != first.address and retried.tls is not None
    assert retried.key == (retried.address, 15006, "mtls", ID, SNI)


def test_a_subset_route_and_a_mirror_carry_the_decision() -> None:
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080], endpoints=[sidecar_endpoint()],
                            subsets=[SubsetPolicy(name="v1", labels={"version": "v1"})])
    route = CompiledRoute(RouteConfig(host=HOST, version=1, rules=[
        HttpRule(destinations=[WeightedDestination(host=HOST, subset="v1")])]))
    router = router_for(cluster, {HOST: route})
    assert pick(router).tls is not None
    address, port, tls = router.mirror_pick(HOST, "v1", 9080, RequestHead("GET", "reviews", 9080, "/", []))
    assert (address, port) == ("10.0.0.1", 15006) and tls.expected_id == ID


@pytest.mark.parametrize("mode", ["SIMPLE", "MUTUAL"])
def test_a_push_whose_simple_or_mutual_files_cannot_be_loaded_is_refused_with_the_reason(
        mode: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = ConfigState()
    state.tls_check = UpstreamTls(TlsProvider()).problem
    missing = str(tmp_path / "absent.pem")
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080], subsets=[
        SubsetPolicy(name="v1", port_tls={9080: ClientTls(mode=mode, ca_certificates=missing,
                                                          client_certificate=missing, private_key=missing)})])
    with pytest.raises(ConfigRejected, match=f"subset v1 port 9080: tls {mode}: cannot load its certificate files"):
        state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster]))
    assert state.clusters == {}  # nothing applied, nothing sent in plaintext
    state.tls_check = None  # a state with no TLS source refuses them too
    with pytest.raises(ConfigRejected, match=f"tls mode {mode} needs the sidecar's TLS source"):
        state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster]))


def test_a_switch_from_disable_to_strict_is_held_at_permissive_then_applies() -> None:
    now = [0.0]
    modes = InboundModes([8080], hold=10.0, clock=lambda: now[0])
    modes.update(WorkloadSecurity(workload="w", version=1, mtls_mode="DISABLE"))
    now[0] = 20.0
    assert modes.mode(8080) == "DISABLE"
    modes.update(WorkloadSecurity(workload="w", version=2, mtls_mode="STRICT"))
    assert modes.mode(8080) == "PERMISSIVE"  # clients still sending plaintext are served while they move
    now[0] = 29.9
    assert modes.mode(8080) == "PERMISSIVE"
    now[0] = 30.0
    assert modes.mode(8080) == "STRICT"
    modes.update(WorkloadSecurity(workload="w", version=3, mtls_mode="DISABLE"))  # and back: TLS served a while
    assert modes.mode(8080) == "PERMISSIVE"
    now[0] = 40.0
    assert modes.mode(8080) == "DISABLE"


def test_switches_that_do_not_move_clients_apply_at_once() -> None:
    modes = InboundModes([8080, 9090], hold=10.0, clock=lambda: 0.0)
    modes.update(WorkloadSecurity(workload="w", version=1, mtls_mode="STRICT", port_mtls={9090: "DISABLE"}))
    assert modes.mode(8080) == "STRICT"  # PERMISSIVE -> STRICT: clients already send mTLS
    assert modes.mode(9090) == "PERMISSIVE"  # PERMISSIVE -> DISABLE: held
    modes.update(None)  # no policy any more: PERMISSIVE everywhere, at once
    assert modes.mode(8080) == modes.mode(9090) == "PERMISSIVE" and modes.held == {}


def test_a_retry_after_a_push_is_decided_by_the_new_config_and_not_kept_for_an_old_endpoint() -> None:
    endpoints = [sidecar_endpoint("10.0.0.1"), sidecar_endpoint("10.0.0.2")]
    router = router_for(ClusterConfig(host=HOST, version=1, ports=[9080], lb="ROUND_ROBIN", endpoints=endpoints))
    first = pick(router)
    assert first.tls is not None
    disabled = ClusterConfig(host=HOST, version=2, ports=[9080], lb="ROUND_ROBIN", endpoints=endpoints,
                             tls=ClientTls(mode="DISABLE"))
    router.source.table = build_table({HOST: disabled}, {}, router.source.table,  # type: ignore[attr-defined]
                                      UpstreamTls(TlsProvider()).originate)
    retried = router.retry_pick(first, RequestHead("GET", "reviews", 9080, "/", []), [first.key[:2]])
    assert retried.tls is None and retried.key == (retried.address, 15006)  # the new DestinationRule's DISABLE


def test_originations_are_shared_per_identity_and_their_cache_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import proxy.tls.upstream as upstream

    source = UpstreamTls(TlsProvider())
    auto = ClientTls(mode="ISTIO_MUTUAL")
    one = source.originate(auto, sidecar_endpoint("10.0.0.1"))
    assert source.originate(auto, sidecar_endpoint("10.0.0.2")) is one  # same identity: one origination
    monkeypatch.setattr(upstream, "MAX_ORIGINATIONS", 2)
    for n in range(3):  # one over the bound: the cache starts over, never above it
        source.originate(auto, Endpoint(address="10.0.1.%d" % n, identity=f"{ID}-{n}", sidecar=True))
        assert len(source._made) <= 2
    assert (f"{ID}-0", "") not in source._made  # dropped when the cache started over


def test_istios_sni_is_the_cluster_name_of_the_service_port_subset_and_host() -> None:
    assert istio_sni(HOST, "v1", 9080) == "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
    assert istio_sni("httpbin.foo.svc.cluster.local", "", 8000) == "outbound_.8000_._.httpbin.foo.svc.cluster.local"


def test_a_name_a_tls_client_cannot_send_is_left_out() -> None:
    assert istio_sni(HOST, "s" * 62, 9080).startswith("outbound_.9080_." + "s" * 62 + "_.")  # a 63-byte label
    assert istio_sni(HOST, "s" * 63, 9080) == ""  # one over: the stdlib transport would refuse to connect
    prefix = len("outbound_.9080_._.")
    at_limit = ".".join(["h" * 60] * 4)[: MAX_SNI - prefix]  # a host that makes the name MAX_SNI bytes
    assert len(istio_sni(at_limit, "", 9080)) == MAX_SNI
    assert istio_sni(at_limit + "h", "", 9080) == ""
    assert istio_sni("réviews.default.svc.cluster.local", "", 9080) == ""  # not ASCII (IDNA would change it)


def test_each_subset_and_port_sends_its_own_name_and_pools_apart() -> None:
    """Two subsets that select the same endpoint are two clusters (Istio): two names, two pool keys; the
    origination is decided once per (subset, port, endpoint) and shared by endpoints of one identity."""
    endpoints = [sidecar_endpoint("10.0.0.1", auto=(9080, 9081)), sidecar_endpoint("10.0.0.2", auto=(9080, 9081))]
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080, 9081], endpoints=endpoints, subsets=[
        SubsetPolicy(name="v1", labels={"version": "v1"}), SubsetPolicy(name="all", labels={})])
    pools = build_table({HOST: cluster}, {}, None, UpstreamTls(TlsProvider()).originate).clusters[HOST].pools
    first, second = endpoints
    key, tls = pools["v1"].transport(9080, first)
    assert tls.sni == f"outbound_.9080_.v1_.{HOST}" and key == ("10.0.0.1", 15006, "mtls", ID, tls.sni)
    assert pools["v1"].transport(9080, first) == (key, tls)  # kept for the push
    assert pools["v1"].transport(9080, second)[1] is tls  # same identity and cluster: one origination
    others = [pools["all"].transport(9080, first), pools[""].transport(9080, first), pools["v1"].transport(9081, first)]
    assert [t.sni for _, t in others] == [f"outbound_.9080_.all_.{HOST}", SNI, f"outbound_.9081_.v1_.{HOST}"]
    assert len({key, *(k for k, _ in others)}) == 4  # one endpoint address, four pools of connections


def test_a_destination_rules_sni_wins_and_istio_mutual_without_one_sends_istios_name() -> None:
    cluster = ClusterConfig(host=HOST, version=1, ports=[9080], endpoints=[sidecar_endpoint(auto=())],
                            tls=ClientTls(mode="ISTIO_MUTUAL"), subsets=[
                                SubsetPolicy(name="v1", labels={"version": "v1"},
                                             tls=ClientTls(mode="ISTIO_MUTUAL", sni="v1.reviews.example"))])
    pools = build_table({HOST: cluster}, {}, None, UpstreamTls(TlsProvider()).originate).clusters[HOST].pools
    (endpoint,) = cluster.endpoints
    assert pools[""].transport(9080, endpoint)[1].sni == SNI  # ISTIO_MUTUAL by the rule, no sni: Istio's name
    assert pools["v1"].transport(9080, endpoint)[1].sni == "v1.reviews.example"  # the rule's own sni


def test_simple_and_mutual_send_only_their_own_sni() -> None:
    """Istio sets its default SNI for ISTIO_MUTUAL only: TLS to a service outside the mesh sends the
    DestinationRule's `sni` or none."""
    source = UpstreamTls(TlsProvider())
    simple = source.originate(ClientTls(mode="SIMPLE", insecure_skip_verify=True), sidecar_endpoint(), SNI)
    assert simple.sni == ""
