"""The exchange's way to an upstream connection: the request routed when it reaches the front of its
pipeline (start; a route with nothing to run before sending is started by that one method), its local
policies and fault, the response timeout, admission by the breaker, a pooled or new connection, the
bounded wait for a slot. A plain base class of proxy/http/exchange.Exchange (no state of its own:
`__slots__ = ()`), kept apart so exchange.py reads as the request flow; sending on the connection
(`_send`, `_to_upstream`) stays there, with the retry buffer limit it reads.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy.core.errors import Overflow, ProxyError
from proxy.http import local_policy
from proxy.outbound import retry

if TYPE_CHECKING:
    from proxy.http.upstream import UpstreamConnection


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class UpstreamConnect:
    __slots__ = ()

    def start(self) -> None:
        """This request is now first in line: route it and send it."""
        self.started = True
        if self.error is not None:
            self.fail(self.error)
            return
        proto = self.proto
        shared = proto.shared
        head = self.head
        try:
            assert head is not None
            self.upstream = target = shared.router.pick(head)
        except Exception as exc:
            self.fail(exc)
            return
        if head.edited:  # an inbound stage changed the head (JWT): it goes upstream as changed, not as received
            self.raw_head = None
            self.headers = head.headers
            self.target = head.path.encode("latin-1")
        policy = self.policy = target.policy
        if target.breaker is None and (policy is None or policy.plain):
            # The common request (no shaping, fault, breaker or per-try timer): what _go and _dispatch do for
            # it, inline, so it costs one call instead of three; any other takes the way below.
            if self.expect_continue and not self.req_done:
                proto.write(CONTINUE)
            timeout = shared.response_timeout
            if policy is not None and policy.timeout is not None:
                timeout = policy.timeout
            if timeout is not None:
                self.timeout = timeout
                self.deadline = deadline = proto.loop.time() + timeout
                proto.watch(deadline)
            if target.counts:
                target.acquire()  # in-flight count for LEAST_REQUEST; released when this try ends
            conn = shared.pool.take(target.key)
            if conn is not None:
                self._send(conn)
            else:
                self._connect()
            return
        if policy is not None and policy.shaped and local_policy.shape(self, policy):
            return
        if self.expect_continue and not self.req_done:
            self.proto.write(CONTINUE)
        if policy is not None and policy.fault is not None and self._control().inject_fault(policy.fault):
            return
        self._go()

    def _tell_peer(self, conn: UpstreamConnection) -> None:
        """The first request on an upstream connection (outbound) carries this sidecar's peer metadata header
        when the endpoint has a sidecar: the called sidecar keeps it for the connection, whose requests all
        come from this workload, so later requests on it need none (proxy/telemetry/peer_metadata.py)."""
        conn.peer_told = True
        line = self.proto.shared.peer_line
        target = self.upstream
        if line is not None and target is not None:
            endpoint = target.endpoint
            if endpoint is not None and endpoint.sidecar:  # type: ignore[attr-defined]
                self._add_peer_metadata(line)

    def _tell_peer_replay(self, conn: UpstreamConnection, data: bytes) -> bytes:
        """A retry sent on a connection not told yet: the request as it went out (`data`, head first), with the
        peer metadata line spliced before the head's blank line unless the first try carried it already."""
        conn.peer_told = True
        line = self.proto.shared.peer_line
        target = self.upstream
        endpoint = target.endpoint if target is not None else None
        if line is None or endpoint is None or not endpoint.sidecar:  # type: ignore[attr-defined]
            return data
        end = data.find(b"\r\n\r\n") + 2
        if end < 2 or line in data[:end + 2]:
            return data
        return b"".join((data[:end], line, data[end:]))

    def _add_peer_metadata(self, line: bytes) -> None:
        """Add this sidecar's peer metadata header (`line`, CRLF-ended): spliced before the blank line of a head
        forwarded as received (one slice and one concatenation), else one more parsed header."""
        raw = self.raw_head
        if raw is not None:
            self.raw_head = b"".join((raw[:-2], line, b"\r\n"))
        else:
            name, _, value = line[:-2].partition(b": ")
            self.headers.append((name, value))

    def _go(self) -> None:
        """Start the response timeout (the route's, else the listener's) and send the first try."""
        policy = self.policy
        timeout = self.proto.shared.response_timeout
        if policy is not None and policy.timeout is not None:
            timeout = policy.timeout
        if timeout is not None:
            proto = self.proto
            self.timeout = timeout
            self.deadline = deadline = proto.loop.time() + timeout
            proto.watch(deadline)
        self._dispatch()

    def _dispatch(self) -> None:
        target = self.upstream
        assert target is not None
        breaker = target.breaker
        if breaker is not None:  # connectionPool limits (proxy/outbound/circuit_breaker.py)
            try:
                if not target.enter(self._on_admitted):
                    if not self.deadline and self.timer is None:  # no route timeout (passthrough): bound the wait
                        self._bound_wait(breaker.connect_timeout or self.proto.shared.pool.connect_timeout)
                    return  # waiting for a slot; the route timeout still runs
            except Overflow as exc:
                self.fail(exc)
                return
        if target.counts:
            target.acquire()  # in-flight count for LEAST_REQUEST; released when this try ends
        policy = self.policy
        if policy is not None and policy.retry is not None and policy.retry.per_try_timeout is not None:
            self._control().arm_try_timer(policy.retry.per_try_timeout)
        # the key was made with the target: the cluster's own connections when it has connection settings
        # (maxRequestsPerConnection, idleTimeout, ...), and per verified identity with mutual TLS
        conn = self.proto.shared.pool.take(target.key)
        if conn is not None:
            self._send(conn)
        else:
            self._connect()

    # Timer and task callbacks run outside any client callback: each catches what our own code raises, so
    # a bug answers 500 at once (rescue logs it) instead of leaving the client to its stream idle timeout.

    def _on_admitted(self) -> None:
        if not self.resp_done:
            try:
                self._dispatch()
            except Exception as exc:
                self.fail(exc)

    def _connect(self) -> None:
        target = self.upstream
        assert target is not None
        pool, breaker = self.proto.shared.pool, target.breaker
        if target.tls is not None:  # mutual TLS to the endpoint's sidecar, pooled under the target's key
            task = asyncio.ensure_future(pool.connect(
                target.address, target.port, breaker.connect_timeout if breaker is not None else None,
                breaker.conn_policy if breaker is not None else None, tls=target.tls, key=target.key))
        elif breaker is not None:  # the cluster's tcp.connectTimeout and connection settings
            task = asyncio.ensure_future(pool.connect(target.address, target.port, breaker.connect_timeout,
                                                      breaker.conn_policy))
        else:
            task = asyncio.ensure_future(pool.connect(target.address, target.port))
        self.connecting = task
        task.add_done_callback(self._on_connected)

    def _on_connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
        if task is not self.connecting:  # we gave up on it; hand an unused connection to the pool
            if not task.cancelled() and task.exception() is None:
                self.proto.shared.pool.release(task.result())
            return
        self.connecting = None
        exc = task.exception()
        try:
            if exc is None:
                self._send(task.result())
                return
            if isinstance(exc, ProxyError):  # a connect failure; anything else is our bug: no retry, no blame
                self._report_failure()
                if self.policy is not None and self._control().on_failure(retry.CONNECT_FAILURE):
                    return
        except Exception as bug:
            exc = bug
        self.fail(exc)

    def _drop_upstream(self) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.abort()
        task = self.connecting
        if task is not None:
            self.connecting = None
            task.cancel()

    def _bound_wait(self, wait: float) -> None:
        """A request queued by its breaker with no route timeout waits at most `wait` seconds (the cluster's
        connect timeout, else the pool's 5 s), then gets 503 UO: a full queue cannot hold it for minutes."""
        self.timer = self.proto.loop.call_later(wait, self._on_wait_timeout, wait)

    def _on_wait_timeout(self, wait: float) -> None:
        self.timer = None
        if self.upstream is not None and self.upstream.slot == 1:  # still queued
            self.fail(Overflow(f"upstream overflow: no connection slot within {wait:g}s"))
