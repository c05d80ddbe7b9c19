"""The transport stage: the keep-alive pool of upstream connections (proxy/http/upstream.py).

The pool keeps idle connections per (address, port), newest first out, and closes those idle longer
than their idle timeout from a single timer per pool rather than one per connection. A cluster with
connection settings in its DestinationRule (ConnPolicy: maxRequestsPerConnection, http.idleTimeout,
tcp.maxConnectionDuration, tcp.tcpKeepalive) gets connections of its own, keyed (address, port, cluster),
so its rules hold whatever other clusters reach the same endpoint (Envoy's pools are per cluster too).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import deque
from typing import TYPE_CHECKING

from proxy.core.conn_policy import ConnPolicy, Key, set_keepalive
from proxy.core.errors import UpstreamConnectError
from proxy.http.upstream import UpstreamConnection
from proxy.tls.origination import TlsOrigination

if TYPE_CHECKING:
    from proxy.outbound.dns_cache import DnsCache


def key_for(address: str, port: int, policy: ConnPolicy | None, tls: TlsOrigination | None) -> Key:
    """The pool key of connections to an endpoint: per cluster with connection settings, per verified
    identity with mutual TLS, else shared by address and port."""
    key = (address, port) if policy is None else policy.key(address, port)
    return key if tls is None else (*key, *tls.key)  # type: ignore[return-value]


class ConnectionPool:
    """Idle keep-alive upstream connections per (address, port); opens new ones on demand."""

    def __init__(self, *, max_idle_per_key: int = 64, idle_timeout: float = 60.0,
                 connect_timeout: float = 5.0, max_head_bytes: int = 60 * 1024, max_headers: int = 100) -> None:
        self.max_idle_per_key = max_idle_per_key
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_head_bytes = max_head_bytes  # an upstream's response line + headers (Envoy: 60 KiB)
        self.max_headers = max_headers  # headers per response (Envoy's max_headers_count: 100)
        self.opened = 0  # connections ever opened: a cheap stat, and what tests count
        # Resolves host names of passthrough targets off the loop, cached (proxy/outbound/dns_cache.py);
        # None: the loop's create_connection resolves them itself.
        self.resolver: DnsCache | None = None
        self._idle: dict[Key, deque[UpstreamConnection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_at = float("inf")  # loop time the sweeper fires at (inf: none scheduled)
        self._loop: asyncio.AbstractEventLoop | None = None

    def take(self, key: Key) -> UpstreamConnection | None:
        """The most recently used idle connection to `key`, or None."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            if not conn.closed and not conn.transport.is_closing():
                if conn.expires and self.now() >= conn.expires:  # maxConnectionDuration reached while idle
                    conn.closed = True
                    conn.transport.close()
                    continue
                conn.reused = True
                return conn
        return None

    def now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    async def connect(self, address: str, port: int, timeout: float | None = None,
                      policy: ConnPolicy | None = None, tls: TlsOrigination | None = None,
                      key: Key | None = None) -> UpstreamConnection:
        """`timeout`: the cluster's connectTimeout, else the pool's; `policy`: the cluster's connection settings;
        `tls`: mutual TLS to the endpoint's sidecar (proxy/tls/origination.py), the handshake and the peer's
        SPIFFE ID check within the same timeout. Its connections pool apart from plaintext ones (`take` with
        the key `key_for` gives); `key`: that key when the caller holds it already (Target.key)."""
        loop = self._loop = asyncio.get_running_loop()
        if key is None:
            key = key_for(address, port, policy, tls)
        timeout = timeout or self.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                if tls is not None:  # the peer checked (SPIFFE ID or SANs): proxy/tls/transport.connect_checked
                    _, conn = await tls.connect(loop, lambda: UpstreamConnection(self, key), address, port,
                                                self.connect_timeout)
                elif self.resolver is not None:
                    _, conn = await self.resolver.connect(loop, lambda: UpstreamConnection(self, key), address, port)
                else:
                    _, conn = await loop.create_connection(lambda: UpstreamConnection(self, key), address, port)
        except TimeoutError:
            raise UpstreamConnectError(
                f"upstream connect error: {address}:{port}: timed out after {timeout:g}s"
            ) from None
        except ssl.SSLError as exc:  # a bad chain, an unknown CA, another workload's identity (logged)
            raise UpstreamConnectError(f"upstream connect error: {address}:{port}: TLS error: "
                                       f"{getattr(exc, 'reason', None) or exc}") from exc
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise UpstreamConnectError(f"upstream connect error: {address}:{port}: {reason}") from exc
        self.opened += 1
        if policy is not None:
            self._apply(conn, policy, loop.time())
        return conn

    @staticmethod
    def _apply(conn: UpstreamConnection, policy: ConnPolicy, now: float) -> None:
        if policy.idle_timeout:
            conn.idle_timeout = policy.idle_timeout
        if policy.max_requests or policy.max_duration:
            conn.limited = True
            conn.requests_left = policy.max_requests
            conn.expires = now + policy.max_duration if policy.max_duration else 0.0
        if policy.keepalive is not None:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                set_keepalive(sock, *policy.keepalive)

    def release(self, conn: UpstreamConnection, now: float = 0.0) -> None:
        """Back to the idle pool (or closed, past max_idle_per_key); `now`: the loop time, if the caller has it."""
        if conn.closed or conn.in_pool:
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if len(idle) >= self.max_idle_per_key:
            conn.closed = True
            conn.transport.close()
            return
        if conn.gate.reasons:
            conn.gate.clear()  # read while idle, so a close by the peer is noticed and the conn dropped
        conn.in_pool = True
        assert self._loop is not None
        conn.idle_since = now = now or self._loop.time()
        idle.append(conn)
        due = now + conn.idle_timeout
        if due < self._sweep_at:  # only a shorter idle timeout than any pooled so far moves the sweep
            if self._sweeper is not None:
                self._sweeper.cancel()
            self._sweep_at = due
            self._sweeper = self._loop.call_at(due, self._sweep)

    def discard(self, conn: UpstreamConnection) -> None:
        conn.in_pool = False
        idle = self._idle.get(conn.key)
        if idle is not None:
            try:
                idle.remove(conn)
            except ValueError:
                pass

    def idle_count(self, key: Key | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(q) for q in self._idle.values())

    def close(self) -> None:
        """Close every idle connection (at shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper, self._sweep_at = None, float("inf")
        for idle in self._idle.values():
            while idle:
                conn = idle.pop()
                conn.in_pool = False
                conn.closed = True
                conn.transport.close()
        self._idle.clear()

    def _sweep(self) -> None:
        self._sweeper, self._sweep_at = None, float("inf")
        assert self._loop is not None
        now = self._loop.time()
        next_due = None
        for key in list(self._idle):
            idle = self._idle[key]  # one key's connections share an idle timeout: the oldest is at the left
            while idle and (idle[0].idle_since + idle[0].idle_timeout <= now
                            or (idle[0].expires and idle[0].expires <= now)):
                conn = idle.popleft()
                conn.in_pool = False
                conn.closed = True
                conn.transport.close()
            if not idle:
                del self._idle[key]
            else:
                due = idle[0].idle_since + idle[0].idle_timeout
                if next_due is None or due < next_due:
                    next_due = due
        if next_due is not None:
            self._sweep_at = max(next_due, now + 0.01)
            self._sweeper = self._loop.call_at(self._sweep_at, self._sweep)
