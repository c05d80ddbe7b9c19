"""Retries of one route rule (Istio HTTPRetry), compiled once with the routing table.

Conditions follow Envoy's `retry_on` (router filter, x-envoy-retry-on) as Istio configures it:
    5xx                     any 5xx response, or no response at all (reset, connect failure, per-try timeout)
    gateway-error           502, 503, 504, or no response at all
    reset                   no response at all: disconnect/reset, connect failure, per-try timeout
    connect-failure         the connection to the endpoint could not be opened
    retriable-4xx           409
    retriable-status-codes  the status codes listed (plain numbers in Istio's `retryOn`)
    refused-stream, unavailable, cancelled, deadline-exceeded, internal, resource-exhausted
                            HTTP/2 stream refusal and gRPC status codes: accepted (Istio's default policy names
                            them) but they never occur on Isthmus's HTTP/1.1 upstreams, so they never trigger.
A retry is only sent while nothing of the response reached the client, and only when the request can be
sent again: the exchange keeps what it sent (`Exchange.replay`, and `Exchange.kept` for body bytes that
came after the head went out), for any framing, up to RETRY_BUFFER_LIMIT body bytes (proxy/http/exchange.py,
Envoy's retry buffer: the listener's per_connection_buffer_limit_bytes, 1 MiB). A body over the limit
streams on and is not retried; one that outgrows it while a retry waits its back-off is answered 507,
as Envoy does. A retry while the body is still arriving sends what came so far, then the rest as it comes.
Retries wait Envoy's back-off (exponential with full jitter from a base interval, `backoff` or 25 ms, to at
most ten times the base) and go to an endpoint not tried yet where the cluster has one, unless
retryIgnorePreviousHosts is false; with retryRemoteLocalities, to the next locality priority every second
try (MeshRouter.retry_pick). A cluster's retry budget or connectionPool.http.maxRetries can refuse a retry
(proxy/outbound/circuit_breaker.py): the failed response then goes to the client as it is.
"""

from __future__ import annotations

from random import random

from proto import xds

# What went wrong, for `retries_failure`.
CONNECT_FAILURE = 1
RESET = 2
PER_TRY_TIMEOUT = 3

BACKOFF_BASE = 0.025  # Envoy's default base interval
BACKOFF_MAX_FACTOR = 10  # Envoy's default maximum interval: ten times the base

NO_RESPONSE = ("5xx", "gateway-error", "reset")
NEVER_ON_HTTP1 = ("refused-stream", "unavailable", "cancelled", "deadline-exceeded", "internal",
                  "resource-exhausted")
CONDITIONS = frozenset(("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
                        "retriable-status-codes") + NEVER_ON_HTTP1)


class RetryPolicy:
    __slots__ = ("attempts", "per_try_timeout", "on_reset", "on_connect_failure", "codes", "lowest", "backoff_base",
                 "ignore_previous_hosts", "remote_localities")

    def __init__(self, config: xds.RetryPolicy) -> None:
        """Raises ValueError for a condition the proxy does not implement (pilot rejects those first)."""
        on = set(config.retry_on)
        unknown = on - CONDITIONS
        if unknown:
            raise ValueError(f"retry condition(s) {', '.join(sorted(unknown))} not supported")
        if config.attempts < 0:
            raise ValueError(f"retry attempts {config.attempts} < 0")
        self.attempts = config.attempts
        self.per_try_timeout = (config.per_try_timeout_ms / 1000.0
                                if config.per_try_timeout_ms else None)
        self.on_reset = any(c in on for c in NO_RESPONSE)
        self.on_connect_failure = self.on_reset or "connect-failure" in on
        codes: set[int] = set()
        if "5xx" in on:
            codes.update(range(500, 600))
        if "gateway-error" in on:
            codes.update((502, 503, 504))
        if "retriable-4xx" in on:
            codes.add(409)
        if "retriable-status-codes" in on:
            codes.update(config.status_codes)
        self.codes = frozenset(codes)
        self.lowest = min(codes, default=1000)  # statuses below it skip the check: one compare per response
        self.backoff_base = config.backoff_ms / 1000.0 if config.backoff_ms else BACKOFF_BASE
        self.ignore_previous_hosts = config.ignore_previous_hosts
        self.remote_localities = config.remote_localities

    def retries_failure(self, kind: int) -> bool:
        """Whether a failure without a response (CONNECT_FAILURE, RESET, PER_TRY_TIMEOUT) is retried."""
        return self.on_connect_failure if kind == CONNECT_FAILURE else self.on_reset

    def retries_status(self, status: int) -> bool:
        return status in self.codes

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, ...): Envoy's fully jittered exponential
        back-off, random in [0, min((2^attempt - 1) * base, 10 * base))."""
        base = self.backoff_base
        return random() * min(base * ((1 << attempt) - 1), base * BACKOFF_MAX_FACTOR)


def from_config(config: xds.RetryPolicy | None) -> RetryPolicy | None:
    """None (not configured): Istio's default policy; attempts 0: retries disabled (None)."""
    if config is None:
        return DEFAULT
    if config.attempts <= 0:
        return None
    return RetryPolicy(config)


DEFAULT = RetryPolicy(xds.DEFAULT_RETRY)
