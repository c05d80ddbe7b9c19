"""The snapshot publisher (proxy/telemetry/publisher.py) without a bus: its subject, seq, and a failed publish
that loses nothing (the next snapshot is cumulative). Over the real bus: tests/integration/test_proxy_metrics.py."""

from __future__ import annotations

import pytest

from proto.observations import MetricsSnapshot
from proto.subjects import TELEMETRY_METRICS
from proxy.core.request import RequestHead
from proxy.telemetry.exposition import SidecarMetrics
from proxy.telemetry.http_metrics import OutboundMetrics
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.publisher import SnapshotPublisher, interval_from_env
from runtime import bus as busmod


class FlakyBus:
    """Records what is published; refuses while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[tuple[str, MetricsSnapshot]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        if self.down:
            raise busmod.PayloadTooLarge("the message is too large")
        self.sent.append((subject, busmod.decode(payload, MetricsSnapshot)))


async def test_a_failed_publish_is_skipped_and_the_next_snapshot_carries_every_count():
    out = OutboundMetrics(LocalWorkload("sleep", "foo", {}))
    metrics = SidecarMetrics([out], [])
    publisher = SnapshotPublisher(metrics, "sleep-1", "foo", "sleep")
    bus = FlakyBus()
    out.record(RequestHead("GET", "httpbin", 8000, "/", []), None, 404, "NR", 0, 0, 1.0)
    assert await publisher.publish(bus)
    bus.down = True
    out.record(RequestHead("GET", "httpbin", 8000, "/", []), None, 404, "NR", 0, 0, 1.0)
    assert not await publisher.publish(bus) and publisher.failures == 1
    bus.down = False
    assert await publisher.publish(bus)
    assert [subject for subject, _ in bus.sent] == [f"{TELEMETRY_METRICS}.foo.sleep"] * 2
    assert [(s.seq, s.http[0].requests) for _, s in bus.sent] == [(1, 1), (3, 2)]
    assert bus.sent[0][1].instance == bus.sent[1][1].instance == publisher.instance


def test_the_interval_setting_is_checked(monkeypatch: pytest.MonkeyPatch):
    assert interval_from_env() == 5.0
    monkeypatch.setenv("ISTHMUS_METRICS_INTERVAL", "0.5")
    assert interval_from_env() == 0.5
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("ISTHMUS_METRICS_INTERVAL", bad)
        with pytest.raises(ValueError, match="ISTHMUS_METRICS_INTERVAL"):
            interval_from_env()
