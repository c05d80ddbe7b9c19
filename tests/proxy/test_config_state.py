"""proxy/control/config_state.py: all-or-nothing pushes, make before break (istio/istio#12252), config dump."""

from __future__ import annotations

import json

import pytest

from proto.xds import (
    ClusterConfig, Endpoint, HttpRule, MeshConfig, Push, RouteConfig, RouteMatch, StringMatch, SubsetPolicy, WeightedDestination,
)
from proxy.control.config_state import ConfigRejected, ConfigState
from proxy.core.errors import NoCluster
from proxy.outbound.router import MeshRouter
from proxy.core.request import RequestHead

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
V1 = SubsetPolicy(name="v1", labels={"version": "v1"})
V2 = SubsetPolicy(name="v2", labels={"version": "v2"})


def cluster(host: str = REVIEWS, version: int = 1, subsets=(V1,), **changes) -> ClusterConfig:
    endpoints = [Endpoint(address="10.0.0.1", labels={"version": "v1"}),
                 Endpoint(address="10.0.0.2", labels={"version": "v2"})]
    return ClusterConfig(**{"host": host, "version": version, "ports": [9080], "subsets": list(subsets),
                            "endpoints": endpoints, **changes})


def route(subset: str, version: int, host: str = REVIEWS, dest_host: str = REVIEWS) -> RouteConfig:
    return RouteConfig(host=host, version=version, source="default/reviews", rules=[
        HttpRule(destinations=[WeightedDestination(host=dest_host, subset=subset)])])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Proxy:
    """A ConfigState fed pushes in sequence, and a router over it (time: self.clock.now, seconds)."""

    def __init__(self, grace_s: float = 15.0) -> None:
        self.clock = Clock()
        self.state = ConfigState(grace_s, self.clock)
        self.router = MeshRouter(self.state)
        self.seq = 0

    def push(self, full: bool = False, **parts) -> None:
        self.seq += 1
        self.state.apply(Push(epoch="e1", seq=self.seq, version=self.seq, full=full, **parts))

    def target(self, host: str = "reviews") -> str:
        return self.router.pick(RequestHead("GET", host, 9080, "/", [])).address


def test_a_full_push_installs_clusters_and_routes_and_the_dump_shows_them():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    assert proxy.target() == "10.0.0.1"
    dump = json.loads(json.dumps(proxy.state.dump()))
    assert (dump["epoch"], dump["seq"]) == ("e1", 1)
    assert [(c["host"], c["version"]) for c in dump["clusters"]] == [(REVIEWS, 1)]
    assert [(r["host"], r["version"]) for r in dump["routes"]] == [(REVIEWS, 3)]
    assert dump["pending"] == []


def test_a_delta_adds_replaces_and_removes_only_what_it_names():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster(subsets=(V1, V2)), cluster(RATINGS)], routes=[route("v1", 3)])
    proxy.push(routes=[route("v2", 4)], removed_clusters=[RATINGS])
    assert proxy.target() == "10.0.0.2"
    assert set(proxy.state.clusters) == {REVIEWS}
    proxy.push(removed_routes=[REVIEWS])
    assert proxy.state.routes == {}
    assert {proxy.target() for _ in range(4)} == {"10.0.0.1", "10.0.0.2"}  # plain cluster routing


def test_a_full_push_replaces_everything():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster(), cluster(RATINGS)], routes=[route("v1", 3)])
    proxy.push(full=True, clusters=[cluster(RATINGS)])
    assert set(proxy.state.clusters) == {RATINGS} and proxy.state.routes == {}
    assert proxy.router.pick(RequestHead("GET", "reviews", 9080, "/", [])).cluster == "PassthroughCluster"


def test_the_mesh_settings_come_with_pushes_and_a_bad_mode_is_rejected():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()], mesh=MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))
    assert proxy.state.mesh.outbound_traffic_policy == "REGISTRY_ONLY"
    assert proxy.router.pick(RequestHead("GET", "example.com", 80, "/", [])).cluster == "BlackHoleCluster"
    proxy.push(clusters=[cluster(version=2)])  # a delta without mesh settings (an older pilot) keeps them
    assert proxy.state.dump()["mesh"] == {"outbound_traffic_policy": "REGISTRY_ONLY"}
    with pytest.raises(ConfigRejected, match="ALLOW_ANY"):
        proxy.push(mesh=MeshConfig(outbound_traffic_policy="DENY"))
    assert proxy.state.mesh.outbound_traffic_policy == "REGISTRY_ONLY"
    proxy.push(full=True, clusters=[cluster()])  # a snapshot without them: the defaults
    assert proxy.state.mesh.outbound_traffic_policy == "ALLOW_ANY"


@pytest.mark.parametrize("bad", [
    {"routes": [RouteConfig(host=REVIEWS, version=9, rules=[HttpRule(
        matches=[RouteMatch(uri=StringMatch(regex="(unclosed"))],
        destinations=[WeightedDestination(host=REVIEWS)])])]},
    {"routes": [RouteConfig(host=REVIEWS, version=9, rules=[HttpRule(destinations=[
        WeightedDestination(host=REVIEWS, subset="v1", weight=0),
        WeightedDestination(host=REVIEWS, subset="v2", weight=0)])])]},
    {"clusters": [cluster(RATINGS, lb="WEIGHTED_MAGIC")]},
])
def test_an_invalid_delta_is_rejected_and_changes_nothing(bad):
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    before, table = proxy.state.dump(), proxy.state.table
    with pytest.raises(ConfigRejected):
        # the valid cluster in the same push must not be applied either
        proxy.push(clusters=[cluster(version=5, subsets=(V1, V2)), *bad.get("clusters", [])],
                   routes=bad.get("routes", []))
    assert proxy.state.dump() == before
    assert proxy.state.table is table


def test_a_route_to_a_subset_that_arrives_before_its_destination_rule_waits_and_the_old_route_serves():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    proxy.push(routes=[route("v2", 4)])  # the VirtualService update raced ahead of the DestinationRule
    assert proxy.target() == "10.0.0.1"
    assert proxy.state.routes[REVIEWS].version == 3
    pending = proxy.state.pending_routes()[REVIEWS]
    assert (pending.route.version, pending.missing) == (4, (f"subset v2 of {REVIEWS}",))
    assert proxy.state.dump()["pending"][0]["missing"] == [f"subset v2 of {REVIEWS}"]

    proxy.push(clusters=[cluster(version=5, subsets=(V1, V2))])  # the DestinationRule lands
    assert proxy.target() == "10.0.0.2"
    assert proxy.state.pending_routes() == {}


def test_a_route_to_a_cluster_the_proxy_does_not_hold_yet_waits_for_it():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    proxy.push(routes=[route("", 4, dest_host=RATINGS)])
    assert proxy.target() == "10.0.0.1"
    proxy.push(clusters=[cluster(RATINGS, endpoints=[Endpoint(address="10.9.9.9")])])
    assert proxy.target() == "10.9.9.9"


def test_a_subset_removed_while_an_active_route_uses_it_stays_until_unused():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster(subsets=(V1, V2))], routes=[route("v2", 3)])
    proxy.push(clusters=[cluster(version=6, subsets=(V1,))])  # the DR dropped v2; the route still uses it
    assert proxy.target() == "10.0.0.2"
    assert proxy.state.retained == {REVIEWS: ("v2",)}
    assert proxy.state.pending_routes() == {}  # the route in force is not waiting for anything
    assert proxy.state.clusters[REVIEWS].version == 6  # the new definition, plus the old subset
    proxy.push(routes=[route("v1", 7)])
    assert proxy.target() == "10.0.0.1"
    assert [s.name for s in proxy.state.clusters[REVIEWS].subsets] == ["v1"]
    assert proxy.state.retained == {}


def test_a_removed_cluster_an_active_route_uses_stays_until_unreferenced():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster(), cluster(RATINGS)], routes=[route("", 3, dest_host=RATINGS)])
    proxy.push(removed_clusters=[RATINGS])
    assert RATINGS in proxy.state.clusters and proxy.state.retained == {RATINGS: ("cluster",)}
    assert proxy.target() in ("10.0.0.1", "10.0.0.2")
    assert proxy.state.dump()["clusters"][0]["retained"] == ["cluster"]
    proxy.push(removed_routes=[REVIEWS])
    assert set(proxy.state.clusters) == {REVIEWS}


def test_an_unchanged_cluster_keeps_its_balancer_state_across_pushes():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster(), cluster(RATINGS)])
    entry = proxy.state.table.clusters[REVIEWS]
    proxy.push(clusters=[cluster(RATINGS, version=2)])
    assert proxy.state.table.clusters[REVIEWS] is entry


def test_a_tcp_route_to_a_subset_not_held_yet_waits_like_an_http_one():
    from proto.xds import TcpRule
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()])
    tcp = RouteConfig(host=REVIEWS, version=4, source="default/reviews",
                      tcp=[TcpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v2")])])
    proxy.push(routes=[tcp])
    assert proxy.state.pending_routes()[REVIEWS].missing == (f"subset v2 of {REVIEWS}",)
    proxy.push(clusters=[cluster(version=5, subsets=(V1, V2))])
    assert proxy.state.pending_routes() == {}
    assert proxy.router.tcp_pick("reviews", 9080).address == "10.0.0.2"


def two_rules(undefined: bool, version: int = 4, subset: str = "v3", dest_host: str = REVIEWS) -> RouteConfig:
    """/v3 goes to `subset` (marked undefined by pilot or not), everything else to v1."""
    return RouteConfig(host=REVIEWS, version=version, source="default/reviews", rules=[
        HttpRule(matches=[RouteMatch(uri=StringMatch(prefix="/v3"))],
                 destinations=[WeightedDestination(host=dest_host, subset=subset, undefined=undefined)]),
        HttpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v1")])])


def path_target(proxy: Proxy, path: str) -> str:
    return proxy.router.pick(RequestHead("GET", "reviews", 9080, path, [])).address


def test_a_destination_pilot_marks_undefined_is_not_waited_for_and_only_its_rule_gets_503_nc():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    proxy.push(routes=[two_rules(undefined=True)])
    assert proxy.state.pending_routes() == {} and proxy.state.routes[REVIEWS].version == 4
    assert path_target(proxy, "/other") == "10.0.0.1"
    with pytest.raises(NoCluster, match=rf"outbound\|9080\|v3\|{REVIEWS} not found") as caught:
        path_target(proxy, "/v3")
    assert (caught.value.status, caught.value.flag) == (503, "NC")

    # the DestinationRule arrives: pilot re-sends the route unmarked with the cluster that defines v3
    v3 = SubsetPolicy(name="v3", labels={"version": "v2"})
    proxy.push(clusters=[cluster(version=5, subsets=(V1, v3))], routes=[two_rules(undefined=False, version=5)])
    assert path_target(proxy, "/v3") == "10.0.0.2"


def test_a_route_to_a_host_without_any_cluster_is_503_nc_for_that_rule_only():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster()], routes=[two_rules(undefined=True, subset="", dest_host=RATINGS)])
    assert path_target(proxy, "/x") == "10.0.0.1"
    with pytest.raises(NoCluster, match=f"sends to {RATINGS}, which has no cluster"):
        path_target(proxy, "/v3")


def test_a_tcp_route_to_a_subset_pilot_marks_undefined_applies_and_its_connections_get_nc():
    from proto.xds import TcpMatch, TcpRule
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster(ports=[9080, 9090])])
    tcp = RouteConfig(host=REVIEWS, version=4, source="default/reviews", tcp=[
        TcpRule(matches=[TcpMatch(port=9090)], destinations=[WeightedDestination(host=REVIEWS, subset="v9",
                                                                                   undefined=True)]),
        TcpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v1")])])
    proxy.push(routes=[tcp])
    assert proxy.state.pending_routes() == {}
    assert proxy.router.tcp_pick("reviews", 9080).address == "10.0.0.1"
    with pytest.raises(NoCluster):
        proxy.router.tcp_pick("reviews", 9090)


def test_a_pending_route_applies_when_its_grace_ends_and_only_what_is_missing_fails():
    proxy = Proxy(grace_s=15.0)
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    proxy.push(routes=[two_rules(undefined=False)])  # pilot did not say v3 is undefined: wait for it
    assert proxy.state.pending_routes()[REVIEWS].missing == (f"subset v3 of {REVIEWS}",)
    assert proxy.state.next_expiry() == 115.0
    assert proxy.state.dump()["pending"][0]["applies_in_s"] == 15.0
    proxy.clock.now = 114.9
    assert proxy.state.expire() is False  # not yet: the old route serves
    assert path_target(proxy, "/v3") == "10.0.0.1"
    proxy.clock.now = 115.0
    assert proxy.state.expire() is True
    assert proxy.state.pending_routes() == {} and proxy.state.next_expiry() is None
    assert proxy.state.routes[REVIEWS].version == 4
    assert path_target(proxy, "/other") == "10.0.0.1"
    with pytest.raises(NoCluster):
        path_target(proxy, "/v3")


def test_new_versions_of_a_waiting_route_do_not_restart_its_grace():
    proxy = Proxy(grace_s=15.0)
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    proxy.push(routes=[two_rules(undefined=False, version=4)])
    proxy.clock.now = 110.0
    proxy.push(routes=[two_rules(undefined=False, version=5, subset="v4")])
    assert proxy.state.pending_routes()[REVIEWS].since == 100.0
    proxy.clock.now = 115.0
    proxy.push(clusters=[cluster(version=6)])  # any push past the grace applies it too
    assert proxy.state.routes[REVIEWS].version == 5 and proxy.state.pending_routes() == {}


def test_a_subset_pilot_marks_undefined_is_not_kept_alive_for_the_route_in_force():
    proxy = Proxy()
    proxy.push(full=True, clusters=[cluster(subsets=(V1, V2))], routes=[route("v2", 3)])
    marked = RouteConfig(host=REVIEWS, version=6, source="default/reviews", rules=[
        HttpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v2", undefined=True)])])
    proxy.push(clusters=[cluster(version=6, subsets=(V1,))], routes=[marked])  # the DR dropped v2
    assert proxy.state.retained == {}
    with pytest.raises(NoCluster):
        proxy.target()


class Recorder:
    """Stands in for the module's structlog logger (whose config other tests may have cached)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __getattr__(self, level: str):  # type: ignore[no-untyped-def]
        return lambda event, **kw: self.events.append({"event": event, "log_level": level, **kw})


def test_what_is_held_pending_is_logged_once_per_change_and_when_it_applies(monkeypatch):
    import proxy.control.config_state as module
    logs = Recorder()
    monkeypatch.setattr(module, "log", logs)
    proxy = Proxy(grace_s=15.0)
    proxy.push(full=True, clusters=[cluster()], routes=[route("v1", 3)])
    proxy.push(routes=[two_rules(undefined=False)])
    proxy.push(clusters=[cluster(RATINGS)])  # unrelated: the route is still pending, nothing new to say
    proxy.push(clusters=[cluster(RATINGS, version=2)])
    proxy.clock.now = 120.0
    proxy.state.expire()
    held = [e for e in logs.events if e["event"].startswith("route held pending")]
    applied = [e for e in logs.events if e["event"].startswith("pending route applied after its grace")]
    assert len(held) == 1 and held[0]["missing"] == f"subset v3 of {REVIEWS}" and held[0]["host"] == REVIEWS
    assert held[0]["log_level"] == "warning" and held[0]["applies_in_s"] == 15.0
    assert len(applied) == 1 and applied[0]["version"] == 4
