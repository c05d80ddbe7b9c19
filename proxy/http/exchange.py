"""One proxied request: routes it, streams its body upstream and the response back, answers failures.

The server protocol (proxy/http/server.py) creates an Exchange when a request head is parsed and starts
it when it reaches the front of the connection's pipeline; the upstream connection
(proxy/http/upstream.py) calls back with response events. Output to the client is gathered in `out` and
written once per upstream read, so a small response costs one write. Callbacks, not a task: a task is
made only to open a new upstream connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy.core.errors import BadRequest, Overflow, ProxyError, RetryBufferExceeded, UpstreamTimeout
from proxy.core.request import Caller, RequestHead
from proxy.core.target import Target
from proxy.http.flow import BUFFERING, PEER_FULL, PIPELINE
from proxy.http import local_policy, mirroring, telemetry
from proxy.http.head import COLON_SP, CRLF, request_head, status_line, write_response_head
from proxy.http.rescue import rescue
from proxy.http.resilience import Resilience, RetryPick
from proxy.http.upstream import STREAM, UpstreamConnection
from proxy.outbound import mirror, retry

if TYPE_CHECKING:
    from proxy.http.listener_state import Downstream
    from proxy.outbound.mirror import MirrorPolicy

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
BUFFER_LIMIT = 64 * 1024  # request body held while connecting before we stop reading the client
# Request body bytes kept to resend on a retry (Envoy's retry/shadow buffer: the listener's
# per_connection_buffer_limit_bytes, default 1 MiB). A body over it streams and is not retried.
# Set once at start-up from `proxy run --retry-buffer-limit` (proxy/main.py); 0 keeps nothing.
RETRY_BUFFER_LIMIT = 1024 * 1024


class Exchange:
    __slots__ = (
        # request
        "proto", "head", "method", "target", "headers", "drop", "chunked", "http11", "keep_alive",
        "expect_continue", "is_head", "req_done", "pending", "pending_size", "replay", "kept", "kept_size", "error",
        "upgrade",
        # upstream
        "upstream", "conn", "connecting", "retried", "timer", "deadline", "timeout",
        # route policy (proxy/outbound/policy.py): timeout, retries, fault
        "policy", "ctl",
        # response
        "status", "flag", "stream_chunked", "head_sent", "resp_done", "close_after", "out", "bytes_sent",
        # bookkeeping
        "started", "released", "t0",
        "raw_head",  # the request head as received (+ x-request-id) when it may go upstream as is, else None
    )

    def __init__(self, proto: Downstream, head: RequestHead | None, method: bytes, target: bytes,
                 headers: list[tuple[bytes, bytes]], drop: frozenset[bytes] | None, has_body: bool,
                 chunked: bool, http11: bool, keep_alive: bool, expect_continue: bool,
                 error: ProxyError | None = None) -> None:
        # request
        self.proto = proto
        self.head = head
        self.method = method
        self.target = target
        self.headers = headers
        self.drop = drop
        self.chunked = chunked
        self.http11 = http11
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.is_head = method == b"HEAD"
        self.req_done = not has_body
        self.pending: list[bytes] = []  # framed body bytes not yet written upstream
        self.pending_size = 0  # body bytes in `pending` (without chunk framing)
        self.replay: bytes | None = None  # what went out in the first write, if it can be sent again
        # Body sent after that first write, kept for a retry while the route retries and it fits in
        # RETRY_BUFFER_LIMIT (kept_size counts it without chunk framing; set when `kept` is made).
        self.kept: list[bytes] | None = None
        self.error = error
        self.upgrade: bytes | None = None  # the Upgrade value of a websocket request (set by the server)
        self.raw_head: bytes | None = None  # set by the server; dropped when a rewrite or header edit applies
        # upstream
        self.upstream: Target | None = None
        self.conn: UpstreamConnection | None = None
        self.connecting: asyncio.Task[UpstreamConnection] | None = None
        self.retried = False
        self.timer: asyncio.TimerHandle | None = None
        # The response timeout as a deadline (loop time; 0: none) that the connection's one timer checks
        # (proxy/http/conn_guard.py), instead of a timer handle per request; `timeout` its length in seconds.
        self.deadline = 0.0
        self.timeout = 0.0
        # route policy
        self.policy = None  # the chosen rule's RoutePolicy, from the Target
        # Fault injection, retries, per-try timeouts (proxy/http/resilience.py): made when first needed.
        self.ctl: Resilience | None = None
        # response
        self.status = 0
        self.flag = "-"
        self.stream_chunked = False
        self.head_sent = False
        self.resp_done = False
        self.close_after = False
        self.out: list[bytes] = []
        self.bytes_sent = 0
        # bookkeeping
        self.started = False
        self.released = False
        self.t0 = proto.loop.time() if proto.shared.on_complete is not None else 0.0

    # --- request side (called by the server protocol) ---------------------------------------------

    def start(self) -> None:
        """This request is now first in line: route it and send it."""
        self.started = True
        if self.error is not None:
            self.fail(self.error)
            return
        shared = self.proto.shared
        try:
            assert self.head is not None
            self.upstream = target = shared.router.pick(self.head)
        except Exception as exc:
            self.fail(exc)
            return
        policy = self.policy = target.policy
        if policy is not None and policy.shaped and local_policy.shape(self, policy):
            return
        if self.expect_continue and not self.req_done:
            self.proto.write(CONTINUE)
        if policy is not None and policy.fault is not None and self._control().inject_fault(policy.fault):
            return
        self._go()

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
        if breaker is None or breaker.conn_policy is None:
            conn = self.proto.shared.pool.take((target.address, target.port))
        else:  # the cluster's own connections (maxRequestsPerConnection, idleTimeout, ...)
            conn = self.proto.shared.pool.take(breaker.conn_policy.key(target.address, target.port))
        if conn is not None:
            self._send(conn)
        else:
            self._connect()

    def feed_body(self, chunk: bytes) -> None:
        if self.resp_done:  # answered already (early response or error): drop the rest
            return
        if self.chunked:  # one write per chunk rather than three
            self._to_upstream(b"".join((b"%x\r\n" % len(chunk), chunk, CRLF)), len(chunk))
        else:
            self._to_upstream(chunk, len(chunk))

    def feed_end(self) -> None:
        if self.req_done:
            return
        if self.chunked and not self.resp_done:
            self._to_upstream(LAST_CHUNK, 0)
        self.req_done = True
        if self.resp_done:
            self._release()

    def client_gone(self) -> None:
        """The client closed: stop the upstream side, log as downstream disconnect."""
        if self.resp_done:
            return
        self._finish()
        self.flag = "DC"
        self._drop_upstream()
        self._log()

    # --- response side (called by the upstream connection) ----------------------------------------

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                         drop: frozenset[bytes] | None, framing: int) -> None:
        target = self.upstream
        if target is not None and target.outlier is not None:  # outlierDetection: every try's outcome
            target.outlier.report(target.endpoint, status)
        policy = self.policy
        if policy is not None:
            if status >= policy.retry_from and self._control().on_response(status):
                return
            if policy.edits_response:  # headers.response, corsPolicy (proxy/outbound/headers.py, cors.py)
                headers = local_policy.edit_response(policy, self.head, headers)
        head = self.head
        if head is not None and head.set_cookie is not None:  # a generated consistentHash httpCookie
            headers = [*headers, (b"set-cookie", head.set_cookie)]
        self.status = status
        proto = self.proto
        close = not self.keep_alive or proto.stopping
        if framing == STREAM:
            if self.http11:
                self.stream_chunked = True
            else:  # an HTTP/1.0 client cannot read chunked: the end of the body is our close
                close = True
        self.close_after = close
        write_response_head(self.out, status, reason, headers, drop, self.stream_chunked, close)

    def on_upgrade(self, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """The upstream switched protocols (101) for a websocket request: forward the head, then relay raw
        bytes both ways until either side closes. The upstream connection never returns to the pool."""
        conn = self.conn
        assert conn is not None
        self._finish()  # the route timeout stops at the 101; the endpoint and retry slots are given back
        self.status = 101
        self.close_after = True
        proto = self.proto
        out = [status_line(101, reason)]
        for name, value in headers:  # connection/upgrade are the point here: pass them through
            out += (name, COLON_SP, value, CRLF)
        out.append(CRLF)
        self.flush()
        proto.writelines(out)
        self.head_sent = True
        conn.tunnel = proto
        proto.tunnel = conn
        if proto.early:
            conn.transport.write(proto.early)
            proto.early = b""
        proto.gate.resume(PIPELINE | BUFFERING)
        self._log()

    def on_response_body(self, body: bytes) -> None:
        self.bytes_sent += len(body)
        if self.stream_chunked:
            self.out += (b"%x\r\n" % len(body), body, CRLF)
        else:
            self.out.append(body)

    def on_response_end(self) -> None:
        if self.resp_done:
            return
        self.conn = None
        self._finish()
        if self.stream_chunked:
            self.out.append(LAST_CHUNK)
        self.flush()
        proto = self.proto
        proto.gate.resume(PEER_FULL)
        if proto.shared.on_complete is not None:  # no access log or telemetry: nothing to report
            self._log()
        if self.req_done or self.close_after:
            self._release()

    def flush(self) -> None:
        out = self.out
        if out:
            self.head_sent = True
            self.proto.writelines(out)
            out.clear()

    def upstream_lost(self, exc: BaseException, retryable: bool) -> None:
        """The upstream connection failed. A reused idle connection the server closed as we sent is
        retried once on a fresh one, but only if the whole request is still in hand to resend."""
        self.conn = None
        if self.resp_done:
            return
        if not isinstance(exc, ProxyError):  # our bug in a response callback: 500, not retried, not the upstream's
            self.fail(exc)
            return
        if retryable and self.replay is not None and not self.retried:
            self.retried = True
            self._connect()
            return
        self._report_failure()
        if self.policy is not None and self._control().on_failure(retry.RESET):
            return
        self.fail(exc)

    # --- failure ----------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Answer via rescue if nothing was sent yet, else cut the client connection."""
        if self.resp_done:
            return
        self._finish()
        self._drop_upstream()
        proto = self.proto
        proto.gate.resume(BUFFERING | PEER_FULL)
        if self.head_sent:
            self.flag = getattr(exc, "flag", "-")
            self.close_after = True
            proto.close()
        else:
            self.out.clear()
            close = (not self.req_done or not self.keep_alive or proto.stopping
                     or isinstance(exc, BadRequest) or not isinstance(exc, ProxyError))  # ours: 500 + close
            self.close_after = close
            self.status, self.flag, payload = rescue(exc, close)
            proto.write(payload)
        self._log()
        self._release()

    # --- internals --------------------------------------------------------------------------------

    def _to_upstream(self, data: bytes, size: int) -> None:
        """`data`: body bytes as framed upstream; `size`: how many of them are body (chunk framing aside)."""
        conn = self.conn
        if self.kept is not None:  # a retry may resend it: keep it, up to RETRY_BUFFER_LIMIT
            self.kept_size += size
            if self.kept_size <= RETRY_BUFFER_LIMIT:
                self.kept.append(data)
                if conn is not None:
                    conn.transport.write(data)
                return  # between tries it goes out with the next one
            self.kept = self.replay = None  # too large to resend: it streams, and is not retried
            if conn is None:  # waiting to retry and what came meanwhile cannot be kept (Envoy: 507)
                self.fail(RetryBufferExceeded("exceeded request buffer limit while retrying upstream"))
                return
        if conn is not None:
            self.replay = None  # body went out after the first write: no longer safe to resend
            conn.transport.write(data)
        else:
            self.pending.append(data)
            self.pending_size += size
            if self.pending_size > BUFFER_LIMIT:
                self.proto.gate.pause(BUFFERING)

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
        if breaker is not None:  # the cluster's tcp.connectTimeout and connection settings
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

    def _send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.attach(self)
        if self.replay is not None:  # a retry: resend exactly what went out, then what was kept since
            data = self.replay
            if self.kept:
                data = b"".join((data, *self.kept))
        else:
            raw_head = self.raw_head
            if raw_head is not None:  # nothing to drop, add or change but x-request-id (spliced in already)
                parts = [raw_head]
            else:
                parts = request_head(self.method, self.target, self.headers, self.drop, self.chunked)
            if self.upgrade is not None:  # request_head drops hop-by-hop names; an upgrade needs them
                parts.insert(-1, b"connection: upgrade\r\nupgrade: %s\r\n" % self.upgrade)
            in_hand = self.pending_size
            if self.pending:
                parts += self.pending
                self.pending = []
                self.pending_size = 0
                self.proto.gate.resume(BUFFERING)
            data = b"".join(parts)
            if self.req_done:
                if in_hand <= RETRY_BUFFER_LIMIT:
                    self.replay = data
            else:  # the body is still coming: keep it for a retry if the route retries and it may fit
                policy = self.policy
                if policy is not None and policy.retry is not None and in_hand <= RETRY_BUFFER_LIMIT \
                        and RETRY_BUFFER_LIMIT:
                    self.replay = data
                    self.kept = []
                    self.kept_size = in_hand
        conn.transport.write(data)
        if self.proto.write_paused:
            conn.gate.pause(PEER_FULL)
        if conn.write_paused:
            self.proto.gate.pause(PEER_FULL)

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

    def on_deadline(self) -> None:
        """The response timeout passed (called by the connection's timer)."""
        self.deadline = 0.0
        self.fail(UpstreamTimeout(f"upstream request timeout after {self.timeout:g}s"))

    # --- local policies (proxy/http/local_policy.py) and mirroring (proxy/http/mirroring.py) -------------

    def closes(self) -> bool:
        """A local answer closes the connection after it (body unread, no keep-alive, or draining)."""
        return not self.req_done or not self.keep_alive or self.proto.stopping

    def caller(self) -> Caller:
        return self.proto.shared.caller

    def _mirror(self, policy: MirrorPolicy) -> None:
        """Send a copy of the request (as it goes upstream) to the chosen mirrors once its body is in hand."""
        copy = mirroring.pending_copy(policy, self.proto.shared.mirror_pick, len(_mirror_copies), self.head,
                                      self.method, self.target, self.headers, self.drop, self.chunked, self.pending)
        if copy is None:
            return
        if self.req_done:
            copy.send()
        else:  # the rest of the body is copied as it arrives (MirroredExchange), sent at its end
            _mirror_copies[self] = copy
            self.__class__ = MirroredExchange

    def _answer(self, status: int, data: bytes, close: bool) -> None:
        """Write a response the sidecar made itself; nothing goes upstream."""
        self.resp_done = True
        self.close_after = close
        self.status = status
        self.proto.write(data)
        self._log()
        self._release()

    def _finish(self) -> None:
        """The response is settled (complete, failed, or the client left): stop the timers and give
        the endpoint's in-flight slot back. Runs once; every path that ends an exchange calls it."""
        self.resp_done = True
        if self.upstream is not None:
            self.upstream.release()
        if self.ctl is not None:
            self.ctl.finish()
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _control(self) -> Resilience:
        ctl = self.ctl
        if ctl is None:
            ctl = self.ctl = Resilience(self)
        return ctl

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.proto.loop

    @property
    def retry_pick(self) -> RetryPick | None:
        return self.proto.shared.retry_pick

    def _report_failure(self) -> None:
        """A try ended without a response (connect failure, reset, per-try timeout): outlierDetection counts it."""
        target = self.upstream
        if target is not None and target.outlier is not None:
            target.outlier.report(target.endpoint, 0)

    def _release(self) -> None:
        if not self.released:
            self.released = True
            self.proto.exchange_done(self)

    def _log(self) -> None:
        on_complete = self.proto.shared.on_complete
        if on_complete is not None:
            telemetry.report(on_complete, self.head, self.upstream, self.status, self.flag, self.bytes_sent,
                             (self.proto.loop.time() - self.t0) * 1000.0)


# Mirrored requests whose body is still arriving: the copy being built (proxy/outbound/mirror.py).
_mirror_copies: dict[Exchange, mirror.PendingCopy] = {}


class MirroredExchange(Exchange):
    """An Exchange whose request is mirrored: it also copies the body, and sends the copy at its end.
    An exchange becomes one (same slots) only when it mirrors, so others never pay for the copy."""

    __slots__ = ()

    def feed_body(self, chunk: bytes) -> None:
        copy = _mirror_copies.get(self)
        if copy is not None and not copy.add(b"".join((b"%x\r\n" % len(chunk), chunk, CRLF)) if self.chunked
                                             else chunk):
            del _mirror_copies[self]
        super().feed_body(chunk)

    def feed_end(self) -> None:
        copy = _mirror_copies.pop(self, None)
        if copy is not None and not self.req_done and (not self.chunked or copy.add(LAST_CHUNK)):
            copy.send()
        super().feed_end()

    def client_gone(self) -> None:
        _mirror_copies.pop(self, None)
        super().client_gone()

    def _release(self) -> None:
        # Every way an exchange ends passes here or through client_gone: a request that ends before its
        # body did (upstream failure, timeout, error) drops its copy and frees its entry.
        _mirror_copies.pop(self, None)
        super()._release()
