"""What the route and endpoint stages hand the exchange: the chosen endpoint, and the Router protocol.

Neutral: imports nothing of the proxy but proxy.core. The breaker and outlier detector a Target carries
are described here by the small protocols the exchange calls (proxy/outbound/circuit_breaker.py and
outlier.py implement them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from proxy.core.conn_policy import Key
from proxy.core.request import RequestHead


class Breaker(Protocol):
    """A cluster's connectionPool limits as a target uses them (proxy/outbound/circuit_breaker.Breaker)."""

    def enter(self, target: Target) -> bool: ...
    def leave(self) -> None: ...
    def forget(self, target: Target) -> None: ...


class Detector(Protocol):
    """A pool's outlierDetection as the exchange reports to it (proxy/outbound/outlier.Detector)."""

    def report(self, endpoint: object, status: int) -> None: ...


class Target:
    """One chosen endpoint: where to connect, and the cluster it was picked from (for stats/logs).

    The exchange reports the request's life to the balancer that chose the endpoint (LEAST_REQUEST counts
    requests in flight per endpoint): `acquire()` when the request is sent to this target, `release()` once
    it is over with it (response complete, failed, client gone, or moved to another target by a retry).
    `release()` without an `acquire()`, or a second `release()`, does nothing. A balancer with a single
    endpoint never reads its counts, so its targets (`counts` False) skip them.
    """

    __slots__ = ("address", "port", "cluster", "endpoint", "balancer", "held", "policy", "breaker", "slot",
                 "resume", "outlier", "counts", "key", "tls")

    def __init__(self, address: str, port: int, cluster: str, endpoint: object = None,
                 balancer: object = None, policy: object = None, breaker: Breaker | None = None,
                 outlier: Detector | None = None, counts: bool | None = None, key: Key | None = None,
                 tls: object = None) -> None:
        self.address = address
        self.port = port
        # How to reach the endpoint, decided once per push (proxy/outbound/endpoints.Pool.transport): `tls` the
        # proxy.tls.origination.TlsOrigination to use (None: plaintext), `key` the upstream pool's key for its
        # connections (address, port[, cluster with connection settings][, "mtls", identity, sni]).
        self.tls = tls
        if key is None:
            conn_policy = getattr(breaker, "conn_policy", None)
            key = (address, port) if conn_policy is None else conn_policy.key(address, port)
        self.key = key
        self.cluster = cluster
        self.endpoint = endpoint  # the proto.xds.Endpoint picked, if a balancer picked it
        self.balancer = balancer  # the balancer that picked it (has acquire/release)
        self.held = False
        # whether acquire() reports to the balancer; None: unless it is known to hold a single endpoint
        self.counts = (balancer is not None and len(getattr(balancer, "endpoints", ())) != 1) if counts is None \
            else counts
        # The chosen rule's proxy.outbound.policy.RoutePolicy (timeout, retries, fault), compiled with the
        # routing table; None: no timeout, retry or fault beyond the listener's own settings.
        self.policy = policy
        # The cluster's proxy.outbound.circuit_breaker.Breaker (connectionPool limits), None without limits.
        # slot: 0 none, 1 waiting for one (resume runs on admission), 2 holding one.
        self.breaker = breaker
        self.slot = 0
        self.resume: Callable[[], None] | None = None
        self.outlier = outlier  # the pool's proxy.outbound.outlier.Detector; the exchange reports each try to it

    def enter(self, resume: Callable[[], None]) -> bool:
        """Take a slot of the breaker (True), or wait for one (False: `resume` is called soon after it is
        granted). Raises proxy.core.errors.Overflow when the cluster is full. Only called with a breaker."""
        if self.slot == 2:
            return True
        if self.breaker.enter(self):  # type: ignore[union-attr]
            self.slot = 2
            return True
        self.slot, self.resume = 1, resume
        return False

    def admitted(self, breaker: Breaker) -> None:
        """The breaker granted a slot to this waiting target."""
        self.slot = 2
        resume, self.resume = self.resume, None
        if resume is not None:
            asyncio.get_running_loop().call_soon(resume)

    def acquire(self) -> None:
        if not self.held and self.counts:
            self.held = True
            self.balancer.acquire(self.endpoint)  # type: ignore[attr-defined]

    def release(self) -> None:
        if self.held:
            self.held = False
            self.balancer.release(self.endpoint)  # type: ignore[attr-defined]
        if self.slot:
            if self.slot == 2:
                self.breaker.leave()  # type: ignore[union-attr]
            else:
                self.breaker.forget(self)  # type: ignore[union-attr]
                self.resume = None
            self.slot = 0


class Router(Protocol):
    """Logical -> concrete -> endpoint: picks where a request goes, from the config the proxy holds.

    Raises proxy.core.errors.NoRoute (unknown host) or NoHealthyUpstream (a cluster with nothing healthy).
    Pure and synchronous: it runs once per request on the hot path and must not allocate much.
    """

    def pick(self, head: RequestHead) -> Target: ...

    # Optional (MeshRouter has it): another endpoint of `target`'s cluster for a retry, avoiding the
    # (address, port) pairs in `tried` where the cluster has another healthy endpoint.
    # def retry_pick(self, target: Target, head: RequestHead, tried: list[tuple[str, int]], attempt: int) -> Target: ...
