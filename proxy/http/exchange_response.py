"""The exchange's response path: the upstream's head, body and end (or its switch to a websocket tunnel)
written back to the client. A plain base class of proxy/http/exchange.Exchange (no state of its own:
`__slots__ = ()`); the upstream connection (proxy/http/upstream.py) calls these.
"""

from __future__ import annotations

from proxy.http import local_policy
from proxy.http.flow import BUFFERING, PEER_FULL, PIPELINE
from proxy.http.head import COLON_SP, CONNECTION_CLOSE, CRLF, TE_CHUNKED, status_line, write_response_head
from proxy.http.upstream import STREAM

LAST_CHUNK = b"0\r\n\r\n"


class ResponseSide:
    __slots__ = ()

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
        if self.proto.shared.on_complete is not None:  # the access log's upstream service time (Envoy's)
            self.upstream_at = self.proto.loop.time()
        proto = self.proto
        close = not self.keep_alive or proto.stopping
        if framing == STREAM:
            if self.http11:
                self.stream_chunked = True
            else:  # an HTTP/1.0 client cannot read chunked: the end of the body is our close
                close = True
        self.close_after = close
        write_response_head(self.out, status, reason, headers, drop, self.stream_chunked, close)

    def on_raw_response_head(self, status: int, parts: list[bytes], framing: int) -> bool:
        """on_response_head for a head forwarded as received (proxy/http/response_head.scan): `parts` is it
        without hop-by-hop lines, up to its final CRLF; what we add goes before that CRLF, as
        write_response_head adds it. False (having done nothing) when the parsed headers are needed."""
        policy = self.policy
        head = self.head
        if (policy is not None and policy.edits_response) or (head is not None and head.set_cookie is not None):
            return False
        target = self.upstream
        if target is not None and target.outlier is not None:
            target.outlier.report(target.endpoint, status)
        if policy is not None and status >= policy.retry_from and self._control().on_response(status):
            return True
        self.status = status
        if self.proto.shared.on_complete is not None:
            self.upstream_at = self.proto.loop.time()
        close = not self.keep_alive or self.proto.stopping
        if framing == STREAM:
            if self.http11:
                self.stream_chunked = True
            else:
                close = True
        self.close_after = close
        out = self.out
        out += parts
        if self.stream_chunked:
            out.append(TE_CHUNKED)
        if close:
            out.append(CONNECTION_CLOSE)
        out.append(CRLF)
        return True

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

    def on_response_end(self, now: float = 0.0) -> None:
        """`now`: the loop time the response ended, if the caller read it (0.0: read here when needed)."""
        if self.resp_done:
            return
        self.conn = None
        # ExchangeEnd._finish, inline (one call less on every response; change both together): the response is
        # settled, the timers stop and the endpoint's in-flight slot goes back
        self.resp_done = True
        target = self.upstream
        if target is not None and (target.held or target.slot):  # Target.release, called only when it has work
            target.release()
        if self.ctl is not None:
            self.ctl.finish()
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        out = self.out
        if self.stream_chunked:
            out.append(LAST_CHUNK)
        proto = self.proto
        if out:  # flush(), inline: one call less on every response
            self.head_sent = True
            if not proto.closing:  # and the connection's writelines (server_lifecycle.py; change both together)
                proto.ticks += 1
                if proto.tls:  # one TLS record, not one per item
                    proto.transport.write(b"".join(out))
                else:
                    proto.transport.writelines(out)
            out.clear()
        if proto.gate.reasons & PEER_FULL:
            proto.gate.resume(PEER_FULL)
        if not now:
            now = proto.loop.time()
        self._log(now)  # telemetry (proxy/http/telemetry.py): metrics, the access log, a sampled request's span
        if (self.req_done or self.close_after) and not self.released:  # _release, inline
            self.released = True
            proto.exchange_done(self, now)

    def flush(self) -> None:
        out = self.out
        if out:
            self.head_sent = True
            self.proto.writelines(out)
            out.clear()
