"""services/pilot/compile/routes.py and hosts.py: VirtualServices -> one RouteConfig per host."""

from __future__ import annotations

import textwrap

from proto import xds
from services.pilot.compile import MeshState, Stored, compile_mesh, diff
from runtime.hostnames import fqdn
from services.pilot.compile.routes import build_routes
from services.pilot.validate import decode_documents


def load(text: str):
    resources, errors, _ = decode_documents(textwrap.dedent(text))
    assert errors == [], errors
    return resources


def state_of(*items: tuple[str, int], created: dict[int, int] | None = None) -> MeshState:
    """items: (yaml, revision); `created` maps an item's revision to its create revision."""
    resources = {}
    for text, revision in items:
        for res in load(text):
            key = (res.kind, res.metadata.namespace, res.metadata.name)
            resources[key] = Stored(res, revision, (created or {}).get(revision, 0))
    return MeshState.build(resources)


VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-route, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {End-User: {exact: jason}}
      uri: {prefix: /api}
    - method: {exact: POST}
      port: 9080
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: ratings.shop.svc.cluster.local, port: {number: 9090}}
"""


def test_short_names_resolve_in_the_resources_namespace_and_dotted_names_stay_as_written():
    assert fqdn("reviews", "prod") == "reviews.prod.svc.cluster.local"
    assert fqdn("reviews.prod.svc.cluster.local", "other") == "reviews.prod.svc.cluster.local"
    assert fqdn("api.example.com", "prod") == "api.example.com"
    assert fqdn("reviews.other", "prod") == "reviews.other"  # Istio never guesses a namespace
    assert fqdn("Reviews", "prod", "svc.corp.local") == "reviews.prod.svc.corp.local"
    assert fqdn("10.0.0.1", "prod") == "10.0.0.1"


def test_a_virtual_service_compiles_to_a_route_config_for_its_fqdn_host():
    routes = build_routes(state_of((VS, 7)))
    route = routes["reviews.prod.svc.cluster.local"]
    assert (route.version, route.source) == (7, "prod/reviews-route")
    assert [r.name for r in route.rules] == ["jason", ""]


def test_matches_translate_with_lower_case_header_names():
    rule = build_routes(state_of((VS, 7)))["reviews.prod.svc.cluster.local"].rules[0]
    first, second = rule.matches
    assert first.headers == {"end-user": xds.StringMatch(exact="jason")}
    assert first.uri == xds.StringMatch(prefix="/api")
    assert (second.method, second.port) == (xds.StringMatch(exact="POST"), 9080)


def test_destinations_resolve_in_the_vs_namespace_and_a_lone_destination_gets_weight_100():
    rules = build_routes(state_of((VS, 7)))["reviews.prod.svc.cluster.local"].rules
    assert rules[0].destinations == [xds.WeightedDestination(host="reviews.prod.svc.cluster.local", subset="v2",
                                                             weight=100)]
    assert rules[1].destinations == [
        xds.WeightedDestination(host="reviews.prod.svc.cluster.local", subset="v1", weight=90),
        xds.WeightedDestination(host="ratings.shop.svc.cluster.local", port=9090, weight=0),
    ]


def test_when_two_virtual_services_claim_a_host_the_oldest_wins():
    newer = VS.replace("reviews-route", "a-newer-route").replace("hosts: [reviews]", "hosts: [reviews, details]")
    routes = build_routes(state_of((VS, 10), (newer, 12)))
    assert routes["reviews.prod.svc.cluster.local"].source == "prod/reviews-route"
    assert routes["details.prod.svc.cluster.local"].source == "prod/a-newer-route"


def test_age_is_the_create_revision_when_known_not_the_last_update():
    newer = VS.replace("reviews-route", "z-newer")
    # reviews-route was created first (rev 3) but updated last (rev 20): it stays the owner.
    routes = build_routes(state_of((VS, 20), (newer, 15), created={20: 3, 15: 15}))
    assert routes["reviews.prod.svc.cluster.local"].source == "prod/reviews-route"


def test_an_unrelated_change_produces_no_route_push_and_versions_stay():
    other = VS.replace("reviews-route", "details").replace("hosts: [reviews]", "hosts: [details]")
    before = compile_mesh(state_of((VS, 7)))
    after = compile_mesh(state_of((VS, 7), (other, 9)), previous=before)
    changed_clusters, changed_routes, removed_clusters, removed_routes = diff(*before, *after)
    assert [r.host for r in changed_routes] == ["details.prod.svc.cluster.local"]
    assert removed_routes == []
    assert after[1]["reviews.prod.svc.cluster.local"] is before[1]["reviews.prod.svc.cluster.local"]


def test_a_deleted_virtual_service_is_a_removed_route_host():
    before = compile_mesh(state_of((VS, 7)))
    after = compile_mesh(MeshState(), previous=before)
    _, _, removed_clusters, removed_routes = diff(*before, *after)
    assert removed_routes == ["reviews.prod.svc.cluster.local"]
    assert "ratings.shop.svc.cluster.local" in removed_clusters


TWO_RULES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /v3}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
  tcp:
  - route: [{destination: {host: reviews, subset: v9}}]
"""
DR_V1 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""
DR_V1_V3 = DR_V1.replace("subsets: [{name: v1, labels: {version: v1}}]",
                         "subsets: [{name: v1, labels: {version: v1}}, {name: v3, labels: {version: v3}}]")


def _undefined(route: xds.RouteConfig) -> list[tuple[str | None, bool]]:
    return [(d.subset, d.undefined) for r in [*route.rules, *route.tcp] for d in r.destinations]


def test_a_destination_to_a_subset_no_destination_rule_defines_is_marked_undefined():
    clusters, routes = compile_mesh(state_of((TWO_RULES, 5), (DR_V1, 6)))
    route = routes["reviews.default.svc.cluster.local"]
    assert _undefined(route) == [("v3", True), ("v1", False), ("v9", True)]
    assert [s.name for s in clusters["reviews.default.svc.cluster.local"].subsets] == ["v1"]


def test_every_subset_is_undefined_without_a_destination_rule_and_a_later_rule_re_pushes_the_route():
    previous = compile_mesh(state_of((TWO_RULES, 5)))
    assert _undefined(previous[1]["reviews.default.svc.cluster.local"]) == [("v3", True), ("v1", True),
                                                                            ("v9", True)]
    state = state_of((TWO_RULES, 5), (DR_V1_V3, 8))
    state.revision = 8
    clusters, routes = compile_mesh(state, previous)
    _, changed_routes, _, _ = diff(*previous, clusters, routes)
    assert [_undefined(r) for r in changed_routes] == [[("v3", False), ("v1", False), ("v9", True)]]
    assert changed_routes[0].version == 8  # above the route's own revision: proxies see it as newer
