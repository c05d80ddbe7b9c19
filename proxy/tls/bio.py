"""TLS over a plain transport with memory BIOs, for the opaque-TCP relays: it passes half-closes, which the loop's
own TLS transports cannot (asyncio's and uvloop's have no write_eof, and a close_notify they receive ends the
whole connection).

    TlsLayer(context, server_side, server_hostname, app, handshake_timeout, on_failure)   an asyncio.Protocol
        for the plain connection; `app` (the relay's side) gets connection_made(TlsTransport) once the handshake
        is done, then data_received / eof_received / connection_lost as from any transport.
    TlsLayer.handshake: a Future set when the handshake is done (or failed)
    TlsLayer.on_settled: called once, when the handshake is done or, failed, the connection is closed

A failed handshake sends the alert OpenSSL wrote (the server's `certificate_required`, `unknown_ca`, ... or the
client's `unknown_ca` for a server it refuses), half-closes and drains the connection for at most `linger`
seconds, as proxy/core/tls_refusal.py does for the loop's own TLS transports; no reset overtakes the alert.

A half-close is TLS's own: `write_eof` sends close_notify and keeps reading (TLS 1.3 lets either side close its
write side alone, RFC 8446 6.1); a close_notify received is the peer's EOF, and writing goes on. Used only where a
relay needs it: HTTP keeps the loop's C transports (proxy/tls/acceptor.py, proxy/http/upstream_pool.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from proxy.core.tls_refusal import LINGER, take_alert

READ_CHUNK = 256 * 1024  # plaintext taken from the TLS layer per read call


class TlsTransport(asyncio.Transport):
    """What the app protocol writes to: encrypts into the plain transport below."""

    def __init__(self, layer: TlsLayer) -> None:
        super().__init__()
        self._layer = layer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer.send(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self._layer.send(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._layer.send_eof()

    def close(self) -> None:
        self._layer.close()

    def abort(self) -> None:
        self._layer.abort()

    def is_closing(self) -> bool:
        return self._layer.closing

    def pause_reading(self) -> None:
        self._layer.plain.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        self._layer.plain.resume_reading()  # type: ignore[union-attr]

    def get_write_buffer_size(self) -> int:
        return self._layer.plain.get_write_buffer_size()  # type: ignore[union-attr]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._layer.sslobj
        if name == "peercert":
            return self._layer.peercert()
        return self._layer.plain.get_extra_info(name, default)  # type: ignore[union-attr]


class TlsLayer(asyncio.Protocol):
    def __init__(self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None,
                 app: asyncio.Protocol, handshake_timeout: float = 10.0,
                 on_failure: Callable[[BaseException], None] | None = None, *, linger: float = LINGER) -> None:
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.app = app
        self.handshake_timeout = handshake_timeout
        self.on_failure = on_failure
        self.linger = linger
        self.on_settled: Callable[[], None] | None = None
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sslobj: ssl.SSLObject | None = None
        self.plain: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.established = False
        self.eof_sent = self.eof_seen = self.closing = False
        self._timer: asyncio.TimerHandle | None = None

    # the plain connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.plain = transport  # type: ignore[assignment]
        self.sslobj = self.context.wrap_bio(self.incoming, self.outgoing, server_side=self.server_side,
                                            server_hostname=self.server_hostname)
        self._timer = asyncio.get_running_loop().call_later(self.handshake_timeout, self._timed_out)
        self._shake()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # refused, lingering: what still comes is dropped
        self.incoming.write(data)
        if self.established:
            self._read()
        else:
            self._shake()

    def eof_received(self) -> bool:
        if self.closing and not self.established:
            return False  # refused, and the peer has read our alert and closed: close (a FIN, nothing unread)
        if not self.established:
            self._fail(ConnectionResetError("connection closed during the TLS handshake"))
            return False
        self.incoming.write_eof()
        self._read()
        self._peer_eof()  # a TCP EOF without close_notify (a truncation): still the peer's EOF
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        if not self.established:
            self._fail(exc or ConnectionResetError("connection closed during the TLS handshake"))
            self.settle()
            return
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.established:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.established:
            self.app.resume_writing()

    # TLS

    def _shake(self) -> None:
        assert self.sslobj is not None
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc, alert=take_alert(exc) + self.outgoing.read())  # AlertingObject took it, or it is here
            return
        self._flush()
        self.established = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.handshake.done():
            self.handshake.set_result(None)
        self.settle()
        self.app.connection_made(TlsTransport(self))
        if self.incoming.pending:
            self._read()

    def _read(self) -> None:
        assert self.sslobj is not None
        while not self.eof_seen and not self.closing:
            try:
                chunk = self.sslobj.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or a TCP EOF without it
                self._peer_eof()
                break
            except (ssl.SSLError, OSError) as exc:
                self.abort(exc)
                break
            if not chunk:
                self._peer_eof()
                break
            self.app.data_received(chunk)
        self._flush()  # a key update or session ticket may want an answer

    def _peer_eof(self) -> None:
        if self.eof_seen:
            return
        self.eof_seen = True
        if not self.app.eof_received():
            self.close()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data and self.plain is not None and not self.plain.is_closing():
            self.plain.write(data)

    def send(self, data: bytes) -> None:
        if self.closing or self.eof_sent or self.sslobj is None:
            return
        try:
            self.sslobj.write(data)
        except (ssl.SSLError, OSError) as exc:
            self.abort(exc)
            return
        self._flush()

    def send_eof(self) -> None:
        """close_notify: our write side is done; reading goes on."""
        if self.eof_sent or self.closing or self.sslobj is None:
            return
        self.eof_sent = True
        try:
            self.sslobj.unwrap()
        except ssl.SSLWantReadError:
            pass  # sent; the peer's close_notify may come later (or never: we do not wait for it)
        except (ssl.SSLError, OSError):
            pass  # a TLS state that cannot say goodbye: the relay closes the socket anyway, nothing to tell
        self._flush()

    def close(self) -> None:
        if self.closing:
            return
        self.send_eof()
        self.closing = True
        if self.plain is not None:
            self.plain.close()

    def peercert(self) -> dict[str, Any] | None:
        """The peer's decoded certificate once the handshake is done (ssl.SSLObject.getpeercert()), else None."""
        return self.sslobj.getpeercert() if self.sslobj is not None and self.established else None

    def abort(self, exc: BaseException | None = None) -> None:
        self.closing = True
        if self.plain is not None:
            self.plain.abort()

    def _timed_out(self) -> None:
        self._timer = None
        if not self.established:
            self._fail(TimeoutError(f"TLS handshake not done within {self.handshake_timeout:g}s"))

    def settle(self) -> None:
        if self.on_settled is not None:
            self.on_settled, settled = None, self.on_settled
            settled()

    def _fail(self, exc: BaseException, alert: bytes = b"") -> None:
        if self.handshake.done():
            return
        self.handshake.set_exception(exc)
        self.handshake.exception()  # retrieved: whoever awaits it (or nobody) decides
        if self.on_failure is not None:
            self.on_failure(exc)
        plain = self.plain
        if not alert or plain is None or plain.is_closing():
            self.abort()
            return
        self.closing = True  # lingering: the alert, our FIN after it, the peer's bytes dropped until its EOF
        if self._timer is not None:
            self._timer.cancel()
        plain.write(alert)
        if plain.can_write_eof():
            plain.write_eof()
        self._timer = asyncio.get_running_loop().call_later(self.linger, plain.abort)
