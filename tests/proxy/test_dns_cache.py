"""proxy/outbound/dns_cache.py: names of hosts outside the mesh resolved off the loop, cached and bounded."""

from __future__ import annotations

import asyncio

import pytest

from proxy.core.errors import DnsFailure, Overflow
from proxy.outbound import dns_cache

pytestmark = pytest.mark.timeout(30)


async def test_a_name_is_looked_up_once_and_shared_by_concurrent_connects(monkeypatch):
    cache = dns_cache.DnsCache()
    results = await asyncio.gather(*(cache.resolve("localhost") for _ in range(5)))
    assert all(r == results[0] for r in results) and any(addr == "127.0.0.1" for _, addr in results[0])
    await cache.resolve("localhost")
    assert cache.lookups == 1


async def test_an_answer_is_used_for_the_refresh_time_then_looked_up_again():
    cache = dns_cache.DnsCache(refresh=0.05)
    await cache.resolve("localhost")
    await asyncio.sleep(0.1)
    await cache.resolve("localhost")
    assert cache.lookups == 2


async def test_the_cache_holds_at_most_max_hosts_names(monkeypatch):
    async def fake(host, port, type):  # type: ignore[no-untyped-def]
        return [(2, 1, 6, "", ("10.0.0.%d" % len(host), 0))]
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", fake)
    cache = dns_cache.DnsCache(max_hosts=3)
    for name in ("a", "bb", "ccc", "dddd"):
        await cache.resolve(name)
    assert list(cache._hosts) == ["bb", "ccc", "dddd"]  # the least recently resolved went first


async def test_a_name_that_does_not_resolve_is_df_and_not_cached():
    cache = dns_cache.DnsCache()
    for _ in range(2):
        with pytest.raises(DnsFailure) as caught:
            await cache.resolve("no-such-host.invalid")
        assert (caught.value.status, caught.value.flag) == (503, "DF")
    assert cache.lookups == 2 and not cache._hosts


async def test_lookups_in_flight_are_bounded(monkeypatch):
    gate = asyncio.Event()

    async def slow(host, port, type):  # type: ignore[no-untyped-def]
        await gate.wait()
        return [(2, 1, 6, "", ("10.0.0.1", 0))]
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", slow)
    cache = dns_cache.DnsCache(max_pending=2)
    waiting = [asyncio.ensure_future(cache.resolve(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    with pytest.raises(Overflow):
        await cache.resolve("c")
    gate.set()
    await asyncio.gather(*waiting)
    assert await cache.resolve("c") == [(2, "10.0.0.1")]


async def test_connect_tries_each_address_and_ip_literals_skip_the_cache():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = dns_cache.DnsCache()
    loop = asyncio.get_running_loop()
    cache._hosts["two.test"] = (loop.time() + 60, [(10, "::1"), (2, "127.0.0.1")])  # ::1 refuses: next one
    try:
        transport, _ = await cache.connect(loop, asyncio.Protocol, "two.test", port)
        transport.close()
        transport, _ = await cache.connect(loop, asyncio.Protocol, "127.0.0.1", port)
        transport.close()
        assert cache.lookups == 0
    finally:
        server.close()
