"""The exchange tells the balancer when a request starts and ends on an endpoint (LEAST_REQUEST
counts requests in flight), and passes the client's address to routing (useSourceIp)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.http.listener import Listener
from proxy.http.head import Mode
from proxy.http.upstream_pool import ConnectionPool
from proxy.core.request import RequestHead
from proxy.core.target import Target
from tests.proxy.http_helpers import Upstream, keep_alive_echo, read_response, reset_on_request, stall

pytestmark = pytest.mark.asyncio


class CountingBalancer:
    def __init__(self) -> None:
        self.in_flight = 0
        self.events: list[str] = []

    def acquire(self, endpoint: object) -> None:
        self.in_flight += 1
        self.events.append("acquire")

    def release(self, endpoint: object) -> None:
        self.in_flight -= 1
        self.events.append("release")


class OneTargetRouter:
    def __init__(self, port: int, balancer: CountingBalancer) -> None:
        self.port, self.balancer = port, balancer
        self.heads: list[RequestHead] = []

    def pick(self, head: RequestHead) -> Target:
        self.heads.append(head)
        return Target("127.0.0.1", self.port, "outbound|9080||reviews", endpoint="ep", balancer=self.balancer)


async def exchange_once(handler, balancer: CountingBalancer, observe=None) -> int:  # type: ignore[no-untyped-def]
    async with Upstream(handler) as up:
        router = OneTargetRouter(up.port, balancer)
        listener = Listener("127.0.0.1", 0, router, ConnectionPool(), Mode.OUTBOUND, response_timeout=0.5)
        await listener.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        if observe is not None:
            await asyncio.sleep(0.1)
            observe()
        status = (await read_response(reader)).status
        writer.close()
        await listener.stop(grace=1)
        assert router.heads[0].client == "127.0.0.1"
        return status


async def test_a_request_is_counted_in_flight_until_its_response_completes() -> None:
    balancer = CountingBalancer()
    seen: list[int] = []
    status = await exchange_once(stall, balancer, observe=lambda: seen.append(balancer.in_flight))
    assert status == 504 and seen == [1]  # counted while the upstream stalled
    assert balancer.in_flight == 0


async def test_a_completed_request_is_released_once() -> None:
    balancer = CountingBalancer()
    assert await exchange_once(keep_alive_echo, balancer) == 200
    assert balancer.events == ["acquire", "release"]


async def test_a_failed_request_is_released_too() -> None:
    balancer = CountingBalancer()
    assert await exchange_once(reset_on_request, balancer) == 503
    assert balancer.in_flight == 0 and balancer.events[0] == "acquire"
