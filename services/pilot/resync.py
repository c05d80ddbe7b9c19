"""Anti-entropy for pushes: a proxy that missed the last push and has nothing after it to show the gap.

A proxy notices a missed push only by the next one (its seq skips): without one it stays STALE until the
next change. On a NATS cluster that happens under faults: a proxy whose node dies reconnects to another
within milliseconds, but its subscription reaches the other nodes a moment later (nats-server forwards
interest over routes asynchronously), and a push published on another node in that moment is lost to it
(found by tests/integration/test_cluster_faults.py: one sidecar of three stayed on the old version).

So the leader looks at the proxies' ACKs (etcd /isthmus/status/proxies/) every `interval` seconds; when a
registered proxy that ACKed (not NACKed) has stayed behind the pushed version for at least `interval`, it
publishes one empty push, the next in sequence: proxies that hold everything apply it as a no-op and ACK,
the stale ones see the gap and ask for a snapshot. At most one such push per interval, and none while all
proxies are current. ISTHMUS_PUSH_RESYNC_INTERVAL (seconds, default 5; docs/ha.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from proto.xds import ProxyStatus

DEFAULT_INTERVAL = 5.0
ENV = "ISTHMUS_PUSH_RESYNC_INTERVAL"


def interval_from_env() -> float:
    """ISTHMUS_PUSH_RESYNC_INTERVAL in seconds (0.1 to 3600); ValueError naming it otherwise."""
    text = os.environ.get(ENV, "")
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.1 <= value <= 3600:  # also refuses NaN
        raise ValueError(f"{ENV} is {text[:40]!r}: give seconds between 0.1 and 3600")
    return value


class StaleWatch:
    """Which proxies lag, since when (monotonic seconds, given by the caller)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self.behind_since: dict[str, float] = {}

    def needs_resync(self, statuses: Iterable[ProxyStatus], pushed_version: int, now: float,
                     registered: set[str] | None = None) -> list[str]:
        """The proxies behind `pushed_version` for at least `interval` (those to wake with an empty push); their
        clocks restart, so each costs at most one push per interval. NACKing proxies (ok False: they refused a
        config and hold the previous one on purpose) and unregistered ones (gone) are left out."""
        behind: dict[str, float] = {}
        due: list[str] = []
        for status in statuses:
            if not status.ok or status.version >= pushed_version:
                continue
            if registered is not None and status.proxy_id not in registered:
                continue
            since = self.behind_since.get(status.proxy_id, now)
            if now - since >= self.interval:
                due.append(status.proxy_id)
                since = now
            behind[status.proxy_id] = since
        self.behind_since = behind
        return due
