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

`http.http2MaxRequests` caps requests in flight and waiting together: beyond it, UO at once (no queue).

Retries (Envoy's retry circuit breaker): `http.maxRetries` caps the requests of the cluster that are
retrying at once; a `retryBudget` replaces it with max(minRetryConcurrency, percent x requests in flight
and waiting), or, with budgetInterval, x requests started in the last interval when that is more. A request
holds its retry slot from its first retry until it ends. A refused retry is not sent: the response (or
failure) it would have replaced goes to the client, and /clusters counts it in `retry_overflows`.

The connection settings (maxRequestsPerConnection, http.idleTimeout, tcp.maxConnectionDuration,
tcp.tcpKeepalive) travel as `conn_policy` to the upstream pool (proxy/http/upstream.py ConnPolicy).

The exchange drives it through its Target: `enter(target)` before a try is sent, `leave()` when the try
ends (Target.release), `may_retry()` / `retry_done()` around its retries.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from proto.xds import PoolLimits
from proxy.core.errors import Overflow
from proxy.core.conn_policy import ConnPolicy

if TYPE_CHECKING:
    from proxy.core.target import Target

UNLIMITED = 1 << 32  # Envoy's default thresholds are 1024; Istio raises unset ones to 2^32 - 1


WINDOW_SLOTS = 10  # a budgetInterval is counted in this many slots


class RequestWindow:
    """Requests started in the last `interval` seconds, counted in WINDOW_SLOTS slots (no per-request memory)."""

    __slots__ = ("slot_len", "counts", "current", "total")

    def __init__(self, interval: float) -> None:
        self.slot_len = interval / WINDOW_SLOTS
        self.counts = [0] * WINDOW_SLOTS
        self.current = 0  # index of the slot being filled: int(time / slot_len)
        self.total = 0

    def _advance(self, now: float) -> None:
        slot = int(now / self.slot_len)
        if slot != self.current:
            for i in range(max(self.current + 1, slot - WINDOW_SLOTS + 1), slot + 1):
                k = i % WINDOW_SLOTS
                self.total -= self.counts[k]
                self.counts[k] = 0
            self.current = slot

    def add(self, now: float) -> None:
        self._advance(now)
        self.counts[self.current % WINDOW_SLOTS] += 1
        self.total += 1

    def count(self, now: float) -> int:
        self._advance(now)
        return self.total


class Breaker:
    __slots__ = ("name", "max_active", "max_pending", "max_requests", "connect_timeout", "active", "waiting",
                 "overflows", "max_retries", "budget", "window", "retrying", "retry_overflows", "conn_policy",
                 "tcp_idle_timeout", "max_duration")

    def __init__(self, name: str, limits: PoolLimits) -> None:
        self.name = name
        self.max_active = limits.max_connections or UNLIMITED
        self.max_pending = limits.max_pending or UNLIMITED
        self.max_requests = limits.max_requests or UNLIMITED
        self.connect_timeout = limits.connect_timeout_ms / 1000.0 if limits.connect_timeout_ms else None
        self.active = 0  # requests in flight (each holds one upstream connection)
        self.waiting: deque[Target] = deque()  # requests waiting for a slot, oldest first
        self.overflows = 0  # requests answered 503 UO: a stat for /clusters
        self.max_retries = limits.max_retries or UNLIMITED
        self.budget = limits.retry_budget
        self.window = (RequestWindow(self.budget.interval_ms / 1000.0)
                       if self.budget is not None and self.budget.interval_ms else None)
        self.retrying = 0  # requests holding a retry slot
        self.retry_overflows = 0  # retries refused by maxRetries or the retry budget
        self.conn_policy = conn_policy(name, limits)
        # opaque TCP connections (proxy/tcp): tcp.idleTimeout (None: the default hour) and maxConnectionDuration
        self.tcp_idle_timeout = limits.tcp_idle_timeout_ms / 1000.0 if limits.tcp_idle_timeout_ms is not None else None
        self.max_duration = limits.max_connection_duration_ms / 1000.0

    def open_connection(self) -> None:
        """An opaque TCP connection takes a slot at once or fails (Envoy's TCP proxy does not queue)."""
        if self.active >= self.max_active:
            self.overflows += 1
            raise Overflow(f"upstream overflow: {self.name} has {self.active} connections (maxConnections)")
        self.active += 1

    def enter(self, target: Target) -> bool:
        """True: go now. False: queued, `target.resume()` runs when a slot frees. Raises Overflow."""
        if self.window is not None and target.slot == 0:
            self.window.add(time.monotonic())
        if self.active + len(self.waiting) >= self.max_requests:
            self.overflows += 1
            raise Overflow(f"upstream overflow: {self.name} has {self.active + len(self.waiting)} requests, "
                           f"its http2MaxRequests")
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

    def retry_limit(self) -> int:
        budget = self.budget
        if budget is None:
            return self.max_retries
        base = self.active + len(self.waiting)
        if self.window is not None:
            base = max(base, self.window.count(time.monotonic()))
        return max(budget.min_concurrency, int(budget.percent * base / 100.0))

    def may_retry(self) -> bool:
        """Take a retry slot (True), or count a refused retry (False)."""
        if self.retrying >= self.retry_limit():
            self.retry_overflows += 1
            return False
        self.retrying += 1
        return True

    def retry_done(self) -> None:
        self.retrying -= 1

    def stats(self) -> dict[str, int]:
        limit = self.retry_limit()
        return {"max_connections": 0 if self.max_active == UNLIMITED else self.max_active,
                "max_pending": 0 if self.max_pending == UNLIMITED else self.max_pending,
                "active": self.active, "pending": len(self.waiting), "overflows": self.overflows,
                "retrying": self.retrying, "retry_limit": 0 if limit >= UNLIMITED else limit,
                "retry_overflows": self.retry_overflows}


def conn_policy(cluster: str, limits: PoolLimits) -> ConnPolicy | None:
    """The limits' settings for upstream connections, or None when they are all the pool's defaults."""
    ka = limits.keepalive
    if not (limits.max_requests_per_connection or limits.idle_timeout_ms or limits.max_connection_duration_ms
            or ka is not None):
        return None
    return ConnPolicy(cluster, limits.max_requests_per_connection, limits.idle_timeout_ms / 1000.0,
                      limits.max_connection_duration_ms / 1000.0,
                      (ka.time_s, ka.interval_s, ka.probes) if ka is not None else None)
