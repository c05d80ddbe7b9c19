"""DestinationRule connectionPool: validation (services/pilot/validate/destination_rule.py) and compilation (clusters.py)."""

from __future__ import annotations

import textwrap

import pytest

from proto.xds import Keepalive, PoolLimits, RetryBudget
from services.pilot.compile import compile_mesh
from services.pilot.validate import decode_documents
from tests.pilot.test_compile_clusters import REVIEWS, WORKLOADS, make_state


def dr(traffic_policy: str, subsets: str = "") -> str:
    return textwrap.dedent(f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: reviews, namespace: prod}}
    spec:
      host: reviews
      trafficPolicy: {traffic_policy}
    """) + subsets


def problems(text: str) -> list[tuple[str, str]]:
    _, errors, _ = decode_documents(text)
    return [(e.path, e.message) for e in errors]


def test_a_connection_pool_with_the_supported_fields_is_accepted():
    assert problems(dr("{connectionPool: {tcp: {maxConnections: 1, connectTimeout: 250ms}, "
                       "http: {http1MaxPendingRequests: 1}}}")) == []


def test_every_connection_pool_field_istio_documents_for_http1_is_accepted():
    assert problems(dr("{connectionPool: {tcp: {maxConnections: 1, connectTimeout: 250ms, maxConnectionDuration: 1h,"
                       " idleTimeout: 0s, tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}},"
                       " http: {http1MaxPendingRequests: 1, http2MaxRequests: 10, maxRequestsPerConnection: 1,"
                       " maxRetries: 3, idleTimeout: 30s}}, retryBudget: {percent: 25, minRetryConcurrency: 2,"
                       " budgetInterval: 10s}}")) == []


@pytest.mark.parametrize("policy, path, message", [
    ("{connectionPool: {tcp: {tcpKeepalive: {time: 1500ms}}}}",
     "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time", "whole seconds"),
    ("{connectionPool: {tcp: {tcpKeepalive: {probes: 500}}}}",
     "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.probes", "0..127"),
    ("{connectionPool: {http: {maxRequestsPerConnection: -1}}}",
     "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection", "non-negative"),
    ("{connectionPool: {http: {idleTimeout: 0s}}}", "spec.trafficPolicy.connectionPool.http.idleTimeout",
     "at least 1ms"),
    ("{retryBudget: {percent: 150}}", "spec.trafficPolicy.retryBudget.percent", "0..100"),
    ("{retryBudget: {budgetInterval: soon}}", "spec.trafficPolicy.retryBudget.budgetInterval", "not a duration"),
    ("{connectionPool: {}}", "spec.trafficPolicy.connectionPool", "at least one field"),
    ("{connectionPool: {tcp: {maxConnections: -1}}}", "spec.trafficPolicy.connectionPool.tcp.maxConnections",
     "non-negative"),
    ("{connectionPool: {http: {http1MaxPendingRequests: -2}}}",
     "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests", "non-negative"),
    ("{connectionPool: {tcp: {connectTimeout: 1x}}}", "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
     "not a duration"),
    ("{portLevelSettings: [{port: {number: 9080}, connectionPool: {tcp: {maxConnections: -1}}}]}",
     "spec.trafficPolicy.portLevelSettings[0].connectionPool.tcp.maxConnections", "non-negative"),
])
def test_bad_connection_pool_values_are_errors_at_their_path(policy: str, path: str, message: str) -> None:
    found = problems(dr(policy))
    assert any(p == path and message in m for p, m in found), found


@pytest.mark.parametrize("field", [
    "http: {maxConcurrentStreams: 1}", "http: {h2UpgradePolicy: UPGRADE}", "http: {useClientProtocol: true}",
])
def test_connection_pool_fields_not_implemented_are_rejected(field: str) -> None:
    found = problems(dr(f"{{connectionPool: {{{field}}}}}"))
    assert found and all(p.startswith("spec.trafficPolicy.connectionPool") for p, _ in found), found


def test_outlier_detection_with_the_supported_fields_is_accepted() -> None:
    assert problems(dr("{outlierDetection: {consecutive5xxErrors: 1, consecutiveGatewayErrors: 2, interval: 1s, "
                       "baseEjectionTime: 30s, maxEjectionPercent: 50, minHealthPercent: 10}}")) == []


@pytest.mark.parametrize("od, path, message", [
    ("{interval: 1x}", "interval", "not a duration"),
    ("{baseEjectionTime: 0.5ms}", "baseEjectionTime", "at least 1ms"),
    ("{maxEjectionPercent: 101}", "maxEjectionPercent", "not in range 0..100"),
    ("{minHealthPercent: -1}", "minHealthPercent", "not in range 0..100"),
    ("{consecutive5xxErrors: -1}", "consecutive5xxErrors", "non-negative"),
])
def test_bad_outlier_detection_values_are_errors_at_their_path(od: str, path: str, message: str) -> None:
    found = problems(dr(f"{{outlierDetection: {od}}}"))
    assert any(p == f"spec.trafficPolicy.outlierDetection.{path}" and message in m for p, m in found), found


@pytest.mark.parametrize("policy", [
    "{outlierDetection: {consecutiveErrors: 1}}", "{outlierDetection: {consecutiveLocalOriginFailures: 1}}",
    "{outlierDetection: {splitExternalLocalOriginErrors: true}}",
    "{portLevelSettings: [{port: {number: 9080}, outlierDetection: {consecutive5xxErrors: 1}}]}",
])
def test_outlier_detection_fields_not_implemented_are_rejected(policy: str) -> None:
    assert problems(dr(policy)), policy


def test_outlier_detection_compiles_with_envoys_defaults_for_unset_fields():
    from proto.xds import OutlierPolicy
    cluster = compiled(dr("{outlierDetection: {baseEjectionTime: 2s}}",
                          "  subsets:\n"
                          "  - {name: own, labels: {version: v2}, trafficPolicy: "
                          "{outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: 1s}}}\n"
                          "  - {name: lbonly, labels: {version: v2}, "
                          "trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n"))
    assert cluster.outlier == OutlierPolicy(consecutive_5xx=5, base_ejection_ms=2000, interval_ms=10_000,
                                            max_ejection_percent=10, min_health_percent=0)
    own, lbonly = cluster.subsets
    assert own.outlier == OutlierPolicy(consecutive_5xx=0, consecutive_gateway=3, interval_ms=1000)
    assert lbonly.outlier == cluster.outlier


def compiled(text: str):
    resources, errors, _ = decode_documents(text)
    assert errors == [], errors
    from services.pilot.compile import MeshState, Stored
    state = MeshState.build({("DestinationRule", "prod", "reviews"): Stored(resources[0], 9)},
                            {w.id: (w, rev) for w, rev in WORKLOADS}, revision=9)
    return compile_mesh(state)[0][REVIEWS]


def test_limits_compile_per_level_and_port_as_istio_merges_them():
    cluster = compiled(dr(
        "{connectionPool: {tcp: {maxConnections: 5, connectTimeout: 1.5s}}, portLevelSettings: ["
        "{port: {number: 9080}, connectionPool: {http: {http1MaxPendingRequests: 2}}},"
        "{port: {number: 9090}, loadBalancer: {simple: RANDOM}}]}",
        "  subsets:\n"
        "  - {name: plain, labels: {version: v1}}\n"
        "  - {name: own, labels: {version: v2}, trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}}\n"
        "  - {name: lbonly, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n"))
    assert cluster.limits == PoolLimits(max_connections=5, connect_timeout_ms=1500)
    # a port-level connectionPool replaces the level's; a port without one keeps the level's (cluster.limits)
    assert cluster.port_limits == {9080: PoolLimits(max_pending=2)}
    plain, own, lbonly = cluster.subsets
    assert (plain.limits, plain.port_limits) == (None, {})  # no policy: the proxy uses the cluster's
    # Istio's order: top level, its port level, the subset's level, the subset's port level
    assert own.limits == PoolLimits(max_connections=1)
    assert own.port_limits == {9080: PoolLimits(max_connections=1)}
    assert (lbonly.limits, lbonly.port_limits) == (cluster.limits, cluster.port_limits)


def test_connection_settings_and_retry_budget_compile_with_istios_defaults():
    cluster = compiled(dr(
        "{connectionPool: {tcp: {maxConnectionDuration: 1m, idleTimeout: 0s, tcpKeepalive: {time: 30s, probes: 3}},"
        " http: {http2MaxRequests: 10, maxRequestsPerConnection: 1, maxRetries: 4, idleTimeout: 2s}},"
        " retryBudget: {minRetryConcurrency: 5}}",
        "  subsets:\n"
        "  - {name: own, labels: {version: v2}, trafficPolicy: {retryBudget: {percent: 50, budgetInterval: 10s}}}\n"))
    assert cluster.limits == PoolLimits(max_requests=10, max_requests_per_connection=1, max_retries=4,
                                        idle_timeout_ms=2000, max_connection_duration_ms=60_000,
                                        tcp_idle_timeout_ms=0, keepalive=Keepalive(time_s=30, probes=3),
                                        retry_budget=RetryBudget(percent=20.0, min_concurrency=5))
    # the subset's retryBudget replaces the top level's; its connectionPool is inherited
    (own,) = cluster.subsets
    assert own.limits.retry_budget == RetryBudget(percent=50.0, min_concurrency=3, interval_ms=10_000)
    assert own.limits.max_requests_per_connection == 1
    budget_only = compiled(dr("{retryBudget: {}}"))
    assert budget_only.limits == PoolLimits(retry_budget=RetryBudget())


def test_without_a_connection_pool_nothing_is_compiled():
    cluster = compile_mesh(make_state([(dr("{loadBalancer: {simple: RANDOM}}"), 9)], WORKLOADS))[0][REVIEWS]
    assert (cluster.limits, cluster.port_limits) == (None, {})
