"""Locality-prioritized load balancing (DestinationRule localityLbSetting), as Istio programs Envoy.

A locality is "region/zone/subzone". Seen from the calling proxy's locality, an endpoint's priority is
    0 same region, zone and subzone      2 same region only
    1 same region and zone               3 the `failover` target of our region (or, with no failover
                                           rule for our region, any other region)
                                         4 any other region, when our region has a failover rule
Traffic goes only to the best priority that has a healthy endpoint, so when the local one has none
the next takes over. Isthmus's health signal is the registry's probe of each workload (an unhealthy
workload is not a candidate), which stands in for the outlier detection Istio requires before it
fails over. A proxy with no locality (or endpoints with none) gets no prioritization.
"""

from __future__ import annotations

from collections.abc import Sequence

from proto.xds import Endpoint, LocalityPolicy


def split(locality: str) -> tuple[str, str, str]:
    parts = (locality.split("/") + ["", "", ""])[:3]
    return parts[0], parts[1], parts[2]


def priority(local: tuple[str, str, str], endpoint: str, failover: dict[str, str]) -> int:
    region, zone, subzone = split(endpoint)
    if region == local[0]:
        if zone == local[1]:
            return 0 if subzone == local[2] else 1
        return 2
    target = failover.get(local[0])
    if target is None or target == region:
        return 3
    return 4


def ranked(endpoints: Sequence[Endpoint], local: str, policy: LocalityPolicy) -> list[list[Endpoint]]:
    """The endpoints grouped by priority, best first, leaving out priorities that have none."""
    me = split(local)
    levels: dict[int, list[Endpoint]] = {}
    for ep in endpoints:
        levels.setdefault(priority(me, ep.locality, policy.failover), []).append(ep)
    return [levels[p] for p in sorted(levels)]


def preferred(endpoints: Sequence[Endpoint], local: str, policy: LocalityPolicy | None) -> list[Endpoint]:
    """The endpoints of the best priority present (all of them without a policy or a local locality)."""
    if policy is None or not local or not endpoints:
        return list(endpoints)
    return ranked(endpoints, local, policy)[0]
