"""proxy/outbound/balancer.py and locality.py: each policy's picks, in-flight counts, hashing, failover."""

from __future__ import annotations

from collections import Counter

import pytest

from proto.xds import Endpoint, HashPolicy, LocalityPolicy
from proxy.outbound.balancer import ConsistentHash, LeastRequest, RandomPick, RoundRobin, make_balancer, maglev_table
from proxy.outbound.locality import preferred
from proxy.core.request import RequestHead


def eps(n: int, locality: str = "") -> list[Endpoint]:
    return [Endpoint(address=f"10.0.0.{i}", ports={9080: 15006}, locality=locality) for i in range(1, n + 1)]


def head(path: str = "/", client: str = "", **headers: str) -> RequestHead:
    return RequestHead("GET", "reviews", 9080, path,
                       [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()], client)


def test_round_robin_visits_every_endpoint_in_turn():
    balancer = RoundRobin(eps(3))
    picks = [balancer.pick(head()).address for _ in range(6)]
    assert set(picks[:3]) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"} and picks[:3] == picks[3:]


def test_random_reaches_every_endpoint():
    balancer = RandomPick(eps(3))
    assert {balancer.pick(head()).address for _ in range(200)} == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}


def test_least_request_prefers_the_less_loaded_endpoint():
    endpoints = eps(2)
    balancer = LeastRequest(endpoints)
    for _ in range(3):
        balancer.acquire(endpoints[0])  # three requests in flight on .1, none on .2
    assert all(balancer.pick(head()) is endpoints[1] for _ in range(50))
    for _ in range(3):
        balancer.release(endpoints[0])
    balancer.acquire(endpoints[1])
    assert all(balancer.pick(head()) is endpoints[0] for _ in range(50))


def test_least_request_spreads_load_across_many_endpoints_by_power_of_two_choices():
    endpoints = eps(5)
    balancer = LeastRequest(endpoints)
    busy = endpoints[2]
    for _ in range(100):
        balancer.acquire(busy)
    picks = Counter(balancer.pick(head()).address for _ in range(2000))
    assert picks[busy.address] == 0  # it always loses the comparison
    assert len(picks) == 4


def test_release_never_drives_a_count_below_zero():
    endpoints = eps(2)
    balancer = LeastRequest(endpoints)
    balancer.release(endpoints[0])
    balancer.release(Endpoint(address="elsewhere"))  # not ours: ignored
    assert balancer.active[id(endpoints[0])] == 0


@pytest.mark.parametrize("table,size", [("RING_HASH", 1024), ("MAGLEV", 65537)])
def test_consistent_hash_keeps_a_header_value_on_one_endpoint(table, size):
    balancer = ConsistentHash(eps(5), HashPolicy(header="x-user", table=table, size=size))
    for user in ("alice", "bob", "carol"):
        assert len({balancer.pick(head(x_user=user)).address for _ in range(20)}) == 1
    assert len({balancer.pick(head(x_user=f"user{i}")).address for i in range(200)}) == 5  # keys spread


@pytest.mark.parametrize("table,size", [("RING_HASH", 1024), ("MAGLEV", 65537)])
def test_adding_an_endpoint_moves_few_keys(table, size):
    policy = HashPolicy(header="x-user", table=table, size=size)
    before = ConsistentHash(eps(10), policy)
    after = ConsistentHash(eps(11), policy)
    keys = [f"user{i}" for i in range(3000)]
    moved = sum(before.pick(head(x_user=k)).address != after.pick(head(x_user=k)).address for k in keys)
    assert moved / len(keys) < 1 / 11 + 0.05, moved  # ideal: 1/11 of the keys, to the new endpoint
    landed = Counter(after.pick(head(x_user=k)).address for k in keys
                     if before.pick(head(x_user=k)).address != after.pick(head(x_user=k)).address)
    assert landed["10.0.0.11"] >= 0.8 * moved  # keys move to the new endpoint, hardly between old ones


def test_maglev_table_gives_every_endpoint_a_near_equal_share():
    table = maglev_table([f"ep{i}".encode() for i in range(7)], 65537)
    shares = Counter(table)
    assert len(shares) == 7 and max(shares.values()) - min(shares.values()) < 65537 * 0.01


@pytest.mark.parametrize("policy,request_head,other_head", [
    (HashPolicy(cookie="session"), head(cookie="a=1; session=abc"), head(cookie="session=xyz")),
    (HashPolicy(query="user"), head("/p?x=1&user=abc"), head("/p?user=xyz")),
    (HashPolicy(source_ip=True), head(client="192.0.2.7"), head(client="192.0.2.8")),
])
def test_every_hash_key_source_is_sticky(policy, request_head, other_head):
    balancer = ConsistentHash(eps(8), policy)
    first = balancer.pick(request_head).address
    assert all(balancer.pick(request_head).address == first for _ in range(20))
    assert len({balancer.pick(other_head).address for _ in range(20)}) == 1


def test_a_request_without_the_hash_key_gets_any_endpoint():
    balancer = ConsistentHash(eps(4), HashPolicy(header="x-user"))
    assert len({balancer.pick(head()).address for _ in range(200)}) == 4


def test_make_balancer_knows_every_supported_policy():
    for lb in ("ROUND_ROBIN", "RANDOM", "LEAST_REQUEST", "CONSISTENT_HASH", "PASSTHROUGH"):
        make_balancer(lb, eps(2), HashPolicy(header="x"))
    with pytest.raises(KeyError):
        make_balancer("WEIGHTED_MAGIC", eps(2))


def test_passthrough_goes_where_the_caller_asked():
    request = head()
    request.host = "api.example.com"
    assert make_balancer("PASSTHROUGH", []).pick(request).address == "api.example.com"


def test_a_cookie_with_a_ttl_is_generated_once_and_then_sticks():
    """Without the cookie the balancer makes one up and asks for a Set-Cookie; the value it set, sent back
    (quoted, as Envoy writes it), hashes to the endpoint the first request went to."""
    policy = HashPolicy(cookie="session", cookie_path="/shop", cookie_ttl_s=3600.0)
    balancer = ConsistentHash(eps(8), policy)
    first = head()
    picked = balancer.pick(first)
    assert first.set_cookie is not None
    name_value, *attrs = first.set_cookie.split(b"; ")
    assert name_value.startswith(b'session="') and attrs == [b"Max-Age=3600", b"Path=/shop", b"HttpOnly"]
    for _ in range(20):
        again = head(cookie=(b"other=1; " + name_value).decode())
        assert balancer.pick(again) is picked and again.set_cookie is None
    session = ConsistentHash(eps(8), HashPolicy(cookie="s", cookie_ttl_s=0.0))
    request = head()
    session.pick(request)
    assert b"Max-Age" not in request.set_cookie  # ttl 0s: a session cookie
    plain = ConsistentHash(eps(8), HashPolicy(cookie="s"))  # no ttl: hash an existing cookie only
    request = head()
    plain.pick(request)
    assert request.set_cookie is None


def test_locality_prefers_the_same_zone_then_region_then_failover_region():
    here = Endpoint(address="a", locality="us-east/z1/s1")
    zone = Endpoint(address="b", locality="us-east/z1/s2")
    region = Endpoint(address="c", locality="us-east/z2")
    failover = Endpoint(address="d", locality="eu-west/z1")
    far = Endpoint(address="e", locality="ap-south/z1")
    policy = LocalityPolicy(failover={"us-east": "eu-west"})
    pool = [here, zone, region, failover, far]
    assert preferred(pool, "us-east/z1/s1", policy) == [here]
    assert preferred(pool[1:], "us-east/z1/s1", policy) == [zone]
    assert preferred(pool[2:], "us-east/z1/s1", policy) == [region]
    assert preferred(pool[3:], "us-east/z1/s1", policy) == [failover]  # the failover target before others
    assert preferred([far], "us-east/z1/s1", policy) == [far]
    assert preferred(pool[3:], "us-east/z1/s1", LocalityPolicy()) == [failover, far]  # no rule: any region
    assert preferred(pool, "", policy) == pool  # a proxy with no locality: no preference
    assert preferred(pool, "us-east/z1/s1", None) == pool  # no localityLbSetting


def test_a_generated_cookie_is_remade_for_the_endpoint_a_retry_moved_to():
    balancer = ConsistentHash(eps(8), HashPolicy(cookie="s", cookie_ttl_s=60.0))
    request = head()
    first = balancer.pick(request)
    other = next(ep for ep in balancer.endpoints if ep is not first)
    balancer.cookie_for(request, other)
    value = request.set_cookie.split(b";", 1)[0].decode()
    assert balancer.pick(head(cookie=value)) is other
