"""proxy/dns/addresses.py: a loopback address per service name, deterministic, in the documented range,
collisions resolved stably."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from proxy.dns.addresses import DEFAULT_NETWORK, LoopbackAddresses


def names(n: int) -> list[str]:
    return [f"svc{i}.ns{i % 7}.svc.cluster.local" for i in range(n)]


def colliding(addresses: LoopbackAddresses) -> tuple[str, str]:
    """Two names with the same home slot (searched in a small network)."""
    seen: dict[str, str] = {}
    for i in itertools.count():
        name = f"s{i}.default.svc.cluster.local"
        home = addresses.home(name)
        if home in seen:
            return seen[home], name
        seen[home] = name
    raise AssertionError("unreachable")


def test_every_address_is_in_127_240_0_0_12_with_last_octet_1_to_254() -> None:
    allocated = LoopbackAddresses().update(names(5000))
    assert DEFAULT_NETWORK == "127.240.0.0/12"
    network = ipaddress.IPv4Network(DEFAULT_NETWORK)
    assert len(allocated) == 5000 and len(set(allocated.values())) == 5000
    for address in allocated.values():
        ip = ipaddress.IPv4Address(address)
        assert ip in network and 1 <= int(ip) % 256 <= 254
        assert address != "127.0.0.1"


def test_a_name_gets_the_same_address_in_every_allocator_whatever_the_other_names() -> None:
    first = LoopbackAddresses().update(["reviews.default.svc.cluster.local", "ratings.default.svc.cluster.local"])
    second = LoopbackAddresses().update(["ratings.default.svc.cluster.local", *names(50),
                                         "reviews.default.svc.cluster.local"])
    assert first["reviews.default.svc.cluster.local"] == second["reviews.default.svc.cluster.local"]
    assert first["ratings.default.svc.cluster.local"] == second["ratings.default.svc.cluster.local"]


def test_names_arriving_together_collide_in_sorted_order() -> None:
    small = LoopbackAddresses("127.240.0.0/24")
    a, b = sorted(colliding(small))
    allocated = small.update([b, a])
    assert allocated[a] == small.home(a) and allocated[b] != allocated[a]
    assert allocated[b] == next(small.home(b, n) for n in range(1, 64) if small.home(b, n) != allocated[a])
    again = LoopbackAddresses("127.240.0.0/24").update([a, b])
    assert again == allocated


def test_a_known_name_keeps_its_address_when_a_colliding_one_arrives_or_its_rival_leaves() -> None:
    small = LoopbackAddresses("127.240.0.0/24")
    a, b = sorted(colliding(small))
    held = small.update([b])[b]  # b came first: it holds the home slot a would sort before
    assert held == small.home(b)
    both = small.update([a, b])
    assert both[b] == held and both[a] != held
    assert small.update([a])[a] == both[a]  # b left: a does not move to its home slot while it lives
    assert small.update([a, b])[b] == held  # b back: its home slot is free again


def test_a_gone_name_frees_its_address() -> None:
    addresses = LoopbackAddresses()
    addresses.update(["a.default.svc.cluster.local", "b.default.svc.cluster.local"])
    assert addresses.update(["b.default.svc.cluster.local"]).keys() == {"b.default.svc.cluster.local"}
    assert len(addresses.by_address) == 1


def test_names_past_the_probes_of_a_full_range_get_no_address() -> None:
    tiny = LoopbackAddresses("127.240.0.0/24")  # 254 slots
    allocated = tiny.update(names(300))
    assert len(allocated) <= 254 and len(set(allocated.values())) == len(allocated)


@pytest.mark.parametrize("network", ["10.0.0.0/8", "127.0.0.0/25"])
def test_a_network_that_is_not_loopback_or_too_small_is_refused(network: str) -> None:
    with pytest.raises(ValueError):
        LoopbackAddresses(network)
