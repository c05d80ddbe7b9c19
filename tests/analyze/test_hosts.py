"""The analyzers resolve hosts and gateway names as pilot does (both through runtime/hostnames.py; the
analyzers add the domain suffix they read)."""

from __future__ import annotations

import pytest

from isthmus.analyze import hosts
from runtime import hostnames as pilot_hosts

NAMES = ["reviews", "reviews.prod", "reviews.prod.svc.cluster.local", "API.Example.com", "*", "*.example.com",
         "10.0.0.1", "::1", ""]
GATEWAYS = ["mesh", "gw", "./gw", "prod/gw", "gw.prod", "gw.prod.svc.cluster.local"]


@pytest.mark.parametrize("name", NAMES)
def test_fqdn_is_pilots(name: str) -> None:
    assert hosts.fqdn(name, "default") == pilot_hosts.fqdn(name, "default")


@pytest.mark.parametrize("name", GATEWAYS)
def test_gateway_ref_is_pilots(name: str) -> None:
    assert hosts.gateway_ref(name, "default") == pilot_hosts.gateway_ref(name, "default")


@pytest.mark.parametrize("a,b,want", [
    ("a.example.com", "a.example.com", True), ("*.example.com", "a.example.com", True),
    ("a.example.com", "*.example.com", True), ("*", "anything", True), ("*.b.com", "*.a.b.com", True),
    ("a.example.com", "b.example.com", False), ("*.example.com", "example.org", False),
])
def test_matches_is_istios_host_name_matches(a: str, b: str, want: bool) -> None:
    assert hosts.matches(a, b) is want
