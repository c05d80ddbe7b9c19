"""Endpoint balancers, one per (cluster, subset, port policy), built over the endpoints a pool may use.

    ROUND_ROBIN      cycles the endpoints from a random start (proxies that start together spread out)
    RANDOM           uniform pick
    LEAST_REQUEST    power of two choices over requests in flight (Envoy's default for LEAST_REQUEST):
                     two random endpoints, the one with fewer outstanding requests wins. The exchange
                     reports in-flight requests through acquire(endpoint) / release(endpoint) (via
                     Target.acquire / Target.release).
    CONSISTENT_HASH  a key from the request (header, cookie, query parameter or client address) hashed
                     onto a ring (RING_HASH: at least `size` virtual nodes in all, the same power of
                     two per endpoint) or
                     a Maglev table (MAGLEV: `size` slots, a prime); adding or removing one endpoint of N
                     moves about 1/N of the keys. A request without the key gets a random endpoint, as
                     Envoy does, except for an httpCookie with a ttl: then the sidecar makes up a value,
                     hashes it, and the response carries it in a Set-Cookie (RequestHead.set_cookie), so
                     the client's next requests stick to the same endpoint.
    PASSTHROUGH      no balancing: the request goes to the address the caller asked for (its Host,
                     resolved by the OS), Istio's "original destination" for a sidecar that is an
                     explicit proxy.
Endpoint weights (WorkloadEntry and ServiceEntry endpoint `weight`, Envoy's load_balancing_weight): when
they differ, make_balancer takes the weighted ROUND_ROBIN, RANDOM and LEAST_REQUEST of weighted.py, and
the ring and the Maglev table give each endpoint entries in proportion to its weight. Equal weights cost
nothing. Every balancer has acquire/release; only LEAST_REQUEST counts.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect_left
from collections.abc import Sequence
from hashlib import blake2b
from typing import Protocol

from proto.xds import Endpoint, HashPolicy
from proxy.core.request import query_value
from proxy.core.request import RequestHead
from proxy.outbound.weighted import (InFlight, WeightedLeastRequest, WeightedRandom, WeightedRoundRobin, normalized,
                                     weights_differ)

MAX_RING = 1 << 23  # Envoy's maximum ring size
WEIGHTED_RING_POINTS = 1 << 16  # a weighted ring's points beyond max(2 x minimumRingSize, this) are scaled down
MAX_COOKIE_TRIES = 256  # ConsistentHash.cookie_for: enough for an endpoint with 2% of the table (p(miss) < 1%)


class Balancer(Protocol):
    def pick(self, head: RequestHead) -> Endpoint: ...

    def acquire(self, endpoint: Endpoint) -> None: ...

    def release(self, endpoint: Endpoint) -> None: ...


class _NoCount:
    __slots__ = ()

    def acquire(self, endpoint: Endpoint) -> None:
        pass

    def release(self, endpoint: Endpoint) -> None:
        pass


class RoundRobin(_NoCount):
    __slots__ = ("endpoints", "_counter")

    def __init__(self, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self._counter = itertools.count(random.randrange(len(self.endpoints)) if self.endpoints else 0)

    def pick(self, head: RequestHead | None = None) -> Endpoint:
        return self.endpoints[next(self._counter) % len(self.endpoints)]


class RandomPick(_NoCount):
    __slots__ = ("endpoints",)

    def __init__(self, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> None:
        self.endpoints = tuple(endpoints)

    def pick(self, head: RequestHead | None = None) -> Endpoint:
        return self.endpoints[int(random.random() * len(self.endpoints))]


class LeastRequest(InFlight):
    """Power of two choices; `active[id(endpoint)]` counts the requests in flight to each endpoint."""

    __slots__ = ("endpoints", "active")

    def __init__(self, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.active = {id(ep): 0 for ep in self.endpoints}

    def pick(self, head: RequestHead | None = None) -> Endpoint:
        endpoints = self.endpoints
        n = len(endpoints)
        if n == 1:
            return endpoints[0]
        a = int(random.random() * n)
        b = int(random.random() * (n - 1))
        if b >= a:
            b += 1  # two distinct endpoints
        first, second = endpoints[a], endpoints[b]
        active = self.active
        return second if active[id(second)] < active[id(first)] else first


def hash64(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def endpoint_key(ep: Endpoint) -> bytes:
    """What places an endpoint on the ring: its address and ports, so every proxy builds the same ring."""
    return f"{ep.address}|{sorted(ep.ports.items())}|{ep.workload}".encode()


def _cookie(head: RequestHead, name: bytes) -> bytes | None:
    for key, value in head.headers:
        if key == b"cookie":
            for part in value.split(b";"):
                k, sep, v = part.strip().partition(b"=")
                if sep and k == name:
                    return v.strip(b'"')  # a generated cookie's value is quoted, as Envoy writes it
    return None


def set_cookie(policy: HashPolicy, value: bytes) -> bytes:
    """The Set-Cookie value for a generated hash cookie, as Envoy writes it (quoted value, HttpOnly)."""
    parts = [b'%s="%s"' % (policy.cookie.encode("latin-1"), value)]
    if policy.cookie_ttl_s:  # 0: a session cookie, no Max-Age
        parts.append(b"Max-Age=%d" % int(policy.cookie_ttl_s))
    if policy.cookie_path:
        parts.append(b"Path=" + policy.cookie_path.encode("latin-1"))
    parts.append(b"HttpOnly")
    return b"; ".join(parts)


def hash_key(policy: HashPolicy, head: RequestHead) -> bytes | None:
    """The request's hash key under `policy`, or None when the request does not carry it."""
    if policy.header:
        name = policy.header.encode("latin-1")
        found = None
        for key, value in head.headers:
            if key == name:
                found = value if found is None else found + b"," + value
        return found
    if policy.cookie:
        return _cookie(head, policy.cookie.encode("latin-1"))
    if policy.query:
        value = query_value(head.path, policy.query)
        return None if value is None else value.encode("latin-1")
    if policy.source_ip:
        return head.client.encode("latin-1") if head.client else None
    return None


class ConsistentHash(_NoCount):
    __slots__ = ("endpoints", "policy", "points", "owners", "table")

    def __init__(self, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.policy = policy or HashPolicy()
        self.points: list[int] = []
        self.owners: list[int] = []
        self.table: list[int] = []
        weights = normalized([ep.weight for ep in self.endpoints])
        if self.policy.table == "MAGLEV":
            self.table = maglev_table([endpoint_key(ep) for ep in self.endpoints], self.policy.size, weights)
        else:
            self._build_ring(min(max(self.policy.size, 1), MAX_RING), weights)

    def _build_ring(self, size: int, weights: list[int]) -> None:
        """`weights` normalized (equal weights are all 1): endpoint i gets weights[i] x `per` points."""
        total = sum(weights)
        # ceil(size / total) virtual nodes per unit of weight, rounded up to a power of two so that adding or
        # removing an endpoint rarely changes the count (and so never reshuffles the other endpoints' points)
        per = 1 << max(0, -(-size // total) - 1).bit_length() if total else 0
        counts = [w * per for w in weights]
        cap = min(MAX_RING, max(2 * size, WEIGHTED_RING_POINTS))
        if total * per > cap:  # extreme weight ratios: scale down, every endpoint keeps a point
            counts = [max(1, w * cap // total) for w in weights]
        ring: list[tuple[int, int]] = []
        for index, ep in enumerate(self.endpoints):
            base = endpoint_key(ep)
            for replica in range(counts[index]):
                ring.append((hash64(base + b"_%d" % replica), index))
        ring.sort()
        self.points = [h for h, _ in ring]
        self.owners = [i for _, i in ring]

    def index_for(self, key: bytes) -> int:
        h = hash64(key)
        if self.table:
            return self.table[h % len(self.table)]
        at = bisect_left(self.points, h)
        return self.owners[at if at < len(self.points) else 0]

    def pick(self, head: RequestHead | None = None) -> Endpoint:
        key = hash_key(self.policy, head) if head is not None else None
        if key is None:
            if head is None or self.policy.cookie_ttl_s is None or not self.policy.cookie:
                return self.endpoints[int(random.random() * len(self.endpoints))]
            key = b"%016x" % random.getrandbits(64)
            head.set_cookie = set_cookie(self.policy, key)
        return self.endpoints[self.index_for(key)]

    def cookie_for(self, head: RequestHead, endpoint: Endpoint) -> None:
        """After a retry moved a request whose cookie this balancer generated to `endpoint`: make the
        Set-Cookie one that hashes to `endpoint`, so the client sticks to the endpoint that answered.
        A random value lands on a given endpoint with its share of the table: a few tries suffice."""
        if head.set_cookie is None:
            return
        try:
            index = self.endpoints.index(endpoint)
        except ValueError:
            return
        for _ in range(MAX_COOKIE_TRIES):
            key = b"%016x" % random.getrandbits(64)
            if self.index_for(key) == index:
                head.set_cookie = set_cookie(self.policy, key)
                return


class Passthrough(_NoCount):
    """PASSTHROUGH: the endpoint is the host and port the caller asked for; the pool's endpoints are unused."""

    __slots__ = ()

    def __init__(self, endpoints: Sequence[Endpoint] = (), policy: HashPolicy | None = None) -> None:
        """Nothing to build: the request names its endpoint."""

    def pick(self, head: RequestHead | None = None) -> Endpoint:
        if head is None:
            raise ValueError("PASSTHROUGH needs the request")
        return Endpoint(address=head.host, ports={})


def maglev_table(names: list[bytes], size: int, weights: Sequence[int] | None = None) -> list[int]:
    """Maglev's lookup table (Eisenbud et al., 2016): each slot owned by one backend, shares near-equal, or
    proportional to `weights` as Envoy weighs it: in round t a backend takes its next slot only once
    t x weight has reached the heaviest weight times the slots it holds, so the heaviest fills every round."""
    n = len(names)
    if n == 0:
        return []
    weights = list(weights) if weights is not None else [1] * n
    heaviest = max(weights)
    due = [0] * n  # heaviest x slots taken so far
    offsets = [hash64(b"o" + name) % size for name in names]
    skips = [hash64(b"s" + name) % (size - 1) + 1 for name in names]
    nexts = [0] * n
    table = [-1] * size
    filled = 0
    for turn in itertools.count(1):
        for i in range(n):
            if turn * weights[i] < due[i]:
                continue
            due[i] += heaviest
            c = (offsets[i] + nexts[i] * skips[i]) % size
            while table[c] >= 0:
                nexts[i] += 1
                c = (offsets[i] + nexts[i] * skips[i]) % size
            table[c] = i
            nexts[i] += 1
            filled += 1
            if filled == size:
                return table
    return table  # not reached: the heaviest backend fills a slot every round


BALANCERS: dict[str, type] = {
    "ROUND_ROBIN": RoundRobin,
    "RANDOM": RandomPick,
    "LEAST_REQUEST": LeastRequest,
    "CONSISTENT_HASH": ConsistentHash,
    "PASSTHROUGH": Passthrough,
}


WEIGHTED: dict[str, type] = {
    "ROUND_ROBIN": WeightedRoundRobin,
    "RANDOM": WeightedRandom,
    "LEAST_REQUEST": WeightedLeastRequest,
}


def make_balancer(lb: str, endpoints: Sequence[Endpoint], policy: HashPolicy | None = None) -> Balancer:
    """The balancer for `lb` over `endpoints`, weighted when their weights differ (weighted.py).
    Raises KeyError for a policy the proxy does not implement (ConfigState rejects those first)."""
    kind = WEIGHTED.get(lb) if weights_differ(endpoints) else None
    return (kind or BALANCERS[lb])(endpoints, policy)  # type: ignore[no-any-return]


def policy_problem(lb: str, policy: HashPolicy | None) -> str | None:
    """Why a compiled policy cannot be balanced by this proxy, or None."""
    if lb not in BALANCERS:
        return f"load balancer {lb!r} is not supported"
    if lb == "CONSISTENT_HASH":
        if policy is None or not (policy.header or policy.cookie or policy.query or policy.source_ip):
            return "CONSISTENT_HASH needs a hash key (header, cookie, query parameter or source ip)"
        if policy.table not in ("RING_HASH", "MAGLEV") or policy.size < 1:
            return f"hash table {policy.table} of size {policy.size} is not supported"
    return None
