"""Names of hosts outside the mesh, resolved by the OS resolver off the event loop and cached.

    DnsCache.connect(loop, factory, host, port)   create_connection through the cache

Used for upstream connections to hosts given by name (passthrough traffic: PassthroughCluster, CONNECT
tunnels). The lookup runs in the loop's resolver threads (loop.getaddrinfo), never on the loop. Bounds and
times are those of Envoy's dynamic forward proxy DNS cache (dns_cache.proto): at most MAX_HOSTS names
(default 1024; the least recently resolved goes first), an answer is used for REFRESH seconds (60 s,
dns_refresh_rate) and then looked up again when next needed, at most MAX_PENDING lookups in flight
(1024, dns_cache_circuit_breaker.max_pending_requests; more fail at once with Overflow), and concurrent
connects to one name share one lookup. A failed lookup is not cached. An IP literal skips the cache.
The caller's connect timeout bounds the lookup too.

Errors: proxy.core.errors.DnsFailure (503, flag DF) when the name does not resolve, Overflow (503, UO).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from proxy.core.errors import DnsFailure, Overflow
from proxy.outbound.self_loop import OwnListeners

MAX_HOSTS = 1024
REFRESH = 60.0
MAX_PENDING = 1024

Addresses = list[tuple[int, str]]  # (address family, address), in the resolver's order


def is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


class DnsCache:
    def __init__(self, max_hosts: int = MAX_HOSTS, refresh: float = REFRESH, max_pending: int = MAX_PENDING) -> None:
        self.max_hosts = max_hosts
        self.refresh = refresh
        self.max_pending = max_pending
        self._hosts: dict[str, tuple[float, Addresses]] = {}  # name -> (loop time it expires, addresses)
        self._pending: dict[str, asyncio.Future[Addresses]] = {}
        self.lookups = 0  # lookups made: a stat, and what tests count
        self.own: OwnListeners | None = None  # this sidecar's looping listeners, refused (self_loop.py)

    async def resolve(self, host: str) -> Addresses:
        loop = asyncio.get_running_loop()
        entry = self._hosts.get(host)
        if entry is not None and entry[0] > loop.time():
            return entry[1]
        future = self._pending.get(host)
        if future is None:
            if len(self._pending) >= self.max_pending:
                raise Overflow(f"dns cache: {len(self._pending)} lookups pending")
            future = self._pending[host] = asyncio.ensure_future(self._lookup(loop, host))
        return await asyncio.shield(future)  # a caller that gives up leaves the lookup to the others

    async def _lookup(self, loop: asyncio.AbstractEventLoop, host: str) -> Addresses:
        try:
            self.lookups += 1
            try:
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise DnsFailure(f"dns resolution failed for {host}: {exc}") from None
            addresses = list(dict.fromkeys((family, sockaddr[0]) for family, _, _, _, sockaddr in infos))
            if not addresses:
                raise DnsFailure(f"dns resolution failed for {host}: no address")
            hosts = self._hosts
            hosts.pop(host, None)
            while len(hosts) >= self.max_hosts:
                del hosts[next(iter(hosts))]  # the least recently resolved
            hosts[host] = (loop.time() + self.refresh, addresses)
            return addresses
        finally:
            del self._pending[host]

    async def connect(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], host: str,
                      port: int) -> tuple[asyncio.Transport, Any]:
        """loop.create_connection to `host`'s addresses in turn (as asyncio does); raises DnsFailure,
        Overflow, LoopDetected (an address:port of our own, refused before connecting) or the OSError of the
        last address tried."""
        own = self.own
        if is_ip(host):
            if own is not None:
                own.check(host, port)
            return await loop.create_connection(factory, host, port)  # type: ignore[return-value]
        error: OSError | None = None
        for _, address in await self.resolve(host):
            if own is not None:
                own.check(address, port)
            try:
                return await loop.create_connection(factory, address, port)  # type: ignore[return-value]
            except OSError as exc:
                error = exc
        assert error is not None
        raise error
