"""The listeners on the services' loopback addresses: one per address:port, made and closed as pushes change
the services (never per request).

    ServiceListeners(http_state, make_tcp).update({(address, port): (fqdn, "http" | "tcp")})

An HTTP port's listener makes the very connections the outbound listener makes (HttpProxyProtocol over the
outbound listener's ServerState): the same router, routing by Host, limits, telemetry and connection set, so
the hot path is the outbound one, unchanged, and the outbound listener's stop drains these connections too.
An opaque TCP port's listener is a TcpListener relaying to the service as `--tcp` does (`make_tcp`).

A port that cannot be bound (an app listening on 0.0.0.0 at that port, another sidecar with --dns-port on
this host) is logged once, shown in /config_dump, and tried again at the next push; the other ports serve.
A removed service's listeners close: an HTTP one stops accepting (its open connections stay with the
outbound listener, routed per request), a TCP one closes its relays (TcpListener.stop).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from proxy.http.listener_state import ServerState
from proxy.http.server import HttpProxyProtocol
from proxy.tcp.listener import TcpListener
from runtime.log import get_logger

log = get_logger("proxy.dns")

HTTP, TCP = "http", "tcp"
Key = tuple[str, int]  # (loopback address, service port)
Spec = tuple[str, str]  # (service FQDN, HTTP or TCP)
MakeTcp = Callable[[str, str, int], TcpListener]  # (fqdn, address, port) -> a TcpListener not yet started


class ServiceListeners:
    def __init__(self, http_state: ServerState, make_tcp: MakeTcp, backlog: int = 1024) -> None:
        self.http_state = http_state
        self.make_tcp = make_tcp
        self.backlog = backlog
        self.specs: dict[Key, Spec] = {}  # bound listeners
        self.http: dict[Key, asyncio.Server] = {}
        self.tcp: dict[Key, TcpListener] = {}
        self.failed: dict[Key, tuple[Spec, str]] = {}  # wanted but not bound: why

    async def update(self, wanted: dict[Key, Spec]) -> None:
        """Close the listeners not in `wanted` (or wanted for another service or protocol), then bind the
        missing ones; a bind that fails is recorded in `failed` and logged when its reason changes."""
        for key in [k for k, spec in self.specs.items() if wanted.get(k) != spec]:
            await self._close(key)
        failed: dict[Key, tuple[Spec, str]] = {}
        for key, spec in wanted.items():
            if key in self.specs:
                continue
            try:
                await self._open(key, spec)
            except OSError as exc:
                why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
                failed[key] = (spec, why)
                if self.failed.get(key) != (spec, why):
                    log.warning("cannot listen for a service on its loopback address", service=spec[0],
                                address=f"{key[0]}:{key[1]}", protocol=spec[1], error=why)
        self.failed = failed

    async def _open(self, key: Key, spec: Spec) -> None:
        address, port = key
        fqdn, kind = spec
        if kind == TCP:
            listener = self.make_tcp(fqdn, address, port)
            await listener.start()
            self.tcp[key] = listener
        else:
            state = self.http_state
            self.http[key] = await asyncio.get_running_loop().create_server(
                lambda: HttpProxyProtocol(state), address, port, reuse_address=True, backlog=self.backlog)
        self.specs[key] = spec

    async def _close(self, key: Key) -> None:
        del self.specs[key]
        server = self.http.pop(key, None)
        if server is not None:
            server.close()  # open connections belong to the outbound listener's state: they stay
        listener = self.tcp.pop(key, None)
        if listener is not None:
            await listener.stop()

    async def close_all(self) -> None:
        for key in list(self.specs):
            await self._close(key)

    def set_access_log(self, sink: object) -> None:
        """After a push: the TCP listeners log where the outbound side logs (proxy/observability.py)."""
        for listener in self.tcp.values():
            listener.access_log = sink  # type: ignore[assignment]

    def sweep_metrics(self) -> None:
        """Before metrics are read: the open relays' bytes so far."""
        for listener in self.tcp.values():
            listener.sweep_metrics()

    def dump(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {"address": f"{a}:{p}", "service": fqdn, "protocol": kind, "listening": True}
            for (a, p), (fqdn, kind) in sorted(self.specs.items())]
        rows += [{"address": f"{a}:{p}", "service": fqdn, "protocol": kind, "listening": False, "error": why}
                 for (a, p), ((fqdn, kind), why) in sorted(self.failed.items())]
        return rows
