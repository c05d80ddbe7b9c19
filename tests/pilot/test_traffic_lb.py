"""Request matching and load balancing in pilot: services/pilot/validate/ accepts what Isthmus runs and rejects the
rest with a path; compile/routes.py and compile/clusters.py translate it as Istio merges it."""

from __future__ import annotations

import textwrap

import pytest

from proto.xds import HashPolicy, LbPolicy, LocalityPolicy, RouteMatch, StringMatch
from services.pilot.compile import MeshState, Stored, compile_mesh
from services.pilot.validate import decode_documents

REVIEWS = "reviews.prod.svc.cluster.local"


def decode(text: str):
    return decode_documents(textwrap.dedent(text))


def by_path(problems, path: str):
    found = [p for p in problems if p.path == path]
    assert found, f"no problem at {path}; got {[(p.path, p.message) for p in problems]}"
    return found[0]


def compiled(text: str):
    resources, errors, _ = decode(text)
    assert errors == [], errors
    stored = {(r.kind, r.metadata.namespace, r.metadata.name): Stored(r, 7) for r in resources}
    return compile_mesh(MeshState.build(stored))


def vs(match: str) -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: reviews, namespace: prod}}
    spec:
      hosts: [reviews]
      http:
      - match:
        - {match}
        route:
        - destination: {{host: reviews}}
    """


def dr(policy: str, subsets: str = "") -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: reviews, namespace: prod}}
    spec:
      host: reviews
      trafficPolicy: {policy}
      subsets: [{subsets}]
    """


# --- VirtualService matches ----------------------------------------------------------------------

def test_every_match_field_compiles_to_the_proxy_match():
    full = ("{uri: {exact: /API}, ignoreUriCase: true, scheme: {exact: http}, authority: {prefix: reviews}, "
            "method: {exact: GET}, headers: {X-User: {}}, withoutHeaders: {x-canary: {exact: 'true'}}, "
            "queryParams: {v: {regex: 'v[0-9]'}}, port: 9080, sourceLabels: {app: frontend}, "
            "sourceNamespace: shop, gateways: [mesh]}")
    _, routes = compiled(vs(full))
    assert routes[REVIEWS].rules[0].matches == [RouteMatch(
        uri=StringMatch(exact="/API"), ignore_uri_case=True, scheme=StringMatch(exact="http"),
        authority=StringMatch(prefix="reviews"), method=StringMatch(exact="GET"), headers={"x-user": StringMatch()},
        without_headers={"x-canary": StringMatch(exact="true")}, query_params={"v": StringMatch(regex="v[0-9]")},
        port=9080, source_labels={"app": "frontend"}, source_namespace="shop")]


def test_a_match_for_other_gateways_is_dropped_and_a_rule_left_without_matches_never_applies():
    text = vs("{gateways: [edge], headers: {x: {exact: '1'}}}") + """
      - route:
        - destination: {host: reviews, subset: v1}
    """
    resources, errors, warnings = decode(text)
    assert errors == []
    assert "never applies" in by_path(warnings, "spec.http[0].match[0].gateways").message  # VS not bound to edge
    _, routes = compiled(text)
    rules = routes[REVIEWS].rules
    assert len(rules) == 1 and rules[0].destinations[0].subset == "v1"  # not a catch-all to `reviews`


@pytest.mark.parametrize("match,path,message", [
    ("{authority: {}}", "spec.http[0].match[0].authority", "one of"),
    ("{scheme: {exact: http, prefix: h}}", "spec.http[0].match[0].scheme", "only one of"),
    ("{queryParams: {v: {regex: '(?=x)'}}}", "spec.http[0].match[0].queryParams[v].regex", "RE2"),
    ("{withoutHeaders: {'bad header': {exact: x}}}", "spec.http[0].match[0].withoutHeaders[bad header]",
     "not a valid header name"),
    ("{sourceLabels: {app: 'not valid!'}}", "spec.http[0].match[0].sourceLabels[app]", "label value"),
    ("{sourceNamespace: Not_A_Namespace}", "spec.http[0].match[0].sourceNamespace", "namespace"),
    ("{statPrefix: x}", "spec.http[0].match[0].statPrefix", "not supported"),
])
def test_bad_matches_are_errors_with_their_path(match, path, message):
    resources, errors, _ = decode(vs(match))
    assert resources == []
    assert message in by_path(errors, path).message


# --- DestinationRule load balancing --------------------------------------------------------------

def test_simple_policies_and_their_aliases_compile():
    for simple, lb in (("LEAST_REQUEST", "LEAST_REQUEST"), ("LEAST_CONN", "LEAST_REQUEST"),
                       ("UNSPECIFIED", "LEAST_REQUEST"), ("RANDOM", "RANDOM"), ("PASSTHROUGH", "PASSTHROUGH")):
        clusters, _ = compiled(dr(f"{{loadBalancer: {{simple: {simple}}}}}"))
        assert clusters[REVIEWS].lb == lb, simple


@pytest.mark.parametrize("hash_yaml,expected", [
    ("{httpHeaderName: X-User}", HashPolicy(header="x-user")),
    ("{httpQueryParameterName: user, maglev: {tableSize: 251}}", HashPolicy(query="user", table="MAGLEV", size=251)),
    ("{useSourceIp: true, ringHash: {minimumRingSize: 64}}", HashPolicy(source_ip=True, size=64)),
    ("{httpHeaderName: x, minimumRingSize: 32}", HashPolicy(header="x", size=32)),
    ("{httpHeaderName: x, maglev: {}}", HashPolicy(header="x", table="MAGLEV", size=65537)),
    ("{httpCookie: {name: user, path: /, ttl: 1h}}", HashPolicy(cookie="user", cookie_path="/", cookie_ttl_s=3600.0)),
    ("{httpCookie: {name: user, ttl: 0s}}", HashPolicy(cookie="user", cookie_ttl_s=0.0)),
])
def test_consistent_hash_compiles_its_key_and_table(hash_yaml, expected):
    clusters, _ = compiled(dr(f"{{loadBalancer: {{consistentHash: {hash_yaml}}}}}"))
    assert (clusters[REVIEWS].lb, clusters[REVIEWS].hash) == ("CONSISTENT_HASH", expected)


@pytest.mark.parametrize("policy,path,message", [
    ("{loadBalancer: {simple: MAGIC}}", "spec.trafficPolicy.loadBalancer.simple", "unknown load balancer"),
    ("{loadBalancer: {consistentHash: {}}}", "spec.trafficPolicy.loadBalancer.consistentHash", "hash key"),
    ("{loadBalancer: {consistentHash: {httpHeaderName: x, useSourceIp: true}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash", "only one hash key"),
    ("{loadBalancer: {simple: RANDOM, consistentHash: {httpHeaderName: x}}}", "spec.trafficPolicy.loadBalancer",
     "only one of"),
    ("{loadBalancer: {consistentHash: {httpCookie: {name: s, ttl: soon}}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl", "not a duration"),
    ("{loadBalancer: {consistentHash: {httpCookie: {name: s}}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl", "ttl required"),
    ("{loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 1000}}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "prime"),
    ("{loadBalancer: {consistentHash: {httpHeaderName: x, ringHash: {}, maglev: {}}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash", "only one of ringHash"),
    ("{loadBalancer: {localityLbSetting: {distribute: [{from: a, to: {b: 100}}]}}}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute", "not supported"),
    ("{loadBalancer: {localityLbSetting: {failoverPriority: [x]}}}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority", "not supported"),
    ("{loadBalancer: {localityLbSetting: {failover: [{from: us-east, to: us-east}]}}}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "should not be the same"),
    ("{loadBalancer: {localityLbSetting: {failover: [{from: us-east/z1, to: eu}]}}}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].from", "region to region"),
    ("{loadBalancer: {warmupDurationSecs: 10s}}", "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
     "not supported"),
    ("{portLevelSettings: [{loadBalancer: {simple: RANDOM}}]}", "spec.trafficPolicy.portLevelSettings[0].port",
     "valid port"),
    ("{portLevelSettings: [{port: {number: 80}}]}", "spec.trafficPolicy.portLevelSettings[0]", "at least one"),
])
def test_load_balancer_settings_isthmus_cannot_run_are_rejected_with_their_path(policy, path, message):
    resources, errors, _ = decode(dr(policy))
    assert resources == []
    assert message in by_path(errors, path).message


def test_locality_settings_compile_and_disabled_means_none():
    clusters, _ = compiled(dr("{loadBalancer: {localityLbSetting: {failover: [{from: us-east, to: eu-west}]}}}"))
    assert clusters[REVIEWS].locality == LocalityPolicy(failover={"us-east": "eu-west"})
    clusters, _ = compiled(dr("{loadBalancer: {localityLbSetting: {enabled: false, failover: [{from: a, to: b}]}}}"))
    assert clusters[REVIEWS].locality is None


def test_port_and_subset_levels_merge_as_istio_merges_traffic_policies():
    clusters, _ = compiled(dr(
        "{loadBalancer: {simple: RANDOM}, portLevelSettings: [{port: {number: 9090}, loadBalancer: "
        "{consistentHash: {httpHeaderName: x-user}}}]}",
        "{name: plain, labels: {v: '1'}}, "
        "{name: own, labels: {v: '2'}, trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}}, "
        "{name: ported, labels: {v: '3'}, trafficPolicy: {portLevelSettings: [{port: {number: 9080}, "
        "loadBalancer: {simple: ROUND_ROBIN}}]}}"))
    cluster = clusters[REVIEWS]
    header = LbPolicy(lb="CONSISTENT_HASH", hash=HashPolicy(header="x-user"))
    assert (cluster.lb, cluster.port_lb) == ("RANDOM", {9090: header})
    plain, own, ported = cluster.subsets
    assert (plain.lb, plain.port_lb) == (None, {})  # uses the cluster's, port level included
    # a subset's loadBalancer overrides the top-level port-level one too
    assert (own.lb, own.port_lb) == ("LEAST_REQUEST", {9090: LbPolicy(lb="LEAST_REQUEST")})
    # no loadBalancer of its own: the top level, with the top-level port settings, then its own ports
    assert (ported.lb, ported.port_lb) == ("RANDOM", {9080: LbPolicy(lb="ROUND_ROBIN"), 9090: header})
