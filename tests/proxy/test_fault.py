"""proxy/outbound/fault.py and the exchange's fault injection: delay, abort, percentages."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_response

from proto import xds
from proxy.core.errors import FaultAbort
from proxy.http.rescue import rescue
from proxy.outbound import fault
from proxy.outbound.policy import compile_policy
from proxy.core.target import Target

pytestmark = pytest.mark.timeout(30)


def fault_policy(**fields) -> fault.FaultPolicy | None:
    return fault.from_config(xds.FaultPolicy(**fields))


def test_no_fault_or_zero_percent_compiles_to_nothing():
    assert fault.from_config(None) is None
    assert fault_policy(delay_ms=100, delay_percent=0.0, abort_status=503, abort_percent=0.0) is None
    assert compile_policy(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")])).fault is None


def test_a_full_percentage_always_injects():
    p = fault_policy(delay_ms=250, delay_percent=100.0, abort_status=418, abort_percent=100.0)
    assert p is not None
    assert all(p.delay_for() == 0.25 for _ in range(100))
    aborts = [p.abort_for() for _ in range(100)]
    assert all(isinstance(a, FaultAbort) and a.status == 418 for a in aborts)


def test_half_the_requests_are_aborted_at_fifty_percent():
    random.seed(7)
    p = fault_policy(abort_status=503, abort_percent=50.0)
    aborted = sum(p.abort_for() is not None for _ in range(10_000))
    assert 4_800 <= aborted <= 5_200


def test_fractional_percentages_are_honoured():
    random.seed(11)
    p = fault_policy(delay_ms=10, delay_percent=0.5)
    delayed = sum(p.delay_for() > 0 for _ in range(100_000))
    assert 350 <= delayed <= 650


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError):
        fault_policy(abort_status=503, abort_percent=120.0)
    with pytest.raises(ValueError):
        fault_policy(abort_status=700, abort_percent=10.0)


def test_an_abort_is_rescued_with_its_status_and_the_fi_flag():
    status, flag, payload = rescue(FaultAbort(418), close=False)
    assert (status, flag) == (418, "FI")
    assert payload.startswith(b"HTTP/1.1 418 ") and payload.endswith(b"fault filter abort\n")


# --- the exchange over loopback -------------------------------------------------------------------------

@pytest.fixture
async def proxy_with(proxy_for):
    records = []

    async def start(up: Upstream, **policy_fields):
        route_policy = compile_policy(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")],
                                                   **policy_fields))
        target = Target("127.0.0.1", up.port, "outbound|80||h", policy=route_policy)
        return await proxy_for(StubRouter({"h": target}), on_complete=records.append)

    start.records = records  # type: ignore[attr-defined]
    return start


GET = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"


async def test_an_abort_answers_without_reaching_the_upstream(proxy_with):
    async with Upstream(keep_alive_echo) as up:
        reader, writer = await proxy_with(up, fault=xds.FaultPolicy(abort_status=503, abort_percent=100.0))
        for _ in range(3):  # keep-alive survives an abort
            writer.write(GET)
            resp = await read_response(reader)
            assert resp.status == 503 and resp.body == b"fault filter abort\n"
    assert up.accepted == 0
    assert [r.flag for r in proxy_with.records] == ["FI"] * 3


async def test_a_fixed_delay_holds_the_request_then_forwards_it(proxy_with):
    async with Upstream(keep_alive_echo) as up:
        reader, writer = await proxy_with(up, fault=xds.FaultPolicy(delay_ms=300, delay_percent=100.0))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        writer.write(GET)
        resp = await read_response(reader)
        elapsed = loop.time() - t0
    # the delay happened (lower bound); the upper one is generous: a loaded 2-core machine stalls
    assert resp.status == 200 and 0.3 <= elapsed < 3.0, elapsed
    assert proxy_with.records[0].flag == "DI"


async def test_a_delay_is_not_counted_in_the_route_timeout(proxy_with):
    async with Upstream(keep_alive_echo) as up:
        reader, writer = await proxy_with(up, timeout_ms=200,
                                          fault=xds.FaultPolicy(delay_ms=300, delay_percent=100.0))
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 200


async def test_a_client_leaving_during_a_delay_sends_nothing_upstream(proxy_with):
    async with Upstream(keep_alive_echo) as up:
        reader, writer = await proxy_with(up, fault=xds.FaultPolicy(delay_ms=200, delay_percent=100.0))
        writer.write(GET)
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, not a half-close (which still gets its answer)
        await asyncio.sleep(0.3)
    assert up.accepted == 0
