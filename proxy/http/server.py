"""The downstream side: one asyncio.Protocol per client connection (the listener: proxy/http/listener.py).

The same protocol serves both listeners; only how the request head is read differs (head.Mode).
Requests on a connection form a pipeline answered in order: the first is the active Exchange
(proxy/http/exchange.py), later ones wait with the client's reading paused. Shape after uvicorn's
protocols/http/httptools_impl.py.

What one connection may hold is bounded (proxy/http/limits.py, enforced with proxy/http/conn_guard.py): the bytes of a request head are counted
as they arrive, before httptools buffers them (431/414 past the limits); at most `max_pipelined` parsed
requests wait behind the active one (then the connection closes once they are answered); the bytes read
early for a websocket tunnel are one read at most, with reading paused. One timer per connection checks
the keep-alive, request-headers, request and stream-idle timeouts against timestamps and an activity
count, so no request arms a timer of its own. A refused request is answered, then the connection is
half-closed and drained for LINGER seconds (Envoy's delayed_close_timeout) so the client reads the answer
instead of a reset.

This module reads a request head into an Exchange (the httptools callbacks); the connection's lifecycle
(made, read, written, closed: server_lifecycle.py) and its pipeline (server_pipeline.py) are plain base
classes of HttpProxyProtocol, as its bounds are (conn_guard.py).
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools

from proxy.core.downstream import PLAINTEXT
from proxy.core.errors import BadRequest, HeadersTooLarge, UnsupportedCoding, UriTooLong
from proxy.core.request import PickedHead, RequestHead
from proxy.http.conn_guard import ConnectionGuard
from proxy.http.connect_tunnel import ConnectExchange
from proxy.http.exchange import Exchange
from proxy.http import head as head_module
from proxy.http.flow import PIPELINE, ReadGate
from proxy.http.head import (REQUEST_DROP, Mode, cached_authority, head_end_after_method, more_tokens,
                             resolve)
from proxy.http.listener_state import NOTED, ServerState
from proxy.http.server_lifecycle import LINGER, ConnectionLifecycle
from proxy.http.server_pipeline import RequestPipeline
from proxy.http.upstream import UpstreamConnection
from proxy.telemetry.trace_context import B3, B3_FLAGS, B3_SAMPLED, TRACE_HEADERS
from proxy.telemetry import peer_metadata
from proxy.telemetry.peer_metadata import HEADER as PEER_HEADER

__all__ = ["HttpProxyProtocol", "LINGER"]

_HTTP11 = b" HTTP/1.1\r\n"
_new = object.__new__
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class HttpProxyProtocol(ConnectionLifecycle, RequestPipeline, ConnectionGuard, asyncio.Protocol):
    # The connection's lifecycle (server_lifecycle.py), its pipeline (server_pipeline.py) and its bounds
    # (conn_guard.py) are plain base classes without state: one class, no extra call layer.
    __slots__ = (
        # shared
        "shared", "loop", "mode",
        # timeouts: one timer (keepalive_handle) checks them all; `reads` and `ticks` count reads and writes
        "keepalive_handle", "idle_since", "reads", "ticks", "seen_ticks", "quiet_since", "timed_out",
        # limits (proxy/http/limits.py), read once per connection
        "max_head", "max_headers", "max_url",
        # per-connection
        "transport", "parser", "gate", "write_paused", "closing", "stopping", "broken", "active",
        "pipeline", "advancing", "client", "downstream", "sni",
        "tls",  # the transport seals each write as TLS records of its own: writelines joins (server_lifecycle.py)
        "peer",  # inbound: the calling sidecar's PeerMetadata, told on the connection's first request (None: none)
        # the head being read: bytes it may still take, whether we are between requests or in a head,
        # and the loop time its first byte was parsed (0.0: no request is arriving)
        "head_left", "in_head", "t_begin",
        # the read in which the last request ended, and whether the current head began in that same read
        # (then its first bytes were not counted: on_headers_complete checks its parsed size instead)
        "done_read", "mid_head",
        # websocket tunnel (after the upstream's 101): the upstream connection, and client bytes read early
        "tunnel", "early",
        # a chunked body: the read its last chunk-size line was parsed in while no chunk data has come since (0: none),
        # so a later read without data is in the trailers, whose lines httptools holds whole (conn_guard.py)
        "trailing",
        # the last Host this connection sent that the authority cache knew, and its (host, port): a client sends
        # the same Host on every request, so one bytes comparison instead of hashing a fresh value in the cache
        "seen_host", "seen_authority",
        # per-request (the one being parsed)
        "current", "url", "headers",
        # the read a head began at its first byte, while that head is parsed (on_headers_complete may send it
        # upstream as received); None otherwise
        "raw",
    )

    def __init__(self, shared: ServerState) -> None:
        # shared
        self.shared = shared
        self.loop = asyncio.get_running_loop()
        self.mode = shared.mode
        # timeouts
        self.keepalive_handle: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.reads = 0
        self.ticks = 0
        self.seen_ticks = 0
        self.quiet_since = 0.0
        self.timed_out = False  # a timeout fired already: the next one closes outright
        # limits
        limits = shared.limits
        self.max_head = limits.max_head_bytes
        self.max_headers = limits.max_headers
        self.max_url = limits.max_url_bytes
        # per-connection
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = httptools.HttpRequestParser(self)
        self.gate: ReadGate = None  # type: ignore[assignment]
        self.write_paused = False
        self.closing = False
        self.stopping = False  # listener stopping or client half-closed: close once idle
        self.broken = False  # unparseable input seen: read no further
        self.active: Exchange | None = None
        self.pipeline: deque[Exchange] = deque()
        self.advancing = False
        self.client = ""  # the peer's IP, once per connection (consistentHash useSourceIp)
        self.downstream = PLAINTEXT  # inbound: the caller (principal, addresses), set in connection_made
        self.tls = False
        self.sni = ""  # inbound TLS: the ClientHello's server name, set by the acceptor (proxy/tls/acceptor.py)
        self.peer: object = None
        self.tunnel: UpstreamConnection | None = None
        self.early = b""
        self.trailing = 0
        self.head_left = self.max_head
        self.in_head = True
        self.t_begin = 0.0
        self.done_read = -1
        self.mid_head = False
        self.seen_host = b""
        self.seen_authority: tuple[str, int] | None = None
        # per-request
        self.current: Exchange | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.raw: bytes | None = None

    # --- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        if self.headers:  # the last message's trailers (on_headers_complete left an empty list for the head)
            self.headers = []
        self.t_begin = self.loop.time()
        self.mid_head = self.reads == self.done_read

    def on_url(self, url: bytes) -> None:
        prior = self.url  # b"" but for a target split across reads (concatenating b"" still costs a call)
        if prior:
            url = prior + url
        if len(url) > self.max_url:
            raise UriTooLong(f"request target longer than {self.max_url} bytes")
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if len(headers) >= self.max_headers:
            raise HeadersTooLarge(f"more than {self.max_headers} request headers")
        # RFC 9110 5.5: a field value has no trailing whitespace (OWS), but llhttp keeps it (`Host: reviews `);
        # Envoy strips it, and so must we before routing, policy, JWTs and tracing read it (a head forwarded as
        # received keeps it: harmless). llhttp strips the leading OWS and refuses every other control byte, so a
        # last byte below b"!" is SP or HTAB: one int compare in the usual case. Trailers pass here too.
        if value and value[-1] < 33:
            value = value.rstrip(b" \t")
        headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.shared.head_budget.held:  # this head may have been held across reads: no longer
            self.shared.head_budget.release(self)
        raw, self.raw = self.raw, None  # only the first head of a read starts at its first byte
        if self.broken:
            return
        parser = self.parser
        method = parser.get_method()
        if method == b"CONNECT" and self.mode is Mode.OUTBOUND:  # HTTPS_PROXY tunnels (proxy/http/connect_tunnel.py)
            tunnel = self.current = ConnectExchange(self, self.url)  # type: ignore[assignment]
            self.pipeline.append(tunnel)  # type: ignore[arg-type]
            if self.active is None:
                self._advance()
            else:
                self.gate.pause(PIPELINE)
            return
        url = target = self.url
        # A head parsed from raw[0] whose request line is `method SP target SP HTTP/1.1 CRLF` (the target cannot
        # hold a space, and llhttp parsed these very bytes) is HTTP/1.1: one startswith instead of llhttp's
        # version through str.format on every request. Leading blank lines or extra spaces: asked of llhttp.
        # (slices compared: bytes.startswith parses its arguments the old way, ~400 instructions a call on 3.11)
        from_raw = raw is not None and raw[:len(method)] == method
        at = len(method) + 1 + len(url)
        if from_raw and raw[at:at + 11] == _HTTP11:  # type: ignore[index]
            version = "1.1"
            http11 = True
        else:
            # Not that canonical line: llhttp also takes extra spaces and `RTSP/1.1` as HTTP/1.1, which an
            # upstream may read otherwise than we routed it: such a head is rebuilt, never sent as received.
            from_raw = False
            version = parser.get_http_version()
            http11 = version == "1.1"
        keep_alive = http11 and parser.should_keep_alive()  # HTTP/1.0 clients: close after each
        headers = self.headers
        # a chunked body's trailers come through on_header too: into a list of their own, counted against the same
        # limit and dropped (Envoy's HTTP/1 default), never into this head, which routing, policy, retries and
        # the access log read after the body
        self.headers = []
        if self.mid_head:
            self._check_head_size(method, headers)
        host = peer = None
        has_body = chunked = expect = has_id = hop = False
        drop = None
        noted: dict[bytes, bytes] | None = None  # trace headers (proxy/telemetry/trace_context.py): first values
        error: BadRequest | None = None
        stops = self.shared.picks.noted  # NOTED, and the names an inbound stage reads (HeaderPicks), if any
        picked: dict[bytes, bytes] | None = None  # the values of those names, each name's joined
        for name, value in headers:
            if name not in stops:  # most headers (user-agent, accept ...): one set lookup
                continue
            if name in TRACE_HEADERS:
                if noted is None:
                    noted = {name: value}
                elif name not in noted:  # only the first value counts (Envoy: an untrusted header)
                    noted[name] = value
            elif name == b"host":
                if host is None:
                    host = value
                else:  # RFC 9112 3.2: more than one Host is a bad request, never routed by either
                    error = BadRequest("more than one Host header")
            elif name == b"content-length":
                has_body = int(value) > 0  # llhttp has validated it
            elif name == b"transfer-encoding":
                has_body = chunked = hop = True
                if error is None and value.strip().lower() != b"chunked":
                    error = UnsupportedCoding(f"transfer coding {value.decode('latin-1')!r} is not implemented")
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
                hop = True
            elif name == b"x-request-id":
                has_id = True
            elif name == PEER_HEADER:  # the calling sidecar's metadata (inbound); from an app, a forgery
                peer = value if peer is None else b""  # more than one: none is believed
            elif name == b"connection":
                drop = more_tokens(drop, value)
                hop = True
            elif name in REQUEST_DROP:  # the rest of it
                hop = True
            elif picked is None:  # a name of picks.names: every value joined with ",", as header_value does
                picked = {name: value}
            elif name in picked:
                picked[name] += b"," + value
            else:
                picked[name] = value
        if not http11 and error is None:
            if version != "1.0":  # HTTP/0.9 (no version) or a version this listener does not speak
                error = BadRequest(f"HTTP/{version} is not supported")
            elif chunked:  # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing
                error = BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        head = None
        raw_head = None
        path = ""
        if error is None:
            # `b"#" in url` would first try b"#" as an int inside CPython (a TypeError raised and cleared, ~1.9k
            # instructions); the decoded target is needed anyway, and `in` on a str is a plain search.
            path = url.decode("latin-1")
            if "#" in path:  # RFC 9112 3.2 has no fragment; Envoy refuses one (400), as an app
                error = BadRequest("a #fragment in the request target")  # may read `/ok#/../admin` as /admin
        upgrade = None
        if parser.should_upgrade():  # rare: read the flag once
            if method == b"GET":
                upgrade = next((v for n, v in headers if n == b"upgrade"), None)
                if upgrade is not None and upgrade.strip().lower() != b"websocket":
                    upgrade = None
            if error is None and upgrade is None:
                error = BadRequest("CONNECT is not supported: send plain HTTP requests through this proxy"
                                   if method == b"CONNECT" else "protocol upgrade is not supported")
        # error: a bad header found above (two Hosts, a transfer coding), answered as it is
        if error is None:
            origin = url[0] == 0x2F if url else False  # starts with "/" (an index, not a slice object and a compare)
            # The common case, resolve()'s own first step inlined: origin-form and a Host seen before.
            found = None
            if origin and host is not None:
                if host == self.seen_host:
                    found = self.seen_authority
                else:
                    found = cached_authority(host)
                    if found is not None:
                        self.seen_host, self.seen_authority = host, found
            if found is not None:
                host_s, port = found
                host_override = None
            else:
                try:
                    host_s, port, target, host_override = resolve(self.mode, url, host)
                except BadRequest as exc:
                    error = exc
            if error is None:
                end = 0
                if from_raw and not hop and http11 and host_override is None and origin:  # origin-form as sent
                    # head_end_after_method's first case inline (a read holding just the head): no call
                    if raw[-4:] == b"\r\n\r\n" and raw.count(b"\n") == len(headers) + 2:  # type: ignore[index]
                        end = len(raw)  # type: ignore[arg-type]
                    else:
                        end = head_end_after_method(raw, len(headers))  # type: ignore[arg-type]
                if host_override is not None:
                    headers = [h for h in headers if h[0] != b"host"]
                    headers.append((b"host", host_override))
                tracer = self.shared.tracer
                trace = extra = None
                # (proxy/telemetry/tracer.py): mostly nothing to do, or lines to splice. A decision not to sample
                # propagated as sidecars send it (x-b3-sampled: 0, no b3 or flags) is Tracer.begin's PASS whatever
                # its policy: answered here, without the call (every inbound request from a sidecar, unsampled)
                if tracer is not None and (noted is None or noted.get(B3_SAMPLED) != b"0" or B3 in noted
                                           or B3_FLAGS in noted):
                    extra, rebuilt, trace = tracer.begin(noted, headers)
                    if rebuilt is not None:  # a sampled (or malformed) context: the head is rebuilt
                        headers, end = rebuilt, 0
                if has_id:
                    if end:
                        raw_head = raw[:end] if extra is None else b"".join((raw[:end - 2], extra, b"\r\n"))  # type: ignore[index]
                else:
                    request_id = next(head_module.request_ids)  # head.new_request_id without its frame
                    headers.append((b"x-request-id", request_id))
                    if end:  # spliced in before the blank line (after a new trace context's lines, if any)
                        raw_head = b"".join((raw[:end - 2], extra or b"", b"x-request-id: ", request_id, b"\r\n\r\n"))  # type: ignore[index]
                if stops is NOTED:  # RequestHead.init says why not RequestHead(...)
                    head = _new(RequestHead)
                else:  # an inbound stage reads header values noted above (core/request.py HeaderPicks)
                    head = _new(PickedHead)
                    head.picked, head.picked_by = picked, self.shared.picks.names
                    head.authority = host if host_override is None else host_override
                # RequestHead.__init__ inline, every slot (one frame less per request; tests/proxy/test_head.py checks
                # that a listener's head sets each one as __init__ does). GET compared first: a dict lookup hashes
                # the freshly parsed method every request.
                head.method = "GET" if method == b"GET" else _METHODS.get(method) or method.decode("latin-1")
                head.host = host_s
                head.port = port
                head.path = path if target is url else target.decode("latin-1")
                head.headers = headers
                head.client = self.client
                head.set_cookie = None
                head.downstream = self.downstream
                head.auth = None
                head.details = ""
                head.edited = False
                head.trace = trace
                if peer is None:
                    head.peer = self.peer  # the caller told it once for the connection (peer_metadata.py)
                else:  # never passed on: read here (inbound: shared.peers), stripped either way
                    head.peer = None
                    headers, drop, raw_head = peer_metadata.on_request(self.shared.peers, head, peer, headers, drop,
                                                                       raw_head)
                    self.peer = head.peer
        pipeline = self.pipeline
        if pipeline and len(pipeline) >= self.shared.limits.max_pipelined:  # max_pipelined >= 1 (limits.py)
            # Read no further: answer what is queued, then close; the client retries the rest (RFC 9112 9.3.2).
            self._stop_reading()  # _advance closes once the queue is answered
            return
        ex = _new(Exchange)  # Exchange.init says why not Exchange(...)
        ex.init(self, head, method, target, headers, drop, has_body, chunked, http11,
                keep_alive and error is None and upgrade is None, expect, error)
        if upgrade is not None:
            ex.upgrade = upgrade
        if raw_head is not None:
            ex.raw_head = raw_head
        self.current = ex
        if error is None and self.active is None and not pipeline and not self.closing:
            # Nothing queued (the usual case): start it here, as _advance would (with _start inlined),
            # without the queue round trip.
            self.active = ex
            self.advancing = True
            try:
                ex.start()
            except Exception as exc:  # a bug of ours while routing or sending: 500, logged, closed
                self.stopping = True
                ex.fail(exc)
            finally:
                self.advancing = False
            if self.active is None:  # answered at once: what _advance does after its loop
                self._advance()
            return
        pipeline.append(ex)
        if error is not None:
            self._stop_reading()  # nothing after a request we cannot serve is answered
        if self.active is None:
            self._advance()
        else:
            self.gate.pause(PIPELINE)

    def on_chunk_header(self) -> None:  # a chunk-size line; the last one's trailers follow it (head_left: unused)
        self.trailing = self.reads
        self.head_left = self.max_head

    def on_chunk_complete(self) -> None:
        self.trailing = 0

    def on_body(self, body: bytes) -> None:
        self.trailing = 0
        if self.current is not None:
            self.current.feed_body(body)

    def on_message_complete(self) -> None:
        self.in_head = True  # the next request's head starts here
        self.head_left = self.max_head
        self.t_begin = 0.0
        self.done_read = self.reads
        ex = self.current
        if ex is not None:
            self.current = None
            if not ex.req_done:  # one without a body was complete when it began: feed_end would do nothing
                ex.feed_end()

