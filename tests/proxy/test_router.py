"""proxy/outbound/router.py: host resolution, route -> cluster -> subset -> endpoint, typed failures."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proto.xds import (
    ClusterConfig, Endpoint, HashPolicy, HttpRule, LbPolicy, LocalityPolicy, MeshConfig, Push, RouteConfig, RouteMatch, StringMatch,
    SubsetPolicy, WeightedDestination,
)
from proxy.control.config_state import ConfigRejected, ConfigState
from proxy.core.errors import BlackHole, NoHealthyUpstream, NoRoute
from proxy.outbound.router import MeshRouter
from proxy.core.request import RequestHead

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.shop.svc.cluster.local"


def ep(address: str, version: str, healthy: bool = True, port: int | None = 15006) -> Endpoint:
    return Endpoint(address=address, ports={9080: port} if port else {}, labels={"version": version},
                    healthy=healthy)


def reviews_cluster(**changes) -> ClusterConfig:
    fields = dict(host=REVIEWS, version=1, ports=[9080],
                  subsets=[SubsetPolicy(name="v1", labels={"version": "v1"}),
                           SubsetPolicy(name="v2", labels={"version": "v2"}),
                           SubsetPolicy(name="v3", labels={"version": "v3"})],
                  endpoints=[ep("10.0.0.1", "v1"), ep("10.0.0.2", "v1"), ep("10.0.0.3", "v2"),
                             ep("10.0.0.4", "v3", healthy=False)])
    fields.update(changes)
    return ClusterConfig(**fields)


def router_for(clusters, routes=(), namespace: str = "default") -> MeshRouter:
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=list(clusters), routes=list(routes)))
    return MeshRouter(state, namespace=namespace)


def head(host: str = "reviews", port: int = 9080, path: str = "/", **headers: str) -> RequestHead:
    return RequestHead("GET", host, port, path, [(k.replace("_", "-").encode(), v.encode())
                                                 for k, v in headers.items()])


def test_names_resolve_as_a_client_in_the_proxys_namespace_means_them():
    ratings = ClusterConfig(host=RATINGS, version=1, ports=[9080], endpoints=[ep("10.1.0.1", "v1")])
    external = ClusterConfig(host="api.example.com", version=1, ports=[443], endpoints=[ep("1.2.3.4", "x")])
    router = router_for([reviews_cluster(), ratings, external])
    for host, port, fqdn in (("reviews", 9080, REVIEWS), ("reviews.default", 9080, REVIEWS),
                             ("reviews.default.svc", 9080, REVIEWS), (REVIEWS, 9080, REVIEWS),
                             ("Reviews.Default.svc.cluster.local.", 9080, REVIEWS),
                             ("ratings.shop", 9080, RATINGS), ("api.example.com", 443, "api.example.com")):
        assert router.pick(head(host, port)).cluster == f"outbound|{port}||{fqdn}", host
    # ratings lives in shop, not in the proxy's namespace: a name outside the mesh, passed through
    assert router.pick(head("ratings")).cluster == "PassthroughCluster"


def test_without_a_virtual_service_all_healthy_endpoints_take_turns():
    router = router_for([reviews_cluster()])
    picks = [router.pick(head()) for _ in range(6)]
    assert {t.address for t in picks} == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}  # 10.0.0.4 is unhealthy
    assert [t.address for t in picks[:3]] == [t.address for t in picks[3:]]  # a cycle
    assert {(t.port, t.cluster) for t in picks} == {(15006, f"outbound|9080||{REVIEWS}")}


def test_a_header_match_routes_to_its_subset():
    route = RouteConfig(host=REVIEWS, version=2, rules=[
        HttpRule(matches=[RouteMatch(headers={"end-user": StringMatch(exact="jason")})],
                 destinations=[WeightedDestination(host=REVIEWS, subset="v2")]),
        HttpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v1")]),
    ])
    router = router_for([reviews_cluster()], [route])
    jason = router.pick(head(end_user="jason"))
    assert (jason.address, jason.cluster) == ("10.0.0.3", f"outbound|9080|v2|{REVIEWS}")
    assert {router.pick(head()).address for _ in range(4)} == {"10.0.0.1", "10.0.0.2"}


def test_a_weighted_split_reaches_the_subsets_in_proportion():
    random.seed(7)
    cluster = reviews_cluster(endpoints=[ep("10.0.0.1", "v1"), ep("10.0.0.3", "v2"), ep("10.0.0.4", "v3")])
    route = RouteConfig(host=REVIEWS, version=2, rules=[HttpRule(destinations=[
        WeightedDestination(host=REVIEWS, subset="v1", weight=80),
        WeightedDestination(host=REVIEWS, subset="v2", weight=10),
        WeightedDestination(host=REVIEWS, subset="v3", weight=10)])])
    router = router_for([cluster], [route])
    counts = Counter(router.pick(head()).address for _ in range(20_000))
    for address, share in (("10.0.0.1", 80), ("10.0.0.3", 10), ("10.0.0.4", 10)):
        assert abs(counts[address] / 200 - share) <= 3, counts


def test_an_unknown_host_passes_through_to_where_the_client_asked_as_istios_allow_any():
    target = router_for([reviews_cluster()]).pick(head("nowhere.example", 8080))
    assert (target.address, target.port, target.cluster) == ("nowhere.example", 8080, "PassthroughCluster")
    assert target.policy.retry is None and target.policy.timeout is None  # Istio's allow_any route
    assert target.breaker is not None and target.breaker.max_active == 1024  # Envoy's default thresholds


def test_under_registry_only_an_unknown_host_is_the_black_hole_and_known_hosts_still_route():
    router = router_for([reviews_cluster()])
    router.source.mesh = MeshConfig(outbound_traffic_policy="REGISTRY_ONLY")
    target = router.pick(head("nowhere.example"))
    assert target.cluster == "BlackHoleCluster" and target.policy.local.status == 502
    assert router.pick(head()).cluster == f"outbound|9080||{REVIEWS}"
    with pytest.raises(BlackHole) as caught:
        router.connect_pick("nowhere.example", 443)
    assert (caught.value.status, caught.value.flag) == (502, "UH")


def test_a_connect_to_a_mesh_host_is_tcp_to_it_and_to_any_other_host_passes_through():
    router = router_for([reviews_cluster(tcp_ports=[9080])])
    assert router.connect_pick("reviews", 9080).cluster == f"outbound|9080||{REVIEWS}"
    target = router.connect_pick("api.example.com", 443)
    assert (target.address, target.port, target.cluster) == ("api.example.com", 443, "PassthroughCluster")


def test_a_connect_to_a_mesh_host_http_port_is_refused_unless_a_tcp_route_claims_it():
    """Tunnelling would skip the VirtualService's HTTP routing (faults, retries, mirrors): 403."""
    from proto.xds import TcpMatch, TcpRule

    from proxy.core.errors import ConnectRefused

    with pytest.raises(ConnectRefused, match="send plain HTTP") as caught:
        router_for([reviews_cluster()]).connect_pick("reviews", 9080)
    assert caught.value.status == 403
    route = RouteConfig(host=REVIEWS, version=2, tcp=[
        TcpRule(matches=[TcpMatch(port=9080)], destinations=[WeightedDestination(host=REVIEWS, subset="v2")])])
    router = router_for([reviews_cluster()], [route])
    assert router.connect_pick("reviews", 9080).cluster == f"outbound|9080|v2|{REVIEWS}"
    with pytest.raises(ConnectRefused):  # the tcp route is for 9080 only
        router_for([reviews_cluster(ports=[9080, 9090])], [route]).connect_pick("reviews", 9090)


def test_a_port_the_service_does_not_expose_is_no_route():
    with pytest.raises(NoRoute, match="port 8080"):
        router_for([reviews_cluster()]).pick(head(port=8080))


def test_a_subset_with_only_unhealthy_endpoints_is_no_healthy_upstream_naming_the_cluster():
    route = RouteConfig(host=REVIEWS, version=2, rules=[HttpRule(destinations=[
        WeightedDestination(host=REVIEWS, subset="v3")])])
    with pytest.raises(NoHealthyUpstream, match=rf"outbound\|9080\|v3\|{REVIEWS}"):
        router_for([reviews_cluster()], [route]).pick(head())


def test_a_cluster_without_endpoints_is_no_healthy_upstream():
    with pytest.raises(NoHealthyUpstream, match=rf"outbound\|9080\|\|{REVIEWS}"):
        router_for([reviews_cluster(endpoints=[])]).pick(head())


def test_no_matching_rule_is_no_route():
    route = RouteConfig(host=REVIEWS, version=2, rules=[HttpRule(
        matches=[RouteMatch(uri=StringMatch(prefix="/api"))], destinations=[WeightedDestination(host=REVIEWS)])])
    with pytest.raises(NoRoute, match="no rule"):
        router_for([reviews_cluster()], [route]).pick(head(path="/web"))


def test_an_endpoint_without_a_port_mapping_is_reached_on_the_service_port():
    cluster = reviews_cluster(endpoints=[ep("10.0.0.9", "v1", port=None)])
    assert router_for([cluster]).pick(head()).port == 9080


def test_destination_ports_and_single_port_services():
    ratings = ClusterConfig(host=RATINGS, version=1, ports=[8080], endpoints=[
        Endpoint(address="10.1.0.1", ports={8080: 18080})])
    multi = ClusterConfig(host="multi.shop.svc.cluster.local", version=1, ports=[80, 81],
                          endpoints=[Endpoint(address="10.2.0.1")])
    route = RouteConfig(host=REVIEWS, version=2, rules=[
        HttpRule(matches=[RouteMatch(uri=StringMatch(prefix="/ratings"))],
                 destinations=[WeightedDestination(host=RATINGS)]),
        HttpRule(destinations=[WeightedDestination(host="multi.shop.svc.cluster.local", port=81)])])
    router = router_for([reviews_cluster(), ratings, multi], [route])
    to_ratings = router.pick(head(path="/ratings/1"))
    assert (to_ratings.port, to_ratings.cluster) == (18080, f"outbound|8080||{RATINGS}")
    assert router.pick(head()).cluster == "outbound|81||multi.shop.svc.cluster.local"


def test_random_balancing_stays_within_the_subset():
    cluster = reviews_cluster(subsets=[SubsetPolicy(name="v1", labels={"version": "v1"}, lb="RANDOM")])
    route = RouteConfig(host=REVIEWS, version=2, rules=[HttpRule(destinations=[
        WeightedDestination(host=REVIEWS, subset="v1")])])
    router = router_for([cluster], [route])
    assert {router.pick(head()).address for _ in range(200)} == {"10.0.0.1", "10.0.0.2"}


# --- caller identity and load balancing policies --------------------------------------------------

def test_source_labels_route_by_the_proxys_own_labels():
    routes = [RouteConfig(host=REVIEWS, version=1, rules=[
        HttpRule(matches=[RouteMatch(source_labels={"app": "frontend"})],
                 destinations=[WeightedDestination(host=REVIEWS, subset="v2")]),
        HttpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v1")])])]
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[reviews_cluster()], routes=routes))
    assert MeshRouter(state, labels={"app": "frontend"}).pick(head()).cluster == f"outbound|9080|v2|{REVIEWS}"
    assert MeshRouter(state, labels={"app": "batch"}).pick(head()).cluster == f"outbound|9080|v1|{REVIEWS}"


def test_consistent_hash_through_the_router_is_sticky_per_header_value():
    hashing = reviews_cluster(lb="CONSISTENT_HASH", hash=HashPolicy(header="x-user"),
                              endpoints=[ep(f"10.0.0.{i}", "v1") for i in range(1, 9)])
    router = router_for([hashing])
    for user in ("alice", "bob"):
        assert len({router.pick(head(x_user=user)).address for _ in range(20)}) == 1
    assert len({router.pick(head(x_user=f"u{i}")).address for i in range(100)}) > 4


def test_target_acquire_and_release_feed_least_request():
    router = router_for([reviews_cluster(lb="LEAST_REQUEST")])
    busy = router.pick(head())
    for _ in range(5):
        extra = router.pick(head())
        if extra.address == busy.address:
            extra.acquire()
    busy.acquire()
    picks = {router.pick(head()).address for _ in range(30)}
    assert picks == {"10.0.0.1", "10.0.0.2", "10.0.0.3"} - {busy.address}
    held = busy.balancer.active[id(busy.endpoint)]
    busy.release()
    busy.release()  # a second release is a no-op
    assert busy.balancer.active[id(busy.endpoint)] == held - 1


def test_port_level_settings_override_the_cluster_policy_for_their_port():
    cluster = reviews_cluster(ports=[9080, 9090], lb="ROUND_ROBIN",
                              port_lb={9090: LbPolicy(lb="CONSISTENT_HASH", hash=HashPolicy(header="x-user"))},
                              endpoints=[ep(f"10.0.0.{i}", "v1") for i in range(1, 6)])
    router = router_for([cluster])
    assert len({router.pick(head(port=9090, x_user="alice")).address for _ in range(20)}) == 1
    assert len({router.pick(head(port=9080, x_user="alice")).address for _ in range(20)}) == 5


def test_a_subset_without_a_policy_uses_the_clusters_and_one_with_a_policy_its_own():
    cluster = reviews_cluster(lb="CONSISTENT_HASH", hash=HashPolicy(header="x-user"),
                              subsets=[SubsetPolicy(name="v1", labels={"version": "v1"}),
                                       SubsetPolicy(name="rr", labels={"version": "v1"}, lb="ROUND_ROBIN")],
                              endpoints=[ep(f"10.0.0.{i}", "v1") for i in range(1, 6)])
    routes = [RouteConfig(host=REVIEWS, version=1, rules=[
        HttpRule(matches=[RouteMatch(headers={"x-rr": StringMatch(exact="1")})],
                 destinations=[WeightedDestination(host=REVIEWS, subset="rr")]),
        HttpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v1")])])]
    router = router_for([cluster], routes)
    assert len({router.pick(head(x_user="alice")).address for _ in range(20)}) == 1
    assert len({router.pick(head(x_user="alice", x_rr="1")).address for _ in range(20)}) == 5


def test_locality_failover_moves_traffic_when_the_local_zone_has_nothing_healthy():
    def located(address: str, locality: str, healthy: bool = True) -> Endpoint:
        return Endpoint(address=address, ports={9080: 15006}, locality=locality, healthy=healthy)

    policy = LocalityPolicy(failover={"us-east": "eu-west"})
    endpoints = [located("10.0.0.1", "us-east/z1"), located("10.0.0.2", "us-east/z2"),
                 located("10.0.0.3", "eu-west/z1"), located("10.0.0.4", "ap-south/z1")]
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True,
                     clusters=[reviews_cluster(locality=policy, endpoints=endpoints)]))
    router = MeshRouter(state, locality="us-east/z1")
    assert {router.pick(head()).address for _ in range(20)} == {"10.0.0.1"}
    endpoints[0] = located("10.0.0.1", "us-east/z1", healthy=False)
    state.apply(Push(epoch="e", seq=2, version=2, clusters=[reviews_cluster(version=2, locality=policy,
                                                                            endpoints=endpoints)]))
    assert {router.pick(head()).address for _ in range(20)} == {"10.0.0.2"}  # same region next
    endpoints[1] = located("10.0.0.2", "us-east/z2", healthy=False)
    state.apply(Push(epoch="e", seq=3, version=3, clusters=[reviews_cluster(version=3, locality=policy,
                                                                            endpoints=endpoints)]))
    assert {router.pick(head()).address for _ in range(20)} == {"10.0.0.3"}  # then the failover region
    assert len({MeshRouter(state).pick(head()).address for _ in range(40)}) == 2  # no locality: no preference


def test_a_push_with_a_hash_policy_but_no_key_is_rejected():
    state = ConfigState()
    with pytest.raises(ConfigRejected, match="hash key"):
        state.apply(Push(epoch="e", seq=1, version=1, full=True,
                         clusters=[reviews_cluster(lb="CONSISTENT_HASH")]))
    with pytest.raises(ConfigRejected, match="port 9090"):
        state.apply(Push(epoch="e", seq=1, version=1, full=True,
                         clusters=[reviews_cluster(port_lb={9090: LbPolicy(lb="WEIGHTED_MAGIC")})]))


def _retry_route(**retry) -> RouteConfig:
    from proto.xds import RetryPolicy
    return RouteConfig(host=REVIEWS, version=2, rules=[HttpRule(
        destinations=[WeightedDestination(host=REVIEWS)],
        retry=RetryPolicy(attempts=3, retry_on=["5xx"], **retry))])


def test_a_retry_avoids_tried_endpoints_unless_retry_ignore_previous_hosts_is_false():
    cluster = reviews_cluster(lb="RANDOM", endpoints=[ep("10.0.0.1", "v1"), ep("10.0.0.2", "v1")])
    router = router_for([cluster], [_retry_route()])
    first = router.pick(head())
    tried = [(first.address, first.port)]
    assert all(router.retry_pick(first, head(), tried).address != first.address for _ in range(50))
    router = router_for([cluster], [_retry_route(ignore_previous_hosts=False)])
    first = router.pick(head())
    again = {router.retry_pick(first, head(), [(first.address, first.port)]).address for _ in range(50)}
    assert again == {"10.0.0.1", "10.0.0.2"}  # the tried one may come back


def test_tcp_pick_splits_by_the_tcp_route_and_matches_port_and_caller():
    from proto.xds import TcpMatch, TcpRule
    random.seed(3)
    route = RouteConfig(host=REVIEWS, version=2, tcp=[
        TcpRule(matches=[TcpMatch(port=9080, source_labels={"app": "api"})],
                destinations=[WeightedDestination(host=REVIEWS, subset="v1", weight=75),
                              WeightedDestination(host=REVIEWS, subset="v2", weight=25)]),
        TcpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v2")])])
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[reviews_cluster()], routes=[route]))
    api = MeshRouter(state, labels={"app": "api"})
    counts = Counter(api.tcp_pick("reviews", 9080).cluster for _ in range(2000))
    assert 0.7 < counts[f"outbound|9080|v1|{REVIEWS}"] / 2000 < 0.8
    other = MeshRouter(state, labels={"app": "web"})  # the first rule's sourceLabels do not hold
    assert {other.tcp_pick("reviews", 9080).cluster for _ in range(20)} == {f"outbound|9080|v2|{REVIEWS}"}
    with pytest.raises(NoRoute):
        api.tcp_pick("nowhere", 9080)


def test_a_virtual_service_with_only_tcp_routes_leaves_http_requests_to_the_cluster():
    """As Istio: tcp routes apply to opaque TCP traffic; HTTP to the host takes the default route."""
    from proto.xds import TcpRule
    route = RouteConfig(host=REVIEWS, version=2, tcp=[TcpRule(destinations=[WeightedDestination(host=REVIEWS,
                                                                                                 subset="v2")])])
    router = router_for([reviews_cluster()], [route])
    assert {router.pick(head()).address for _ in range(20)} == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    orphan = RouteConfig(host="db.default.svc.cluster.local", version=2,
                         tcp=[TcpRule(destinations=[WeightedDestination(host=REVIEWS)])])
    router = router_for([reviews_cluster()], [orphan])
    with pytest.raises(NoRoute, match="no http route"):
        router.pick(head("db"))


def test_a_dns_loopback_address_in_host_routes_as_its_service_and_set_aliases_drops_cached_plans():
    router = router_for([reviews_cluster()])
    assert router.pick(head("127.240.3.7")).address == "127.240.3.7"  # no alias yet: outside the mesh (passthrough)
    router.set_aliases({"127.240.3.7": REVIEWS})
    assert router.pick(head("127.240.3.7")).cluster.endswith(f"|{REVIEWS}")
    router.set_aliases({"127.240.3.8": "gone.default.svc.cluster.local"})  # an alias the table lacks: ignored
    assert router.resolve(router.source.table, "127.240.3.8") == ""
    assert router.pick(head("127.240.3.7")).address == "127.240.3.7"
