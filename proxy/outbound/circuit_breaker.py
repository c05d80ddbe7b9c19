"""Circuit breaking: DestinationRule connectionPool limits per upstream cluster (outbound|port|subset|host).

    Breaker   one per cluster with limits; none at all (no cost) for a cluster without them

Envoy's thresholds, as Istio sets them: `tcp.maxConnections` caps the connections to the cluster across
its endpoints, `http.http1MaxPendingRequests` the requests waiting for one. An HTTP/1.1 upstream
connection carries one request at a time, so the breaker counts requests *in flight* against
maxConnections (idle keep-alive connections are not counted, which Envoy does count). A request that
finds the cluster full waits in a FIFO of at most max_pending requests (0: Envoy's default, unlimited,
as Istio's unset); one that finds the queue full too fails at once with Overflow (503, flag UO).
A waiting request leaves the queue when a slot frees, or when it is given up (route timeout, client
gone): Target.release() handles both.

The exchange drives it through its Target: `enter(target)` before a try is sent, `leave()` when the try
ends (Target.release).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from proto.xds import PoolLimits
from proxy.errors import Overflow

if TYPE_CHECKING:
    from proxy.outbound.target import Target

UNLIMITED = 1 << 32  # Envoy's default thresholds are 1024; Istio raises unset ones to 2^32 - 1


class Breaker:
    __slots__ = ("name", "max_active", "max_pending", "connect_timeout", "active", "waiting", "overflows")

    def __init__(self, name: str, limits: PoolLimits) -> None:
        self.name = name
        self.max_active = limits.max_connections or UNLIMITED
        self.max_pending = limits.max_pending or UNLIMITED
        self.connect_timeout = limits.connect_timeout_ms / 1000.0 if limits.connect_timeout_ms else None
        self.active = 0  # requests in flight (each holds one upstream connection)
        self.waiting: deque[Target] = deque()  # requests waiting for a slot, oldest first
        self.overflows = 0  # requests answered 503 UO: a stat for /clusters

    def enter(self, target: Target) -> bool:
        """True: go now. False: queued, `target.resume()` runs when a slot frees. Raises Overflow."""
        if self.active < self.max_active:
            self.active += 1
            return True
        if len(self.waiting) < self.max_pending:
            self.waiting.append(target)
            return False
        self.overflows += 1
        raise Overflow(f"upstream overflow: {self.name} has {self.active} requests in flight and "
                       f"{len(self.waiting)} waiting")

    def leave(self) -> None:
        """A request in flight is over: its slot goes to the oldest waiting request, if any."""
        waiting = self.waiting
        if waiting:
            target = waiting.popleft()  # keeps the slot: active is unchanged
            target.admitted(self)
        else:
            self.active -= 1

    def forget(self, target: Target) -> None:
        """A waiting request was given up."""
        try:
            self.waiting.remove(target)
        except ValueError:
            pass

    def stats(self) -> dict[str, int]:
        return {"max_connections": 0 if self.max_active == UNLIMITED else self.max_active,
                "max_pending": 0 if self.max_pending == UNLIMITED else self.max_pending,
                "active": self.active, "pending": len(self.waiting), "overflows": self.overflows}
