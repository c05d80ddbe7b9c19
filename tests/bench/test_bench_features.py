"""What the data-plane benchmark claims of its Isthmus rows (bench/dataplane/features.py, issue 15): the
AuthorizationPolicy of ten rules is valid Istio config, the benchmark's request is allowed by the last rule
only (every rule is evaluated: the worst case for ALLOW) and anything else is denied; the harness's check of a
sidecar's state fails on each feature that is not as claimed; the issue-15 ratios are computed as printed."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from bench.dataplane import issue15
from bench.dataplane.features import BENCH_PATHS, DENIED_PATH, RULES, authz_policy, check_counted, check_sidecar
from bench.dataplane.topology import HOST_HEADER, MTLS_NAMESPACE, NAMESPACE
from proto.xds import AuthzPolicy
from proxy.core.downstream import Downstream
from proxy.core.errors import AccessDenied
from proxy.core.request import RequestHead
from proxy.inbound.authz.engine import Authorization
from services.pilot.validate import decode_documents

APP_PORT, TCP_PORT = 8080, 8090  # nginx's two ports in the benchmark (random there)
CLIENT = f"cluster.local/ns/{MTLS_NAMESPACE}/sa/default"  # the mTLS client sidecar's identity


def rules_of(namespace: str, mtls: bool) -> list[Any]:
    resources, errors, warnings = decode_documents(authz_policy(namespace, mtls, None if mtls else TCP_PORT))
    assert (errors, warnings) == ([], [])
    (policy,) = resources
    assert policy.metadata.namespace == namespace and policy.spec.action == "ALLOW"
    assert policy.spec.selector.match_labels == {"app": "bench-backend"}
    assert len(policy.spec.rules) == RULES
    return list(policy.spec.rules)


def allowed(rules: list[Any], namespace: str, path: str, caller: Downstream, method: str = "GET") -> bool:
    check = Authorization([AuthzPolicy(f"{namespace}/bench-backend", "ALLOW", rules)]).http
    assert check is not None
    head = RequestHead(method, "bench-backend", 9080, path, [(b"host", HOST_HEADER.encode())], downstream=caller)
    try:
        check(head)
    except AccessDenied:
        return False
    return True


CASES = [(NAMESPACE, False, Downstream(None, "127.0.0.1", "127.0.0.1", APP_PORT)),
         (MTLS_NAMESPACE, True, Downstream(CLIENT, "127.0.0.1", "127.0.0.1", APP_PORT))]


@pytest.mark.parametrize(("namespace", "mtls", "caller"), CASES, ids=["plaintext", "mtls"])
def test_the_benchmarks_request_is_allowed_by_the_last_rule_alone(namespace: str, mtls: bool,
                                                                  caller: Downstream) -> None:
    rules = rules_of(namespace, mtls)
    for path in BENCH_PATHS:
        assert allowed(rules, namespace, path, caller)
        assert not allowed(rules[:-1], namespace, path, caller)  # the nine before it all evaluated, none allows
    assert not allowed(rules, namespace, DENIED_PATH, caller)  # the 403 the harness checks before measuring
    assert not allowed(rules, namespace, "/", caller, method="POST")


def test_the_mtls_rules_name_the_client_sidecars_identity() -> None:
    rules = rules_of(MTLS_NAMESPACE, True)
    for other in (Downstream(None, "127.0.0.1", "127.0.0.1", APP_PORT),
                  Downstream(f"cluster.local/ns/{MTLS_NAMESPACE}/sa/other", "127.0.0.1", "127.0.0.1", APP_PORT)):
        assert not allowed(rules, MTLS_NAMESPACE, "/", other)


def test_the_plaintext_policy_lets_the_tcp_pairs_connections_through_its_port_rule_only() -> None:
    rules = rules_of(NAMESPACE, False)
    tcp = Authorization([AuthzPolicy(f"{NAMESPACE}/bench-backend", "ALLOW", rules)]).tcp
    assert tcp is not None
    assert tcp(Downstream(None, "127.0.0.1", "127.0.0.1", TCP_PORT))[0]
    assert not tcp(Downstream(None, "127.0.0.1", "127.0.0.1", APP_PORT))[0]  # the HTTP port: HTTP rules only


class FakeSidecar:
    def __init__(self, **changes: Any) -> None:
        self.pid = os.getpid()  # /proc/<pid>/cmdline and environ: pytest's, without --access-log
        side = {"enabled": True, "sampling_percent": 1.0, "report": True}
        self.dump: dict[str, Any] = {
            "proxy": {"id": "bench-backend-vm-1.default", "tracing": {"client": dict(side), "server": dict(side)},
                      "inbound_authz": {"rules": RULES}},
            "mesh": {"trace_sampling": 1.0}, "access_logging": [],
            "security": {"authorization": [{"name": "default/bench-backend", "action": "ALLOW", "rules": RULES}]}}
        for path, value in changes.items():
            *parents, last = path.split(".")
            node = self.dump
            for key in parents:
                node = node[key]
            node[last] = value

    def admin(self, path: str) -> tuple[int, bytes]:
        assert path == "/config_dump"
        return 200, json.dumps(self.dump).encode()


@pytest.mark.skipif("ISTHMUS_ACCESS_LOG" in os.environ, reason="this process's own environment turns a log on")
def test_a_sidecar_with_the_features_as_claimed_passes_and_each_difference_fails() -> None:
    state = check_sidecar(FakeSidecar(), RULES)
    assert state["authz_rules"] == RULES and state["access_log_flag"] == ""
    wrong = {"proxy.tracing.server.sampling_percent": 100.0, "mesh.trace_sampling": 0.0,
             "proxy.tracing.client.report": False,
             "access_logging": [{"provider": "envoy", "mode": 0, "disabled": False, "filter": ""}],
             "proxy.inbound_authz.rules": 0}
    for path, value in wrong.items():
        with pytest.raises(RuntimeError, match="bench-backend-vm-1"):
            check_sidecar(FakeSidecar(**{path: value}), RULES)
    check_sidecar(FakeSidecar(**{"access_logging": [{"disabled": True}]}), RULES)  # a disabled entry logs nothing


def test_a_row_whose_sidecar_counted_fewer_requests_than_answered_fails() -> None:
    assert check_counted("isthmus-pair", "server", 10.0, 1010.0, 1000) == 1000.0
    with pytest.raises(RuntimeError, match="isthmus-pair"):
        check_counted("isthmus-pair", "server", 10.0, 900.0, 1000)


def _row(rps: float, cpu_max: float, cpu_1k: float, rss: float, roles: tuple[str, ...]) -> dict[str, float]:
    row = {"rps": rps}
    for role in roles:  # s per 1k requests, split evenly over the proxies
        row.update({f"{role}.cpu_per_1k_max_s": cpu_max / len(roles), f"{role}.cpu_per_1k_s": cpu_1k / len(roles),
                    f"{role}.rss_mb_1k": rss, f"{role}.rss_mb_max": rss - 1})
    return row


def test_the_issue_15_ratios_compare_like_with_like() -> None:
    pair, single = ("client", "server"), ("server",)
    rows = {"haproxy-pair": _row(10000, 0.040, 0.060, 15, pair), "bare-pair": _row(11000, 0.050, 0.060, 25, pair),
            "isthmus-pair": _row(5000, 0.080, 0.120, 60, pair),
            "haproxy-tls-pair": _row(8000, 0.050, 0.080, 20, pair),
            "bare-tls-pair": _row(6000, 0.060, 0.090, 28, pair),
            "isthmus-mtls-pair": _row(4000, 0.100, 0.160, 70, pair),
            "haproxy-single": _row(20000, 0.020, 0.050, 15, single),
            "bare-single": _row(20000, 0.020, 0.050, 25, single),
            "isthmus-single": _row(10000, 0.040, 0.050, 61, single)}
    r = issue15.per_rep(rows)
    assert r["rps_ratio_bare_haproxy_pair"] == pytest.approx(1.1)
    assert r["rps_ratio_isthmus_bare_mtls_pair"] == pytest.approx(4000 / 6000)
    assert r["cpu_1k_ratio_pair"] == pytest.approx(2.0)
    assert r["cpu_1k_ratio_mtls_pair"] == pytest.approx(2.0)
    assert r["cpu_max_ratio_single"] == pytest.approx(2.0)
    assert r["isthmus_rss_mb_worst"] == 70
    assert {key for key, *_ in issue15.TARGETS} <= {*r, "rps_ratio_pair", "rps_ratio_single", "rps_ratio_mtls_pair"}


def test_the_full_plan_leaves_room_to_measure_a_disturbed_row_again():
    """A budget below the undisturbed run's own estimate would never allow the retries the plan promises."""
    from bench.dataplane.run import PLANS, ROWS

    full = PLANS["full"]
    undisturbed = full.repetitions * (len(ROWS) + 1) * full.row_s
    assert full.retries > 0
    assert full.budget_s >= undisturbed + 3 * full.row_s
    assert full.budget_s <= 16 * 60  # the README's bound on a full data-plane run
