"""Isthmus's own RateLimit kind (isthmus.io/v1alpha1): a local token bucket on selected workloads' inbound side.

Modelled on Envoy's local rate limit filter (envoy.filters.http.local_ratelimit): each sidecar of a
selected workload holds its own bucket per RateLimit and answers 429 once it is empty. docs/ratelimit.md.
"""

from __future__ import annotations

from proto.base import IstioStruct
from proto.networking import StringMatch


class LabelSelector(IstioStruct, kw_only=True):
    match_labels: dict[str, str] = {}


class RateLimitMatch(IstioStruct, kw_only=True):
    """Which requests a RateLimit counts: every field given must match (as Istio's HTTPMatchRequest)."""

    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: dict[str, StringMatch] = {}


class TokenBucket(IstioStruct, kw_only=True):
    """Envoy's TokenBucket: starts full with max_tokens; every fill_interval adds tokens_per_fill (<= max)."""

    max_tokens: int
    fill_interval: str
    tokens_per_fill: int | None = None  # unset: 1, as Envoy


class RateLimitSpec(IstioStruct, kw_only=True):
    selector: LabelSelector | None = None  # unset: every workload of the RateLimit's namespace
    match: list[RateLimitMatch] = []  # any of; empty: every request
    token_bucket: TokenBucket
