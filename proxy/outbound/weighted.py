"""Balancers for endpoints of unequal weight (WorkloadEntry / ServiceEntry endpoint `weight`, Envoy's
`load_balancing_weight`). make_balancer (balancer.py) uses them only when the weights differ, so the
common case keeps the plain balancers.

    WeightedRoundRobin    Envoy's weighted round robin: earliest deadline first. Each endpoint's next
                          deadline is its last plus 1/weight, so over any long run endpoint i gets
                          weight_i / sum(weights) of the picks, interleaved rather than in bursts.
    WeightedRandom        a pick with probability weight_i / sum(weights).
    WeightedLeastRequest  Envoy's LEAST_REQUEST with unequal weights: the same schedule, but an endpoint
                          picked while it has `active` requests in flight comes back after
                          (active + 1) / weight (Envoy's active_request_bias 1.0, which Istio does not
                          change), so a loaded endpoint is picked less than its weight says.
Ring hash and Maglev weigh their entries themselves (balancer.ConsistentHash).

Weights are integers >= 1 (pilot compiles an unset or 0 weight to 1, as Istio does).
"""

from __future__ import annotations

import heapq
import itertools
import random
from bisect import bisect_right
from collections.abc import Sequence
from math import gcd

from proto.xds import Endpoint, HashPolicy
from proxy.core.request import RequestHead


def weights_differ(endpoints: Sequence[Endpoint]) -> bool:
    first = endpoints[0].weight if endpoints else 1
    return any(ep.weight != first for ep in endpoints)


def normalized(weights: Sequence[int]) -> list[int]:
    """Weights divided by their greatest common divisor (each at least 1): [2, 6] -> [1, 3]."""
    clean = [max(1, int(w)) for w in weights]
    divisor = 0
    for w in clean:
        divisor = gcd(divisor, w)
    return [w // (divisor or 1) for w in clean]


class InFlight:
    """Requests in flight per endpoint (`active[id(endpoint)]`), reported by the exchange through
    Target.acquire / Target.release; for the LEAST_REQUEST balancers."""

    __slots__ = ()
    active: dict[int, int]

    def acquire(self, endpoint: Endpoint) -> None:
        key = id(endpoint)
        if key in self.active:
            self.active[key] += 1

    def release(self, endpoint: Endpoint) -> None:
        key = id(endpoint)
        count = self.active.get(key)
        if count:
            self.active[key] = count - 1


class WeightedRoundRobin:
    __slots__ = ("endpoints", "weights", "_heap", "_order")

    def __init__(self, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.weights = normalized([ep.weight for ep in self.endpoints])
        self._order = itertools.count()  # ties go first-come first-served, as Envoy's EDF scheduler
        # a random phase per endpoint: proxies that start together do not all begin with the same endpoint
        self._heap = [(random.random() / w, next(self._order), i) for i, w in enumerate(self.weights)]
        heapq.heapify(self._heap)

    def _step(self, index: int) -> float:
        return 1.0 / self.weights[index]

    def pick(self, head: RequestHead | None = None) -> Endpoint:
        deadline, _, index = self._heap[0]
        heapq.heapreplace(self._heap, (deadline + self._step(index), next(self._order), index))
        return self.endpoints[index]

    def acquire(self, endpoint: Endpoint) -> None:
        pass

    def release(self, endpoint: Endpoint) -> None:
        pass


class WeightedLeastRequest(InFlight, WeightedRoundRobin):
    __slots__ = ("active",)

    def __init__(self, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> None:
        super().__init__(endpoints, policy)
        self.active = {id(ep): 0 for ep in self.endpoints}

    def _step(self, index: int) -> float:
        return (self.active[id(self.endpoints[index])] + 1) / self.weights[index]


class WeightedRandom:
    __slots__ = ("endpoints", "_cumulative", "_total")

    def __init__(self, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self._cumulative = list(itertools.accumulate(normalized([ep.weight for ep in self.endpoints])))
        self._total = self._cumulative[-1] if self._cumulative else 0

    def pick(self, head: RequestHead | None = None) -> Endpoint:
        return self.endpoints[bisect_right(self._cumulative, random.random() * self._total)]

    def acquire(self, endpoint: Endpoint) -> None:
        pass

    def release(self, endpoint: Endpoint) -> None:
        pass
