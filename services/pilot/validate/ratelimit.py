"""Semantic checks of Isthmus's RateLimit kind (isthmus.io/v1alpha1), with paths as the other kinds'."""

from __future__ import annotations

from proto.ratelimit import RateLimitSpec
from services.pilot.validate.checks import HEADER_NAME, IGNORED_HEADER_KEYS, check_labels, check_string_match
from services.pilot.validate.durations import duration_ms
from services.pilot.validate.findings import Findings

MAX_TOKENS = 1 << 32  # Envoy's limit is uint32


def rate_limit(spec: RateLimitSpec, f: Findings) -> None:
    if spec.selector is not None:
        check_labels(spec.selector.match_labels, "spec.selector.matchLabels", f)
    for i, match in enumerate(spec.match):
        path = f"spec.match[{i}]"
        if match.uri is not None:
            check_string_match(match.uri, f"{path}.uri", f, allow_empty_prefix=True)
        if match.method is not None:
            check_string_match(match.method, f"{path}.method", f)
        for name, sm in match.headers.items():
            hpath = f"{path}.headers[{name}]"
            if not HEADER_NAME.match(name):
                f.error(hpath, f"`{name}` is not a valid header name")
            elif name.lower() in IGNORED_HEADER_KEYS:
                f.error(hpath, f"match `{name.lower()}` with its own field, not as a header")
            check_string_match(sm, hpath, f, allow_presence=True)
    bucket = spec.token_bucket
    if not 0 < bucket.max_tokens < MAX_TOKENS:
        f.error("spec.tokenBucket.maxTokens", f"maxTokens must be at least 1 (got {bucket.max_tokens})")
    if bucket.tokens_per_fill is not None and not 0 < bucket.tokens_per_fill < MAX_TOKENS:
        f.error("spec.tokenBucket.tokensPerFill", f"tokensPerFill must be at least 1 (got {bucket.tokens_per_fill})")
    ms = duration_ms(bucket.fill_interval, "spec.tokenBucket.fillInterval", f)
    if ms is not None and ms < 50:
        f.error("spec.tokenBucket.fillInterval", f"fillInterval `{bucket.fill_interval}` must be at least 50ms "
                                                 "(as Envoy's local rate limit)")
