"""proxy/outbound/weighted.py and the weighted ring / Maglev table: endpoint weights (WorkloadEntry and
ServiceEntry endpoint `weight`) decide each endpoint's share, as Envoy's load_balancing_weight."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proto.xds import Endpoint, HashPolicy
from proxy.outbound.balancer import (ConsistentHash, LeastRequest, RandomPick, RoundRobin, make_balancer,
                                     maglev_table)
from proxy.core.request import RequestHead
from proxy.outbound.weighted import (WeightedLeastRequest, WeightedRandom, WeightedRoundRobin, normalized,
                                     weights_differ)


def weighted(*weights: int) -> list[Endpoint]:
    return [Endpoint(address=f"10.0.0.{i}", ports={9080: 15006}, weight=w) for i, w in enumerate(weights, start=1)]


def head(**headers: str) -> RequestHead:
    return RequestHead("GET", "reviews", 9080, "/", [(k.encode(), v.encode()) for k, v in headers.items()], "")


def shares(balancer: object, n: int) -> Counter[str]:
    return Counter(balancer.pick(head()).address for _ in range(n))  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def fixed_seed() -> None:
    random.seed(20261129)


@pytest.mark.parametrize("lb, kind", [("ROUND_ROBIN", WeightedRoundRobin), ("RANDOM", WeightedRandom),
                                      ("LEAST_REQUEST", WeightedLeastRequest)])
def test_unequal_weights_get_the_weighted_balancer_and_equal_ones_the_plain_one(lb: str, kind: type) -> None:
    assert isinstance(make_balancer(lb, weighted(1, 3)), kind)
    plain = {"ROUND_ROBIN": RoundRobin, "RANDOM": RandomPick, "LEAST_REQUEST": LeastRequest}[lb]
    assert type(make_balancer(lb, weighted(5, 5))) is plain  # equal weights: the common case costs nothing more
    assert not weights_differ(weighted(2, 2, 2)) and weights_differ(weighted(1, 1, 2))


def test_weights_are_normalized_by_their_common_divisor() -> None:
    assert normalized([2, 6]) == [1, 3] and normalized([5, 5]) == [1, 1] and normalized([0, 3]) == [1, 3]


@pytest.mark.parametrize("lb", ["ROUND_ROBIN", "LEAST_REQUEST"])
def test_weighted_round_robin_gives_each_endpoint_its_exact_share(lb: str) -> None:
    picks = shares(make_balancer(lb, weighted(1, 2, 7)), 1000)  # no requests in flight: LEAST_REQUEST is WRR
    assert abs(picks["10.0.0.1"] - 100) <= 2 and abs(picks["10.0.0.2"] - 200) <= 2 and abs(picks["10.0.0.3"] - 700) <= 2


def test_weighted_round_robin_interleaves_rather_than_bursts() -> None:
    balancer = make_balancer("ROUND_ROBIN", weighted(1, 3))
    picks = [balancer.pick(head()).address for _ in range(400)]
    for start in range(0, 392, 8):  # every window of 8 picks holds about 2 of the light endpoint
        assert 1 <= picks[start:start + 8].count("10.0.0.1") <= 3


def test_weighted_random_picks_in_proportion_to_weight() -> None:
    picks = shares(make_balancer("RANDOM", weighted(1, 3)), 4000)
    assert 0.72 <= picks["10.0.0.2"] / 4000 <= 0.78


def test_weighted_least_request_picks_a_loaded_heavy_endpoint_less() -> None:
    endpoints = weighted(1, 3)
    balancer = make_balancer("LEAST_REQUEST", endpoints)
    for _ in range(5):
        balancer.acquire(endpoints[1])  # five in flight on the heavy one: it comes back after 6/3, the light after 1/1
    picks = shares(balancer, 300)
    assert picks["10.0.0.1"] > picks["10.0.0.2"]
    for _ in range(5):
        balancer.release(endpoints[1])
    assert balancer.active[id(endpoints[1])] == 0  # type: ignore[attr-defined]


def test_a_weighted_ring_gives_keys_in_proportion_to_weight() -> None:
    balancer = ConsistentHash(weighted(1, 3), HashPolicy(header="x-user", size=1024))
    picks = Counter(balancer.pick(head(**{"x-user": f"user-{i}"})).address for i in range(4000))
    assert 0.68 <= picks["10.0.0.2"] / 4000 <= 0.82
    owners = Counter(balancer.owners)
    assert owners[1] == 3 * owners[0]  # three times the points


def test_equal_weights_build_the_same_ring_as_no_weights() -> None:
    plain = ConsistentHash(weighted(1, 1, 1), HashPolicy(header="x", size=1024))
    fives = ConsistentHash(weighted(5, 5, 5), HashPolicy(header="x", size=1024))
    assert plain.points == fives.points and plain.owners == fives.owners


def test_extreme_weights_keep_the_ring_bounded_and_every_endpoint_on_it() -> None:
    balancer = ConsistentHash(weighted(1, 10**9), HashPolicy(header="x", size=1024))
    assert len(balancer.points) <= 1 << 16 and set(balancer.owners) == {0, 1}


def test_a_weighted_maglev_table_gives_slots_in_proportion_to_weight() -> None:
    table = maglev_table([b"a", b"b"], 65537, [1, 3])
    assert 0.74 <= table.count(1) / len(table) <= 0.76
    balancer = ConsistentHash(weighted(1, 3), HashPolicy(header="x-user", table="MAGLEV", size=65537))
    picks = Counter(balancer.pick(head(**{"x-user": f"user-{i}"})).address for i in range(4000))
    assert 0.70 <= picks["10.0.0.2"] / 4000 <= 0.80


def test_an_unweighted_maglev_table_is_unchanged_by_weights_of_one() -> None:
    assert maglev_table([b"a", b"b", b"c"], 251) == maglev_table([b"a", b"b", b"c"], 251, [1, 1, 1])
