"""proxy/gateway/hosts.py: Envoy's domain order (exact, longest wildcard suffix, `*`) for Host and SNI."""

from __future__ import annotations

from proxy.gateway.hosts import LOOKUP_CACHE_SIZE, DomainTable, host_of, pick_by_name


def test_exact_beats_wildcards_and_the_longest_wildcard_wins():
    table = DomainTable([("*", "star"), ("*.example.com", "wide"), ("*.api.example.com", "narrow"),
                         ("www.example.com", "exact")])
    assert table.lookup("www.example.com") == "exact"
    assert table.lookup("v1.api.example.com") == "narrow"
    assert table.lookup("a.b.example.com") == "wide"
    assert table.lookup("example.com") == "star"  # `*.example.com` needs a label before the suffix
    assert table.lookup("other.org") == "star"


def test_without_a_star_an_unknown_name_has_no_match_and_case_does_not_matter():
    table = DomainTable([("bookinfo.com", 1), ("*.Example.com", 2)])
    assert table.lookup("BookInfo.COM") == 1
    assert table.lookup("x.EXAMPLE.com") == 2
    assert table.lookup("bookinfo.org") is None
    assert table.lookup("bookinfo.com.") == 1  # a trailing dot is the same name


def test_the_first_entry_for_a_domain_wins():
    assert DomainTable([("a.com", "older"), ("a.com", "newer")]).lookup("a.com") == "older"
    assert DomainTable([("*", "older"), ("*", "newer")]).lookup("x") == "older"


def test_the_lookup_cache_is_bounded():
    table = DomainTable([("*", 1)])
    for i in range(LOOKUP_CACHE_SIZE + 10):
        table.lookup(f"h{i}.example")
    assert len(table._cache) <= LOOKUP_CACHE_SIZE


def test_sni_picks_the_server_no_sni_gets_the_default_and_an_unmatched_sni_nothing():
    table = DomainTable([("a.example.com", "A"), ("*.b.example.com", "B")])
    assert pick_by_name(table, "a.example.com", "A") == "A"
    assert pick_by_name(table, "x.b.example.com", "A") == "B"
    assert pick_by_name(table, "", "A") == "A"
    assert pick_by_name(table, "c.example.com", "A") is None  # Envoy: no matching filter chain


def test_host_of_drops_the_port():
    assert host_of("Example.COM:8080") == "example.com"
    assert host_of("[::1]:80") == "[::1]"
    assert host_of("example.com") == "example.com"
