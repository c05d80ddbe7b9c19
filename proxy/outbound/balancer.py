"""Endpoint balancers, one per (cluster, subset), built with the routing table over its healthy endpoints.

ROUND_ROBIN cycles the endpoints from a random starting point (so proxies that start together do not
all hit the first endpoint); RANDOM picks uniformly. Endpoint weights are not applied yet.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from proto.xds import Endpoint


class Balancer(Protocol):
    def pick(self) -> Endpoint: ...


class RoundRobin:
    __slots__ = ("endpoints", "_counter")

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = tuple(endpoints)
        self._counter = itertools.count(random.randrange(len(self.endpoints)) if self.endpoints else 0)

    def pick(self) -> Endpoint:
        return self.endpoints[next(self._counter) % len(self.endpoints)]


class RandomPick:
    __slots__ = ("endpoints",)

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = tuple(endpoints)

    def pick(self) -> Endpoint:
        return self.endpoints[int(random.random() * len(self.endpoints))]


BALANCERS: dict[str, type[RoundRobin] | type[RandomPick]] = {"ROUND_ROBIN": RoundRobin, "RANDOM": RandomPick}


def make_balancer(lb: str, endpoints: Sequence[Endpoint]) -> Balancer:
    """Raises KeyError for a policy the proxy does not implement (ConfigState rejects those first)."""
    return BALANCERS[lb](endpoints)
