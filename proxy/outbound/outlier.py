"""Outlier detection: eject endpoints that keep failing, as Envoy does for DestinationRule outlierDetection.

    Detector   one per pool (cluster subset) with outlierDetection; none at all (no cost) without it

The exchange reports the outcome of every try (`report(endpoint, status)`: the response status, or 0 for
a connect failure, reset or per-try timeout, which Envoy counts as a 503 since Istio does not split
local-origin errors). Envoy's consecutive counters per endpoint:
- any 5xx (or 0) counts toward consecutive_5xx; 502/503/504 (or 0) toward consecutive_gateway, a
  non-gateway 5xx resets the gateway count; anything else resets both.
- reaching a threshold ejects the endpoint for base_ejection × (times it was ejected), unless that
  would eject more than max_ejection_percent of the pool (one endpoint may always be ejected).
- every `interval`, endpoints whose ejection time is over return; one not ejected during an interval
  has its ejection count lowered by one.
The pool's balancers are rebuilt (lazily, on the next pick) when the ejected set changes, so a pick
costs nothing extra. When fewer than min_health_percent of the endpoints are left, ejections are
ignored (Envoy's panic threshold); with none left the pool has no healthy endpoint (503 UH).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from proto.xds import Endpoint, OutlierPolicy

GATEWAY = frozenset((0, 502, 503, 504))


class Health:
    """Outlier state of one endpoint."""

    __slots__ = ("consecutive_5xx", "consecutive_gateway", "times_ejected", "ejected_until")

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.times_ejected = 0
        self.ejected_until = 0.0  # loop time; 0: not ejected


class Detector:
    __slots__ = ("policy", "endpoints", "health", "ejected", "on_change", "timer", "clock")

    def __init__(self, policy: OutlierPolicy, endpoints: Sequence[Endpoint],
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self.endpoints = tuple(endpoints)
        self.health = {id(ep): Health() for ep in self.endpoints}
        self.ejected: set[int] = set()  # id() of the ejected endpoints
        self.on_change = on_change  # the pool drops its balancers
        self.timer: asyncio.TimerHandle | None = None
        self.clock = clock

    def _now(self) -> float:
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()

    def report(self, endpoint: object, status: int) -> None:
        """The outcome of one try to `endpoint`: a response status, or 0 for a local-origin failure."""
        health = self.health.get(id(endpoint))
        if health is None:  # an endpoint of another pool (a retry's target keeps its cluster)
            return
        if status < 500 and status != 0:
            health.consecutive_5xx = health.consecutive_gateway = 0
            return
        health.consecutive_5xx += 1
        if status in GATEWAY:
            health.consecutive_gateway += 1
        else:
            health.consecutive_gateway = 0
        policy = self.policy
        if ((policy.consecutive_5xx and health.consecutive_5xx >= policy.consecutive_5xx)
                or (policy.consecutive_gateway and health.consecutive_gateway >= policy.consecutive_gateway)):
            health.consecutive_5xx = health.consecutive_gateway = 0
            self._eject(id(endpoint), health)

    def _eject(self, key: int, health: Health) -> None:
        if key in self.ejected:
            return
        total = len(self.endpoints)
        if self.ejected and 100 * (len(self.ejected) + 1) > self.policy.max_ejection_percent * total:
            return  # Envoy: max_ejection_percent, but at least one endpoint may be ejected
        health.times_ejected += 1
        health.ejected_until = self._now() + self.policy.base_ejection_ms / 1000.0 * health.times_ejected
        self.ejected.add(key)
        self._schedule()
        self.on_change()

    def _schedule(self) -> None:
        if self.timer is None and self.clock is None:
            self.timer = asyncio.get_running_loop().call_later(self.policy.interval_ms / 1000.0, self.sweep)

    def sweep(self) -> None:
        """Every interval: return endpoints whose ejection is over; lower the count of those not ejected."""
        self.timer = None
        now = self._now()
        returned = False
        for ep in self.endpoints:
            key = id(ep)
            health = self.health[key]
            if key in self.ejected:
                if health.ejected_until <= now:
                    self.ejected.discard(key)
                    health.ejected_until = 0.0
                    returned = True
            elif health.times_ejected:
                health.times_ejected -= 1
        if returned:
            self.on_change()
        if self.ejected or any(h.times_ejected for h in self.health.values()):
            self._schedule()

    def usable(self, members: Sequence[Endpoint]) -> list[Endpoint]:
        """`members` without the ejected ones; all of them below min_health_percent (panic)."""
        if not self.ejected:
            return list(members)
        left = [ep for ep in members if id(ep) not in self.ejected]
        if members and 100 * len(left) < self.policy.min_health_percent * len(members):
            return list(members)
        return left

    def inherit(self, old: Detector) -> None:
        """Take over `old`'s state for the endpoints both know (a push rebuilt the pool), as Envoy keeps
        outlier state across endpoint updates."""
        by_key = {(ep.address, tuple(sorted(ep.ports.items()))): ep for ep in old.endpoints}
        for ep in self.endpoints:
            prev = by_key.get((ep.address, tuple(sorted(ep.ports.items()))))
            if prev is not None:
                self.health[id(ep)] = old.health[id(prev)]
                if id(prev) in old.ejected:
                    self.ejected.add(id(ep))
        old.stop()
        if self.ejected or any(h.times_ejected for h in self.health.values()):
            try:
                self._schedule()
            except RuntimeError:  # no running loop (tests building tables directly)
                pass

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def endpoint_stats(self, endpoint: Endpoint) -> dict[str, object]:
        health = self.health.get(id(endpoint))
        if health is None:
            return {}
        ejected = id(endpoint) in self.ejected
        return {"ejected": ejected, "ejected_for_s": round(max(health.ejected_until - self._now(), 0.0), 3)
                if ejected else 0.0, "times_ejected": health.times_ejected,
                "consecutive_5xx": health.consecutive_5xx, "consecutive_gateway": health.consecutive_gateway}
