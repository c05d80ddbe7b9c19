"""One proxied request: routes it, streams its body upstream and the response back, answers failures.

The server protocol (proxy/http/server.py) creates an Exchange when a request head is parsed and starts
it when it reaches the front of the connection's pipeline; the upstream connection
(proxy/http/upstream.py) calls back with response events. Output to the client is gathered in `out` and
written once per upstream read, so a small response costs one write. Callbacks, not a task: a task is
made only to open a new upstream connection.

Split by concern into plain base classes of Exchange: routing and the way to an upstream connection
(exchange_connect.py: start), the response path (exchange_response.py), how an exchange ends: failure, local
answers and bookkeeping (exchange_end.py). Sending on the connection stays here, with RETRY_BUFFER_LIMIT.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy.core.errors import ProxyError, RetryBufferExceeded
from proxy.core.request import Caller, RequestHead
from proxy.core.target import Target
from proxy.http.exchange_connect import UpstreamConnect
from proxy.http.exchange_end import ExchangeEnd
from proxy.http.exchange_response import LAST_CHUNK, ResponseSide
from proxy.http.flow import BUFFERING, PEER_FULL
from proxy.http import mirroring
from proxy.http.head import CRLF, request_head
from proxy.http.resilience import Resilience, RetryPick
from proxy.http.upstream import UpstreamConnection
from proxy.outbound import mirror

if TYPE_CHECKING:
    from proxy.http.listener_state import Downstream
    from proxy.outbound.mirror import MirrorPolicy

BUFFER_LIMIT = 64 * 1024  # request body held while connecting before we stop reading the client
# Request body bytes kept to resend on a retry (Envoy's retry/shadow buffer: the listener's
# per_connection_buffer_limit_bytes, default 1 MiB). A body over it streams and is not retried.
# Set once at start-up from `proxy run --retry-buffer-limit` (proxy/main.py); 0 keeps nothing.
RETRY_BUFFER_LIMIT = 1024 * 1024


class Exchange(UpstreamConnect, ResponseSide, ExchangeEnd):
    # The upstream connect path (exchange_connect.py), the response path (exchange_response.py) and how an
    # exchange ends (exchange_end.py) are plain base classes without state: one class, no extra call layer.
    # What the common request (a keep-alive GET on a pooled connection, no route policy at work) reads
    # lives in slots, all set in __init__. The rest are class defaults below, stored (in the instance's
    # __dict__, made then) only by a request that needs them. Not more of them: on CPython 3.11 reading
    # a class default through an instance is unspecialized and costs more than the slot store it saves.
    __slots__ = (
        # request
        "proto", "head", "method", "target", "headers", "drop", "chunked", "http11", "keep_alive",
        "expect_continue", "is_head", "req_done", "pending", "replay", "error", "upgrade",
        "bytes_received",  # request body bytes from the client (Envoy's %BYTES_RECEIVED%)
        "raw_head",  # the request head as received (+ x-request-id) when it may go upstream as is, else None
        # upstream
        "upstream", "conn", "timer", "deadline",
        # route policy (proxy/outbound/policy.py): timeout, retries, fault
        "policy", "ctl",
        # response
        "status", "stream_chunked", "head_sent", "resp_done", "close_after", "out", "bytes_sent",
        # bookkeeping; telemetry: request body bytes, loop time of the request's first byte, the access log's
        # response flags (Envoy's, set by a failure): read by every end's metrics, so a slot
        "started", "released", "t0", "flag",
        "__dict__",  # the fields below, once a request sets one
    )

    # --- set only by a request that needs them (see above) ---
    pending_size = 0  # body bytes in `pending` (without chunk framing)
    # Body sent after the first write, kept for a retry while the route retries and it fits in
    # RETRY_BUFFER_LIMIT (kept_size counts it without chunk framing).
    kept: list[bytes] | None = None
    kept_size = 0
    connecting: asyncio.Task[UpstreamConnection] | None = None  # a new upstream connection being opened
    retried = False  # a reused connection the upstream closed as we sent was retried once
    timeout = 0.0  # the response timeout in seconds, when `deadline` is set
    details = ""  # Envoy's response code details when a failure has some (proxy/core/errors.py ProxyError.details)
    upstream_at = 0.0  # loop time the upstream's response head came (Envoy's upstream service time); 0: none

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
        # framed body bytes not yet written upstream (a list once there are some)
        self.pending: list[bytes] | tuple[()] = ()
        self.replay: bytes | None = None  # what went out in the first write, if it can be sent again
        self.error = error
        self.upgrade: bytes | None = None  # the Upgrade value of a websocket request (set by the server)
        self.bytes_received = 0
        self.raw_head: bytes | None = None  # set by the server; dropped when a rewrite or header edit applies
        # upstream
        self.upstream: Target | None = None
        self.conn: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None  # a fault's delay or the bounded wait for a breaker's slot
        # The response timeout as a deadline (loop time; 0: none) that the connection's one timer checks
        # (proxy/http/conn_guard.py), instead of a timer handle per request.
        self.deadline = 0.0
        # route policy
        self.policy = None  # the chosen rule's RoutePolicy, from the Target
        # Fault injection, retries, per-try timeouts (proxy/http/resilience.py): made when first needed.
        self.ctl: Resilience | None = None
        # response
        self.status = 0
        self.stream_chunked = False  # the response is re-framed chunked for the client
        self.head_sent = False
        self.resp_done = False
        self.close_after = False
        self.out: list[bytes] = []
        self.bytes_sent = 0
        # bookkeeping
        self.started = False
        self.released = False
        self.t0 = proto.t_begin  # taken by the server when the head began (metrics need every duration)
        self.flag = "-"

    # The listener makes its exchanges as `new(Exchange)` then `init(...)`: calling the class goes through
    # type_call and slot_tp_init, which pack the 12 arguments into a tuple and a malloc'ed array (~450
    # instructions per request more on CPython 3.11).
    init = __init__

    # --- request side (called by the server protocol) ---------------------------------------------

    def feed_body(self, chunk: bytes) -> None:
        self.bytes_received += len(chunk)
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

    # --- sending on the upstream connection (the retry buffer limit is read here) ---------------------

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
            if self.pending:
                self.pending.append(data)  # type: ignore[union-attr]
            else:
                self.pending = [data]
            self.pending_size += size
            if self.pending_size > BUFFER_LIMIT:
                self.proto.gate.pause(BUFFERING)

    def _send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        # UpstreamConnection.attach inline (one call less on every request; change both together)
        conn.exchange = self
        conn.got_bytes = False
        conn.until_close = False
        conn.status = 0
        conn.head_left = conn.pool.max_head_bytes
        conn.in_head = True
        if self.replay is not None:  # a retry: resend exactly what went out, then what was kept since
            data = self.replay
            if not conn.peer_told:  # a new connection: its first request tells who calls, a retry's too
                data = self.replay = self._tell_peer_replay(conn, data)
            if self.kept:
                data = b"".join((data, *self.kept))
        else:
            if not conn.peer_told:  # a new connection: tell a sidecar who calls, once (peer_metadata.py)
                self._tell_peer(conn)
            # raw_head: the head as received, nothing to drop, add or change but x-request-id (spliced in
            # already); alone (no body yet, no upgrade: the usual GET) it goes out as it is, without a join.
            data = self.raw_head
            in_hand = 0  # body bytes in hand (pending_size is 0 without pending)
            if data is None or self.pending or self.upgrade is not None:
                if data is not None:
                    parts = [data]
                else:
                    parts = request_head(self.method, self.target, self.headers, self.drop, self.chunked)
                if self.upgrade is not None:  # request_head drops hop-by-hop names; an upgrade needs them
                    parts.insert(-1, b"connection: upgrade\r\nupgrade: %s\r\n" % self.upgrade)
                if self.pending:
                    in_hand = self.pending_size
                    parts += self.pending
                    self.pending = ()
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

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.proto.loop

    @property
    def retry_pick(self) -> RetryPick | None:
        return self.proto.shared.retry_pick



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

    def on_response_end(self, now: float = 0.0) -> None:
        super().on_response_end(now)
        if self.released:  # released inline there, past _release below
            _mirror_copies.pop(self, None)

    def _release(self) -> None:
        # Every way an exchange ends passes here, through client_gone or on_response_end (which releases
        # inline): a request that ends before its body did (upstream failure, timeout, error) drops its
        # copy and frees its entry.
        _mirror_copies.pop(self, None)
        super()._release()
