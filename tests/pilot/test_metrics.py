"""Pilot's own metrics: convergence from a config commit to a proxy's ACK, pushes by type, rejects, validation."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from proto.xds import Ack, ClusterConfig, Push, RouteConfig
from services.pilot import metrics as m
from services.pilot.metrics import PilotMetrics


def count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels or None)
    return value or 0.0


def ack(proxy: str, version: int, ok: bool = True) -> Ack:
    return Ack(proxy_id=proxy, epoch="e", seq=1, version=version, ok=ok, error="" if ok else "bad")


def test_convergence_runs_from_the_commit_to_the_ack_that_covers_it() -> None:
    registry = CollectorRegistry()
    stats = PilotMetrics(registry, lambda: 3)
    stats.ack(ack("p", 10), now=100.0)  # a proxy's first ACK: where it starts, nothing observed
    assert count(registry, "pilot_proxy_convergence_time_count") == 0
    stats.committed(11, now=200.0)
    stats.ack(ack("p", 10), now=200.5)  # not covering 11 yet
    assert count(registry, "pilot_proxy_convergence_time_count") == 0
    stats.ack(ack("p", 12), now=201.7)  # covers 11 (12 may be an endpoint change: no commit of config)
    assert count(registry, "pilot_proxy_convergence_time_count") == 1
    assert abs(count(registry, "pilot_proxy_convergence_time_sum") - 1.7) < 1e-9
    assert count(registry, "pilot_proxy_convergence_time_bucket", le="1.0") == 0
    assert count(registry, "pilot_proxy_convergence_time_bucket", le="3.0") == 1
    stats.ack(ack("p", 12), now=300.0)  # the same version again: nothing new
    assert count(registry, "pilot_proxy_convergence_time_count") == 1
    assert count(registry, "pilot_xds") == 3


def test_a_nack_is_a_reject_and_pushes_count_by_type() -> None:
    registry = CollectorRegistry()
    stats = PilotMetrics(registry, lambda: 0)
    stats.ack(ack("p", 5, ok=False))
    stats.pushed(Push(epoch="e", seq=1, version=1, routes=[RouteConfig(host="a", version=1)]))
    stats.pushed(Push(epoch="e", seq=2, version=2, clusters=[ClusterConfig(host="a", version=2)]))
    stats.served_snapshot(True, True, False)
    text = generate_latest(registry).decode()
    assert 'pilot_total_xds_rejects{type="push"} 1.0' in text
    assert 'pilot_xds_pushes{type="rds"} 2.0' in text and 'pilot_xds_pushes{type="cds"} 2.0' in text
    assert 'pilot_xds_pushes{type="eds"} 2.0' in text and 'type="lds"' not in text


def test_validation_outcomes() -> None:
    registry = CollectorRegistry()
    stats = PilotMetrics(registry, lambda: 0)
    stats.applied(b'{"ok": true, "revision": 4}')
    stats.applied(b'{"ok": false, "errors": [{"document": 0, "message": "spec.hosts: required"}]}')
    stats.applied(b'{"ok": false, "error": "deadline passed"}')
    stats.applied(b"not json")
    text = generate_latest(registry).decode()
    assert "galley_validation_passed 1.0" in text
    assert 'galley_validation_failed{reason="invalid"} 1.0' in text and 'reason="other"} 1.0' in text


def test_commit_times_and_proxies_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(m, "MAX_COMMITS", 3)
    monkeypatch.setattr(m, "MAX_PROXIES", 2)
    stats = PilotMetrics(CollectorRegistry(), lambda: 0)
    for revision in range(1, 5):
        stats.committed(revision, now=float(revision))
    assert list(stats.commits) == [2, 3, 4]
    for proxy in ("a", "b", "c"):
        stats.ack(ack(proxy, 1))
    assert list(stats.acked) == ["b", "c"]
