"""Fault injection of one route rule (Istio HTTPFaultInjection), compiled once with the routing table.

Applied on the client side after the route is chosen and before anything goes upstream, as Envoy's fault
filter does: first the delay (for `delay_percent` of requests), then the abort (for `abort_percent`),
each decided independently with one random() per configured fault. A rule without a fault has no
FaultPolicy, so requests on it pay nothing. Unset percentages inject nothing, as in Istio.
"""

from __future__ import annotations

from random import random

from proto import xds
from proxy.core.errors import FaultAbort


class FaultPolicy:
    __slots__ = ("delay", "delay_ratio", "abort_status", "abort_ratio")

    def __init__(self, config: xds.FaultPolicy) -> None:
        if not 0.0 <= config.delay_percent <= 100.0 or not 0.0 <= config.abort_percent <= 100.0:
            raise ValueError("fault percentages must be within 0..100")
        if config.abort_status and not 200 <= config.abort_status <= 599:
            raise ValueError(f"fault abort status {config.abort_status} is not within 200..599")
        self.delay = config.delay_ms / 1000.0
        self.delay_ratio = config.delay_percent / 100.0 if config.delay_ms > 0 else 0.0
        self.abort_status = config.abort_status
        self.abort_ratio = config.abort_percent / 100.0 if config.abort_status else 0.0

    def delay_for(self) -> float:
        """Seconds to hold this request (0.0: none)."""
        ratio = self.delay_ratio
        if ratio and (ratio >= 1.0 or random() < ratio):
            return self.delay
        return 0.0

    def abort_for(self) -> FaultAbort | None:
        """The error to answer this request with, or None."""
        ratio = self.abort_ratio
        if ratio and (ratio >= 1.0 or random() < ratio):
            return FaultAbort(self.abort_status)
        return None


def from_config(config: xds.FaultPolicy | None) -> FaultPolicy | None:
    if config is None:
        return None
    policy = FaultPolicy(config)
    return policy if policy.delay_ratio or policy.abort_ratio else None
