"""A client connection's lifecycle: made, read, written, paused, half-closed, closed (lingering after a
refusal), shut down. A plain base class of proxy/http/server.HttpProxyProtocol (no state of its own:
`__slots__ = ()`), kept apart so server.py reads as the request head becoming an Exchange; its bounds
are proxy/http/conn_guard.py, its pipeline proxy/http/server_pipeline.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httptools

from proxy.core.downstream import Downstream
from proxy.http.flow import PEER_FULL, PIPELINE, ReadGate
from proxy.http.head import Mode
from proxy.tls.peer import peer_principal

if TYPE_CHECKING:
    import asyncio

LINGER = 1.0  # seconds a refused connection is drained before it closes (Envoy's delayed_close_timeout)


class ConnectionLifecycle:
    __slots__ = ()

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.tls = transport.get_extra_info("sslcontext") is not None
        shared = self.shared
        cap = shared.limits.max_connections
        if cap and len(shared.connections) >= cap:
            self._refuse_connection(cap)
            return
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else ""
        if self.mode is Mode.INBOUND:  # the caller as authorization sees it, once per connection
            local = transport.get_extra_info("sockname")
            # destination.port / ports name the workload port (the app's), as Envoy sees the original
            # destination behind Istio's iptables redirect, not the sidecar's own listening port
            self.downstream = Downstream(peer_principal(transport), self.client,
                                         local[0] if isinstance(local, tuple) else "",
                                         shared.app_port or (local[1] if isinstance(local, tuple) else 0),
                                         self.sni)
        self.gate = ReadGate(self.transport)
        self.shared.connections.add(self)
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.tunnel is not None:
            self.tunnel.transport.close()  # after what is buffered for it has been sent
        shared = self.shared
        shared.connections.discard(self)
        shared.head_budget.release(self)
        if shared.drained is not None and not shared.connections:
            shared.drained.set()
        if self.keepalive_handle is not None:
            self.keepalive_handle.cancel()
            self.keepalive_handle = None
        if self.active is not None:
            self.active.client_gone()
            self.active = None
        self.pipeline.clear()
        self.current = None
        # The parser holds our callbacks (a reference cycle), and we hold the transport: left to the cyclic
        # collector, a closed TLS connection kept uvloop's 256 KiB read buffer for minutes (RSS of an mTLS
        # sidecar 53 -> 160 MB over 15k handshakes). Breaking the cycle frees it all now, by refcount.
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.broken:
            return  # refused, or lingering after an answer: what still comes is dropped
        self.raw = None
        if self.in_head:  # count the head's bytes before the parser buffers them
            head_left = self.head_left
            left = head_left - len(data)
            if left < 0:
                self._head_overflow(data)
                return
            self.head_left = left
            if head_left == self.max_head and not self.t_begin:
                # No byte of a head is in the parser yet (t_begin: a pipelined head may have begun in the
                # read that ended the previous request), so a head parsed now starts at data[0].
                self.raw = data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # a limit we raised, or a bug of ours
            self._callback_failed(exc)
        except httptools.HttpParserUpgrade as exc:  # CONNECT or a non-websocket Upgrade: rejected already
            ex = self.active or (self.pipeline[-1] if self.pipeline else None)
            if ex is not None and ex.upgrade is not None and not ex.resp_done:
                # websocket: bytes after the head wait for the upstream's 101; nothing more is parsed
                self.early = data[exc.args[0]:] if exc.args else b""
                self.broken = True
                self.gate.pause(PIPELINE)
            else:
                self._stop_reading()
        except httptools.HttpParserError as exc:
            self._malformed(exc)
        else:
            if self.in_head:
                if self.t_begin:  # a head split across reads
                    self._check_partial_head(data)
            elif self.trailing and self.trailing != self.reads:  # a read with no chunk data, after a chunk-size line
                self._count_trailers(data)

    def eof_received(self) -> bool | None:
        if self.closing:
            return None  # lingering after a refusal: the client has read our answer
        if self.tunnel is not None:
            return None  # either side closing ends the tunnel (connection_lost closes the upstream)
        if self.active is None and not self.pipeline:
            return None
        self.stopping = True  # half-closed after its requests: answer them, then close
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None and self.active.conn is not None:
            self.active.conn.gate.pause(PEER_FULL)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None and self.active.conn is not None:
            self.active.conn.gate.resume(PEER_FULL)

    # --- used by Exchange -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closing:
            self.ticks += 1
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        # ExchangeResponse.on_response_end has this inline for the end of every response: change both together
        if not self.closing:
            self.ticks += 1
            if self.tls:
                # A TLS transport (aiofastnet's, uvloop's) seals each item of writelines as a record of its own,
                # which both ends pay for (~8k instructions each): one record (docs/performance.md, "TLS writes")
                self.transport.write(b"".join(data))
            else:
                self.transport.writelines(data)  # plaintext: one writev, no copy of a large body

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            transport = self.transport
            if self.broken and self.tunnel is None and transport.can_write_eof():
                # We refused input the client may still be sending: closing now would reset the
                # connection and could destroy our answer in flight. Half-close and drain instead.
                transport.write_eof()
                transport.resume_reading()
                if self.keepalive_handle is not None:
                    self.keepalive_handle.cancel()
                self.keepalive_handle = self.loop.call_later(LINGER, transport.abort)
            else:
                transport.close()  # after what is buffered has been sent

    def shutdown(self) -> None:
        """Listener stopping: finish what is in flight, then close."""
        self.stopping = True
        if self.closing:
            self.transport.close()  # a lingering connection need not wait
        elif self.active is None and not self.pipeline:
            self.close()
