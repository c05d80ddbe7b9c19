"""proxy/outbound/outlier.py: consecutive errors eject an endpoint; it returns after base × times ejected."""

from __future__ import annotations

from proto.xds import ClusterConfig, Endpoint, OutlierPolicy, Push
from proxy.control.config_state import ConfigState
from proxy.core.errors import NoHealthyUpstream
from proxy.outbound.outlier import Detector
from proxy.outbound.router import MeshRouter
from proxy.core.request import RequestHead

import pytest


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


EPS = [Endpoint(address=f"10.0.0.{i}") for i in range(1, 5)]


def detector(**policy) -> tuple[Detector, Clock, list[int]]:
    clock, changes = Clock(), []
    d = Detector(OutlierPolicy(**policy), EPS, lambda: changes.append(1), clock)
    return d, clock, changes


def test_consecutive_5xx_eject_and_a_success_in_between_resets_the_count():
    d, _, changes = detector(consecutive_5xx=3, max_ejection_percent=100)
    for status in (500, 503, 200, 500, 502):
        d.report(EPS[0], status)
    assert d.ejected == set()
    d.report(EPS[0], 0)  # a connect failure counts as a 5xx
    assert d.ejected == {id(EPS[0])} and changes == [1]
    assert d.usable(EPS) == EPS[1:]


def test_gateway_errors_count_apart_and_a_500_resets_them():
    d, _, _ = detector(consecutive_5xx=0, consecutive_gateway=2, max_ejection_percent=100)
    for status in (503, 500, 504):
        d.report(EPS[1], status)
    assert d.ejected == set()
    d.report(EPS[1], 502)
    assert d.ejected == {id(EPS[1])}


def test_ejection_time_grows_with_repeated_ejections_and_endpoints_return_on_the_interval():
    d, clock, changes = detector(consecutive_5xx=1, base_ejection_ms=1000, max_ejection_percent=100)
    d.report(EPS[0], 500)
    clock.now += 0.9
    d.sweep()
    assert d.ejected == {id(EPS[0])}
    clock.now += 0.2
    d.sweep()
    assert d.ejected == set() and len(changes) == 2
    d.report(EPS[0], 500)  # second ejection: 2 × base
    assert d.health[id(EPS[0])].ejected_until == pytest.approx(clock.now + 2.0)
    assert d.endpoint_stats(EPS[0])["times_ejected"] == 2


def test_max_ejection_percent_caps_ejections_but_one_is_always_allowed():
    d, _, _ = detector(consecutive_5xx=1, max_ejection_percent=10)
    for ep in EPS:
        d.report(ep, 503)
    assert d.ejected == {id(EPS[0])}
    d, _, _ = detector(consecutive_5xx=1, max_ejection_percent=50)
    for ep in EPS:
        d.report(ep, 503)
    assert len(d.ejected) == 2


def test_below_min_health_percent_ejections_are_ignored():
    d, _, _ = detector(consecutive_5xx=1, max_ejection_percent=100, min_health_percent=60)
    d.report(EPS[0], 503)
    assert len(d.usable(EPS)) == 3  # 75% left: ejections hold
    d.report(EPS[1], 503)
    assert d.usable(EPS) == list(EPS)  # 50% < 60%: panic, all endpoints


def test_the_router_skips_ejected_endpoints_and_has_none_when_all_are_ejected():
    host = "reviews.default.svc.cluster.local"
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[ClusterConfig(
        host=host, version=1, ports=[9080], endpoints=EPS[:2],
        outlier=OutlierPolicy(consecutive_5xx=1, max_ejection_percent=100))]))
    router = MeshRouter(state)
    head = RequestHead("GET", "reviews", 9080, "/", [])
    target = router.pick(head)
    detector = target.outlier
    detector.clock = Clock()  # no event loop here: no sweep timer
    detector.report(target.endpoint, 503)
    assert {router.pick(head).address for _ in range(10)} == {EPS[0].address, EPS[1].address} - {target.address}
    other = router.pick(head)
    detector.report(other.endpoint, 503)
    with pytest.raises(NoHealthyUpstream):
        router.pick(head)
    status = state.clusters_status()[0]
    assert status["outlier_detection"] and all(e["ejected"] for e in status["endpoints"])


def test_without_outlier_detection_targets_carry_no_detector():
    host = "reviews.default.svc.cluster.local"
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True,
                     clusters=[ClusterConfig(host=host, version=1, ports=[9080], endpoints=EPS)]))
    assert MeshRouter(state).pick(RequestHead("GET", "reviews", 9080, "/", [])).outlier is None


def test_an_ejection_survives_a_push_that_changes_the_cluster():
    host = "reviews.default.svc.cluster.local"
    od = OutlierPolicy(consecutive_5xx=1, max_ejection_percent=100)
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[ClusterConfig(
        host=host, version=1, ports=[9080], endpoints=EPS[:2], outlier=od)]))
    router = MeshRouter(state)
    head = RequestHead("GET", "reviews", 9080, "/", [])
    target = router.pick(head)
    target.outlier.clock = Clock()
    target.outlier.report(target.endpoint, 503)
    state.apply(Push(epoch="e", seq=2, version=2, clusters=[ClusterConfig(  # a third endpoint registers
        host=host, version=2, ports=[9080], endpoints=[Endpoint(address=target.address), *EPS[2:4]], outlier=od)]))
    assert target.address not in {router.pick(head).address for _ in range(10)}
