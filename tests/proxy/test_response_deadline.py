"""The response timeout (a route's `timeout:`, else the listener's) as a deadline the connection's one timer
checks (proxy/http/conn_guard.py): it fires within its bound whether it is earlier or later than the timer's
next wake-up, and back-to-back requests arm no timer handle each."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.proxy.test_head_as_received import Side, get

from proxy.http.limits import Limits

pytestmark = pytest.mark.timeout(30)


async def _answered(side: Side, bound: float) -> tuple[bytes, float]:
    start = time.monotonic()
    while not side.client.data and time.monotonic() - start < bound:
        await asyncio.sleep(0.01)
    return b"".join(side.client.data), time.monotonic() - start


@pytest.mark.parametrize("limits", [Limits(), Limits(request_headers_timeout=0.1)],
                         ids=["deadline before the timer's wake-up", "deadline after it"])
async def test_a_response_timeout_fires_within_its_bound_and_the_connection_goes_on(limits):
    side = Side(response_timeout=0.4, limits=limits)
    side.proto.data_received(get())
    assert side.upstream.data  # sent; the upstream never answers
    answer, took = await _answered(side, 3.0)
    assert answer.startswith(b"HTTP/1.1 504 ") and 0.35 <= took < 3.0, (answer, took)
    assert b"upstream request timeout after 0.4s" in answer
    assert not side.proto.closing  # a 504 keeps the client connection


class CountingLoop:
    """The real loop, counting the timer handles asked of it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.handles = 0

    def call_later(self, *args, **kwargs):
        self.handles += 1
        return self._loop.call_later(*args, **kwargs)

    def call_at(self, *args, **kwargs):
        self.handles += 1
        return self._loop.call_at(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._loop, name)


async def test_back_to_back_requests_with_a_response_timeout_arm_no_timer_each():
    side = Side(response_timeout=30.0)
    side.proto.loop = loop = CountingLoop(side.proto.loop)  # type: ignore[assignment]
    for _ in range(50):
        assert len(side.send(get())) == 1
    assert loop.handles <= 1, loop.handles  # at most the connection timer's one re-arm
    assert b"".join(side.client.data).count(b"HTTP/1.1 200 OK") == 50
    timer = side.proto.keepalive_handle
    assert timer is not None and timer.when() - side.proto.loop.time() < 31  # still due in time for a deadline
