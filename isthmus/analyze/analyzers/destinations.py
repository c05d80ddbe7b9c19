"""Every destination of a VirtualService, with where it is (Istio's getRouteDestinations and
getHTTPMirrorDestinations, analyzers/virtualservice/util.go), for the analyzers that check them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple


class Annotated(NamedTuple):
    path: str  # spec.http[0].route[1].destination
    mirror: bool
    destination: Any  # proto.networking.Destination


def route_destinations(spec: Any) -> Iterator[Annotated]:
    """tcp, tls, then http routes, as Istio walks them."""
    for field in ("tcp", "tls", "http"):
        for i, rule in enumerate(getattr(spec, field) or []):
            for j, route in enumerate(rule.route or []):
                yield Annotated(f"spec.{field}[{i}].route[{j}].destination", False, route.destination)


def mirror_destinations(spec: Any) -> Iterator[Annotated]:
    for i, rule in enumerate(spec.http or []):
        if rule.mirror is not None:
            yield Annotated(f"spec.http[{i}].mirror", True, rule.mirror)
        for j, mirror in enumerate(rule.mirrors or []):
            yield Annotated(f"spec.http[{i}].mirrors[{j}].destination", True, mirror.destination)
