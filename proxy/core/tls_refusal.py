"""A refused TLS handshake tells the peer why: the alert OpenSSL wrote reaches it, then the connection is
half-closed and drained for at most LINGER seconds before it closes (so no reset overtakes the alert).

Why this module exists: the loop's TLS transports (uvloop's and asyncio's SSLProtocol) abort the socket as soon
as `do_handshake` raises, without sending what OpenSSL left in the outgoing BIO, which is exactly the alert
(`certificate_required` (116) for a TLS 1.3 client without a certificate, `unknown_ca` (48) for one from another
CA, ...). The peer then sees a reset or an EOF where Envoy's peers see the alert, and `openssl s_client` or curl
cannot say why. Neither loop can be told otherwise, so:

    alerting(context) -> context     sets `context.sslobject_class` to AlertingObject, whose failed handshake
                                     puts the alert on the exception (nothing else changes: no per-record cost,
                                     read and write are the stdlib's)
    take_alert(exc) -> bytes         that alert (b"" for other exceptions)
    own_descriptor(transport)        a second descriptor of the transport's socket, taken before the handshake:
                                     when the loop's transport gives up and closes its own, the socket stays open
    Lingering(loop, sock, alert, linger, on_closed)   writes `alert` on that descriptor, half-closes, drops what
                                     still comes, closes at the peer's EOF or after `linger` s
    after_failure(loop, keep, exc, linger)       Lingering with the alert `exc` left, or `keep` closed
    close_refused(transport)         a TLS connection refused after its handshake (another workload's SPIFFE ID):
                                     close_notify, then aborted after LINGER s if the peer does not answer it
    await connect_tls(...)           loop.create_connection(ssl=...) whose failed handshake sends its alert
                                     (the client side; proxy/tls/acceptor.py does the server side)

Bound: a peer that never reads nor closes holds the socket at most `linger` seconds (LINGER, 1 s, as the
HTTP server's refusals: Envoy's delayed_close_timeout). A handshake timeout or a peer gone leaves no alert:
the socket is closed at once. In proxy.core (stdlib only) because every layer that makes TLS connections
uses it: proxy.tls (acceptor, bio), proxy.http (the pool) and proxy.outbound (the mirror).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

LINGER = 1.0  # seconds a refused connection is drained after its alert (Envoy's delayed_close_timeout)
_P = TypeVar("_P", bound=asyncio.BaseProtocol)

# A fatal handshake_failure (40) alert in a plaintext record, as a server sends before it has keys: for a
# ClientHello this workload cannot answer (no certificate yet; OpenSSL says the same without one).
HANDSHAKE_FAILURE = bytes((0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40))


class AlertingObject(ssl.SSLObject):
    """An SSLObject whose failed handshake takes what OpenSSL wrote for the peer (the alert) out of the outgoing
    BIO onto the exception (`tls_alert`), before the loop's transport, closing, reads and drops it."""

    _outgoing: ssl.MemoryBIO

    @classmethod
    def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any, **kwargs: Any) -> Any:
        made = super()._create(incoming, outgoing, *args, **kwargs)  # type: ignore[misc]
        made._outgoing = outgoing
        return made

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            exc.tls_alert = self._outgoing.read()  # type: ignore[attr-defined]
            raise


def alerting(context: ssl.SSLContext) -> ssl.SSLContext:
    """`context`, its handshakes made by AlertingObject from now on (idempotent; contexts are shared)."""
    if context.sslobject_class is not AlertingObject:
        context.sslobject_class = AlertingObject
    return context


def take_alert(exc: BaseException) -> bytes:
    alert = getattr(exc, "tls_alert", b"")
    return alert if isinstance(alert, bytes) else b""


def own_descriptor(transport: asyncio.BaseTransport) -> socket.socket | None:
    """A duplicate of the transport's socket (None when it has none)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
    dup.setblocking(False)
    return dup


class Lingering:
    """A refused socket (ours): `alert` sent, our side half-closed (FIN after the alert), what the peer still
    sends read and dropped; closed at the peer's EOF (nothing unread: a FIN, not a reset) or after `linger`
    seconds. `on_closed` is called once, when it is closed."""

    __slots__ = ("loop", "sock", "fd", "timer", "on_closed")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, alert: bytes, linger: float = LINGER,
                 on_closed: Callable[[], None] | None = None) -> None:
        self.loop, self.sock, self.on_closed = loop, sock, on_closed
        self.fd = -1
        self.timer: asyncio.TimerHandle | None = None
        try:
            sock.send(alert)  # a few dozen bytes into an empty send buffer: the handshake's flight was read
            sock.shutdown(socket.SHUT_WR)
            self.fd = sock.fileno()
            loop.add_reader(self.fd, self._readable)
        except OSError:  # the peer is gone already (or its window is shut): nothing more to tell it
            self.close()
            return
        self.timer = loop.call_later(linger, self.close)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            self.fd = -1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.sock.close()
        if self.on_closed is not None:
            self.on_closed, done = None, self.on_closed
            done()


def after_failure(loop: asyncio.AbstractEventLoop, keep: socket.socket, exc: BaseException, linger: float = LINGER,
                  on_closed: Callable[[], None] | None = None) -> Lingering | None:
    """`keep` (our descriptor of a connection whose handshake failed with `exc`): lingering with the alert
    `exc` left, or closed at once when it left none (then `on_closed` is not called)."""
    alert = take_alert(exc)
    if not alert:
        keep.close()
        return None
    return Lingering(loop, keep, alert, linger, on_closed)


async def connect_tls(loop: asyncio.AbstractEventLoop, factory: Callable[[], _P], host: str, port: int,
                      context: ssl.SSLContext, server_hostname: str | None, handshake_timeout: float | None = None,
                      linger: float = LINGER) -> tuple[asyncio.Transport, _P]:
    """loop.create_connection(factory, host, port, ssl=context) (client side; `server_hostname` None sends
    `host`, as the loop does), made as a TCP connection and then start_tls, so that a handshake our side
    refuses (a chain that does not verify: `unknown_ca`, `bad_certificate`, ...) sends its alert to the server.
    Raises what create_connection raises."""
    plain, _ = await loop.create_connection(asyncio.Protocol, host, port)
    try:
        keep = own_descriptor(plain)
    except OSError:
        plain.abort()
        raise
    app = factory()
    try:
        transport = await loop.start_tls(plain, app, alerting(context), server_hostname=server_hostname or host,
                                         ssl_handshake_timeout=handshake_timeout)
    except BaseException as exc:
        plain.abort()  # a no-op once the failed handshake closed it
        if keep is not None:
            after_failure(loop, keep, exc, linger)
        raise
    if keep is not None:
        keep.close()
    if transport is None:  # the connection was closed under the handshake
        raise ConnectionResetError("connection closed during the TLS handshake")
    app.connection_made(transport)
    return transport, app


def close_refused(transport: asyncio.BaseTransport, linger: float = LINGER) -> None:
    """A TLS connection whose handshake succeeded but whose peer we refuse (its identity is checked after the
    handshake: Python's ssl has no verify callback, so no alert can name the reason). Closed with close_notify,
    as a TLS close, not a reset; aborted after `linger` s if the peer does not answer it (the loop would wait
    its ssl_shutdown_timeout, 30 s)."""
    transport.close()
    asyncio.get_running_loop().call_later(linger, transport.abort)
