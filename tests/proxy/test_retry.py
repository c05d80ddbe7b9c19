"""proxy/outbound/retry.py and the exchange's retries: conditions, back-off, another endpoint, per-try timeout."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import Upstream, keep_alive_echo, read_request, read_response, reset_on_request, stall

from proto import xds
from proxy.outbound import retry
from proxy.outbound.policy import DEFAULT_POLICY, compile_policy
from proxy.core.target import Target

pytestmark = pytest.mark.timeout(30)


def policy(**fields):
    return compile_policy(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")], **fields))


# --- conditions (no sockets) ------------------------------------------------------------------------

def test_default_policy_is_istios_two_retries_on_connect_failure_and_503():
    default = DEFAULT_POLICY.retry
    assert default.attempts == 2 and default.per_try_timeout is None
    assert default.retries_failure(retry.CONNECT_FAILURE)
    assert not default.retries_failure(retry.RESET)
    assert default.retries_status(503) and not default.retries_status(500) and not default.retries_status(502)


@pytest.mark.parametrize("on, codes, retried, not_retried", [
    (["5xx"], [], {500, 503, 599}, {200, 409, 404}),
    (["gateway-error"], [], {502, 503, 504}, {500, 501}),
    (["retriable-4xx"], [], {409}, {400, 404, 503}),
    (["retriable-status-codes"], [418, 500], {418, 500}, {503}),
    (["reset", "connect-failure"], [], set(), {500, 503}),
])
def test_status_conditions_follow_envoy(on, codes, retried, not_retried):
    p = retry.RetryPolicy(xds.RetryPolicy(attempts=1, retry_on=on, status_codes=codes))
    assert all(p.retries_status(s) for s in retried)
    assert not any(p.retries_status(s) for s in not_retried)


@pytest.mark.parametrize("on, connect, reset", [
    (["5xx"], True, True), (["gateway-error"], True, True), (["reset"], True, True),
    (["connect-failure"], True, False), (["retriable-4xx"], False, False), (["refused-stream"], False, False),
])
def test_failures_without_a_response_follow_envoy(on, connect, reset):
    p = retry.RetryPolicy(xds.RetryPolicy(attempts=1, retry_on=on))
    assert p.retries_failure(retry.CONNECT_FAILURE) is connect
    assert p.retries_failure(retry.RESET) is reset
    assert p.retries_failure(retry.PER_TRY_TIMEOUT) is reset


def test_attempts_zero_disables_and_an_unknown_condition_is_refused():
    assert policy(retry=xds.RetryPolicy(attempts=0)).retry is None
    with pytest.raises(ValueError, match="retriable-headers"):
        policy(retry=xds.RetryPolicy(attempts=1, retry_on=["retriable-headers"]))


def test_a_rule_without_policy_fields_shares_the_default_policy():
    assert policy() is DEFAULT_POLICY
    assert policy(timeout_ms=1500).timeout == 1.5


def test_backoff_is_jittered_exponential_and_capped():
    for attempt, cap in ((1, 0.025), (2, 0.075), (3, 0.175), (10, 0.25)):
        waits = [retry.DEFAULT.backoff(attempt) for _ in range(200)]
        assert all(0.0 <= w <= cap for w in waits) and max(waits) > cap / 2


def test_backoff_base_interval_comes_from_the_route():
    """HTTPRetry.backoff sets the base; the cap stays ten times the base, as Envoy's default maximum."""
    slow = retry.RetryPolicy(xds.RetryPolicy(attempts=3, retry_on=["5xx"], backoff_ms=100))
    for attempt, cap in ((1, 0.1), (2, 0.3), (5, 1.0)):
        waits = [slow.backoff(attempt) for _ in range(300)]
        assert all(0.0 <= w <= cap for w in waits) and max(waits) > cap * 0.6


# --- the exchange over loopback ------------------------------------------------------------------------

class TwoEndpointRouter:
    """Sends every first try to endpoints[0]; a retry goes to the first endpoint not tried yet."""

    def __init__(self, endpoints: list[Upstream], route_policy) -> None:
        self.endpoints, self.policy = endpoints, route_policy
        self.retries: list[list[tuple[str, int]]] = []

    def _target(self, up: Upstream) -> Target:
        return Target("127.0.0.1", up.port, "outbound|80||h", policy=self.policy)

    def pick(self, head) -> Target:
        return self._target(self.endpoints[0])

    def retry_pick(self, target: Target, head, tried, attempt=1) -> Target:
        self.retries.append(list(tried))
        for up in self.endpoints:
            if ("127.0.0.1", up.port) not in tried:
                return self._target(up)
        return self._target(self.endpoints[0])


def failing_first(n: int, status: int = 503):
    count = {"seen": 0}

    async def handler(up, reader, writer):
        while True:
            req = await read_request(reader)
            up.requests.append(req)
            count["seen"] += 1
            if count["seen"] <= n:
                writer.write(b"HTTP/1.1 %d Nope\r\nContent-Length: 4\r\n\r\nnope" % status)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    return handler


GET = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"


async def test_a_503_is_retried_until_the_backend_recovers(proxy_for):
    async with Upstream(failing_first(2)) as up:
        reader, writer = await proxy_for(TwoEndpointRouter([up], DEFAULT_POLICY))
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 200 and resp.body == b"ok"
    assert len(up.requests) == 3


async def test_retries_stop_after_the_configured_attempts(proxy_for):
    async with Upstream(failing_first(10)) as up:
        p = policy(retry=xds.RetryPolicy(attempts=3, retry_on=["5xx"]))
        reader, writer = await proxy_for(TwoEndpointRouter([up], p))
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 503 and resp.body == b"nope"  # the last upstream answer, forwarded as is
    assert len(up.requests) == 4


async def test_a_target_without_policy_is_not_retried(proxy_for):
    async with Upstream(failing_first(1)) as up:
        reader, writer = await proxy_for(TwoEndpointRouter([up], None))
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 503 and len(up.requests) == 1


async def test_retry_moves_to_another_endpoint_after_reset(proxy_for):
    async with Upstream(reset_on_request) as bad, Upstream(keep_alive_echo) as good:
        router = TwoEndpointRouter([bad, good], policy(retry=xds.RetryPolicy(attempts=2, retry_on=["reset"])))
        reader, writer = await proxy_for(router)
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 200 and resp.body == b"hello /x"
    assert len(bad.requests) == 1 and len(good.requests) == 1
    assert router.retries == [[("127.0.0.1", bad.port)]]


async def test_reset_is_not_retried_by_the_default_policy(proxy_for):
    async with Upstream(reset_on_request) as bad, Upstream(keep_alive_echo) as good:
        reader, writer = await proxy_for(TwoEndpointRouter([bad, good], DEFAULT_POLICY))
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 503 and len(good.requests) == 0


async def test_connect_failure_is_retried_on_another_endpoint_by_default(proxy_for):
    async with Upstream(keep_alive_echo) as good:
        dead = Upstream(keep_alive_echo)
        async with dead:
            pass  # closed: its port refuses connections now
        reader, writer = await proxy_for(TwoEndpointRouter([dead, good], DEFAULT_POLICY))
        writer.write(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody")
        resp = await read_response(reader)
    assert resp.status == 200 and resp.body == b"body"


async def test_a_buffered_post_body_is_sent_again_on_retry(proxy_for):
    async with Upstream(failing_first(1)) as up:
        reader, writer = await proxy_for(TwoEndpointRouter([up], DEFAULT_POLICY))
        writer.write(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        resp = await read_response(reader)
    assert resp.status == 200
    assert [r.body for r in up.requests] == [b"hello", b"hello"]


async def test_per_try_timeout_retries_a_stalled_endpoint_elsewhere(proxy_for):
    async with Upstream(stall) as slow, Upstream(keep_alive_echo) as good:
        p = policy(retry=xds.RetryPolicy(attempts=1, per_try_timeout_ms=200, retry_on=["gateway-error"]))
        reader, writer = await proxy_for(TwoEndpointRouter([slow, good], p))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        writer.write(GET)
        resp = await read_response(reader)
        elapsed = loop.time() - t0
    # the stalled endpoint never answers: only the per-try timeout (then the retry) can end this
    assert resp.status == 200 and 0.2 <= elapsed < 3.0, elapsed


async def test_per_try_timeout_without_retries_left_is_a_504(proxy_for):
    async with Upstream(stall) as slow:
        p = policy(retry=xds.RetryPolicy(attempts=1, per_try_timeout_ms=100, retry_on=["connect-failure"]))
        reader, writer = await proxy_for(TwoEndpointRouter([slow], p))
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 504 and b"per try" in resp.body


async def test_route_timeout_answers_504_within_tolerance(proxy_for):
    async with Upstream(stall) as slow:
        reader, writer = await proxy_for(TwoEndpointRouter([slow], policy(timeout_ms=300)))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        writer.write(GET)
        resp = await read_response(reader)
        elapsed = loop.time() - t0
    assert resp.status == 504 and 0.3 <= elapsed < 3.0, elapsed  # the upstream never answers
    assert b"0.3s" in resp.body


async def test_route_timeout_covers_all_retries(proxy_for):
    async with Upstream(stall) as slow:
        # 21 tries of 100 ms would take over 2.1 s: a route timeout restarted per try never ends in 1.5 s
        p = policy(timeout_ms=300, retry=xds.RetryPolicy(attempts=20, per_try_timeout_ms=100, retry_on=["reset"]))
        reader, writer = await proxy_for(TwoEndpointRouter([slow], p))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        writer.write(GET)
        resp = await read_response(reader)
        elapsed = loop.time() - t0
    assert resp.status == 504 and 0.3 <= elapsed < 1.5, elapsed
    assert len(slow.requests) <= 4
