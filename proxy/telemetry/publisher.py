"""Cumulative metrics snapshots to the telemetry service, over the bus.

Every `interval` seconds (ISTHMUS_METRICS_INTERVAL, default 5) the sidecar publishes its MetricsSnapshot on
`<TELEMETRY_METRICS>.<namespace>.<service account>` (proto.subjects.identity_subject: a proxy may publish only
under its own identity, proto/busauth.py), and once more when it stops. `instance` is random per process start
and `seq` grows by one per snapshot, so the telemetry service tells a restart (a counter reset) from a lost
message. A publish that fails (bus away, message too large) is logged and skipped: the next snapshot is
cumulative and carries everything. A snapshot holds at most the recorders' label sets (their bound).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

from proto.subjects import TELEMETRY_METRICS, identity_subject
from proxy.telemetry.exposition import SidecarMetrics
from runtime import bus as busmod
from runtime.log import get_logger

log = get_logger("proxy.telemetry")

DEFAULT_INTERVAL = 5.0


def interval_from_env() -> float:
    """ISTHMUS_METRICS_INTERVAL in seconds (> 0), else DEFAULT_INTERVAL; ValueError names the variable."""
    text = os.environ.get("ISTHMUS_METRICS_INTERVAL", "")
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ValueError(f"ISTHMUS_METRICS_INTERVAL={text!r} is not a number of seconds in (0, 3600]")
    return value


class SnapshotPublisher:
    def __init__(self, metrics: SidecarMetrics, proxy_id: str, namespace: str, service_account: str,
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.metrics = metrics
        self.proxy_id = proxy_id
        self.namespace = namespace
        self.subject = identity_subject(TELEMETRY_METRICS, namespace, service_account)
        self.interval = interval
        self.instance = secrets.token_hex(8)  # a new one per process start: its counters start from zero
        self.seq = 0
        self.failures = 0

    async def run(self, bus: Any) -> None:
        """Publish every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.publish(bus)

    async def publish(self, bus: Any) -> bool:
        """One snapshot now; False (logged) when it could not be sent."""
        self.seq += 1
        snapshot = self.metrics.snapshot(self.proxy_id, self.instance, self.namespace, self.seq)
        try:
            await bus.publish(self.subject, busmod.encode(snapshot))
        except Exception as exc:  # the bus away, a payload over max_payload: the next snapshot carries it all
            self.failures += 1
            log.warning("metrics snapshot not published", subject=self.subject, seq=self.seq,
                        error=str(exc) or type(exc).__name__)
            return False
        return True
