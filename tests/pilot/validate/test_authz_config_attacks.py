"""AuthorizationPolicy values an operator can get wrong in ways Python accepts and Istio (Go's netip) refuses."""

from __future__ import annotations

import pytest

from tests.pilot.validate.documents import decode


def _policy(block: str) -> str:
    return ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\n"
            f"spec:\n  rules: [{{from: [{{source: {{ipBlocks: [\"{block}\"]}}}}]}}]\n")


@pytest.mark.parametrize("block", ["10.0.0.0/255.0.0.0", "10.1.2.3/0.0.0.0", "10.0.0.0/0.0.0.255",
                                   "10.0.0.0/08", "10.0.0.0/+8", "10.0.0.0/", "fd00::/ff00::"])
def test_a_netmask_spelled_cidr_is_refused_as_istio_does(block):
    _, errors, _ = decode(_policy(block))
    assert errors and "bad CIDR range" in errors[0].message, f"{block} accepted"


@pytest.mark.parametrize("block", ["10.0.0.0/8", "10.1.2.3", "fd00::/8", "::1"])
def test_a_cidr_or_address_as_istio_writes_it_is_accepted(block):
    assert decode(_policy(block))[1] == []
