"""ipBlocks, remoteIpBlocks, source.ip, remote.ip, destination.ip: CIDR ranges against one address.

A value is an address (`10.1.2.3`, a /32 or /128) or a CIDR range (`10.0.0.0/16`; host bits ignored, as
Envoy's CidrRange), like istio's util.AddrStrToCidrRange. An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`) is
its IPv4 address. An address that is not one ("" for an unknown peer) is in no range.

    cidr_matcher(values) -> (address -> bool)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from functools import lru_cache


@lru_cache(maxsize=4096)  # peers are few and reconnect: parse each address once, not per request
def parse(address: str) -> tuple[int, int] | None:
    """(IP version, the address as an int), or None when `address` is not an IP address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version, int(ip)


def network(value: str) -> tuple[int, int, int]:
    """(version, network as an int, mask); ValueError for a value that is neither an address nor a range."""
    net = ipaddress.ip_network(value.strip(), strict=False)
    return net.version, int(net.network_address), int(net.netmask)


def cidr_matcher(values: Sequence[str]) -> Callable[[str], bool]:
    """True when the address is in any of the ranges; ValueError for a bad value (pilot validated them)."""
    nets = tuple(network(v) for v in values)

    def matches(address: str) -> bool:
        found = parse(address)
        if found is None:
            return False
        version, ip = found
        for net_version, net, mask in nets:
            if version == net_version and ip & mask == net:
                return True
        return False

    return matches
