"""proxy/http/head_budget.py: a listener holds at most max_pending_head_bytes of incomplete request heads;
the connection whose head would pass it gets 503 OM and is closed, the others go on."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, closed, keep_alive_echo, read_response

from proxy.http.head_budget import HeadBudget
from proxy.http.limits import Limits
from proxy.core.access import AccessRecord
from proxy.settings import build_limits

pytestmark = pytest.mark.timeout(30)


def test_budget_charges_per_connection_and_releases() -> None:
    budget = HeadBudget(100)
    a, b = object(), object()
    assert budget.charge(a, 60) and budget.charge(a, 70)  # a's head grows: charged at its new size
    assert budget.charge(b, 30) and budget.held == 100  # at the limit: fine
    assert not budget.charge(b, 31) and budget.held == 100 and budget.refused == 1  # one byte over
    budget.release(a)
    assert budget.held == 30 and budget.charge(b, 90)
    budget.release(b)
    budget.release(b)
    assert budget.held == 0 and HeadBudget(0).charge(a, 1 << 40)  # 0: unlimited


def test_the_setting_is_in_mib_and_defaults_to_32() -> None:
    assert Limits().max_pending_head_bytes == 32 * 1024 * 1024
    assert build_limits(max_pending_heads_mb=1).max_pending_head_bytes == 1024 * 1024
    with pytest.raises(ValueError):
        Limits(max_pending_head_bytes=-1)


async def settle(writer: asyncio.StreamWriter) -> None:
    await writer.drain()
    await asyncio.sleep(0.1)  # the listener has read it


async def test_a_head_past_the_listener_budget_gets_503_om_and_the_others_go_on(start_proxy, connect) -> None:
    records: list[AccessRecord] = []
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"app.test": up.target}), on_complete=records.append,
                                  limits=Limits(max_pending_head_bytes=1000))
        start = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Pad: "
        a_reader, a = await connect(proxy.port)
        a.write(start + b"p" * (600 - len(start)))  # 600 bytes held
        await settle(a)
        b_reader, b = await connect(proxy.port)
        b.write(start + b"p" * (400 - len(start)))  # 1000: at the budget, accepted
        await settle(b)
        c_reader, c = await connect(proxy.port)
        c.write(b"G")  # one byte over
        response = await read_response(c_reader)
        assert response.status == 503 and response.header(b"connection") == b"close"
        assert await closed(c_reader)
        assert records[-1].flag == "OM"
        a.write(b"\r\n\r\n")  # a's head completes: its bytes leave the budget
        assert (await read_response(a_reader)).status == 200
        b.write(b"\r\n\r\n")
        assert (await read_response(b_reader)).status == 200
        d_reader, d = await connect(proxy.port)
        d.write(start + b"p" * (900 - len(start)))  # room again
        await settle(d)
        d.write(b"\r\n\r\n")
        assert (await read_response(d_reader)).status == 200
        assert proxy.state.head_budget.held == 0
