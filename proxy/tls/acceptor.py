"""An inbound listening socket that takes mutual TLS, plaintext, or both on one port (PeerAuthentication).

Istio's modes for a workload port (istio.io/latest/docs/reference/config/security/peer_authentication/):
- STRICT: mutual TLS only; a plaintext connection is closed before any byte of it is read by the app side.
- PERMISSIVE: both; Envoy's tls_inspector tells them apart by the first bytes. So do we: a TLS connection
  starts with a handshake record (content type 0x16), which no HTTP request or sane TCP protocol does.
- DISABLE: plaintext only; a TLS ClientHello reaches the HTTP parser as garbage and gets a 400.

How: the socket is accepted here (not by loop.create_server), and the first byte is read with MSG_PEEK, so
nothing is consumed; then the connection goes to the event loop's own transport, with the server-side TLS
context or without (`loop.connect_accepted_socket`: uvloop's C TLS transport, the handshake off the Python
path). The mode and the context are asked for per accepted connection, so a PeerAuthentication change or a
certificate rotation applies to new connections at once, without a restart, and open connections keep what
they began with (as Envoy's listeners drain their old filter chains).

Refusals (proxy/core/tls_refusal.py): a handshake this side refuses (STRICT without a client certificate, one
from another CA, below TLS 1.2) sends OpenSSL's alert to the client, as Envoy does, so `openssl s_client` says
`certificate required` (alert 116) or `unknown ca` (48) instead of a reset; the socket is then half-closed and
drained for at most `linger` seconds (LINGER, 1 s). A ClientHello while the workload has no certificate yet
gets a handshake_failure alert the same way. Plaintext into STRICT is closed with what it sent unread, so the
client sees a reset, as from Envoy (curl: "Connection reset by peer", exit 56, as Istio's mutual TLS
migration task shows): a plaintext client cannot read a TLS alert, and an HTTP answer would guess the
protocol of a port that may carry any TCP protocol.

The SNI of a TLS connection is read from its ClientHello as Envoy's tls_inspector reads it (peeked, so the
handshake still gets every byte; proxy/tls/client_hello.py), waiting for a hello split over several segments
(within `first_byte_timeout`); a hello over 64 KiB is closed, as Envoy's. The protocol gets it as its `sni`.

Bounded: at most `max_pending` accepted connections waiting for a first byte or a handshake, or lingering after
a refusal (one more closes the one waiting longest for its first bytes, else itself: so a client holding
`max_pending` silent connections cannot lock new clients out), each for at most `first_byte_timeout` seconds (Envoy's
listener_filters_timeout, 15 s, with continue_on_listener_filters_timeout false: close), `handshake_timeout`
for the TLS handshake and `linger` after a refusal.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

import structlog

from proxy.core.tls_refusal import HANDSHAKE_FAILURE, LINGER, Lingering, after_failure, alerting
from proxy.tls.bio import TlsLayer
from proxy.tls.client_hello import MAX_CLIENT_HELLO, server_name
from proxy.tls import transport as tls_transport
from proxy.tls.transport import accept_tls

FAILURE_LINES = 10  # info lines per FAILURE_WINDOW about failed handshakes; the rest at debug, counted
FAILURE_WINDOW = 10.0  # seconds
log = structlog.get_logger("proxy.tls")

STRICT, PERMISSIVE, DISABLE = "STRICT", "PERMISSIVE", "DISABLE"
TLS_HANDSHAKE = 0x16  # the TLS record content type a ClientHello arrives in (RFC 8446 5.1)
FIRST_BYTE_TIMEOUT = 15.0  # Envoy's listener_filters_timeout
HANDSHAKE_TIMEOUT = 10.0  # Envoy's transport_socket_connect_timeout is unset by default; asyncio's is 60 s
MAX_PENDING = 1024  # connections accepted and not yet handed over (the listen backlog's default here)
HELLO_PEEK = 16 * 1024  # bytes peeked for a ClientHello at first (Envoy's tls_inspector reads 16 KiB at first)


class AcceptStats:
    """Counters for the admin port: how connections were sorted and why some were closed."""

    __slots__ = ("tls", "plaintext", "plaintext_refused", "tls_refused", "handshake_failed", "timed_out",
                 "overflow", "hello_too_large")

    def __init__(self) -> None:
        self.tls = self.plaintext = self.plaintext_refused = self.tls_refused = 0
        self.handshake_failed = self.timed_out = self.overflow = self.hello_too_large = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class TlsAcceptor:
    """Accepts on `sock` (bound and listening) and hands each connection to `factory`'s protocol.

    `mode()`: STRICT, PERMISSIVE or DISABLE, asked per connection. `context()`: the server-side context
    (client certificates required and verified), or None while the workload has no certificate: then a TLS
    connection is closed (nothing can be served on it) and a plaintext one is served unless STRICT."""

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol], mode: Callable[[], str],
                 context: Callable[[], ssl.SSLContext | None], *, first_byte_timeout: float = FIRST_BYTE_TIMEOUT,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, max_pending: int = MAX_PENDING,
                 name: str = "inbound", layered: bool = False, linger: float = LINGER,
                 by_sni: bool = False) -> None:
        """`by_sni`: `context` takes the ClientHello's SNI ("" for none) and picks the context for it (a
        gateway's servers: proxy/gateway/); None closes the connection with a handshake_failure alert.
        `layered`: TLS runs in the protocol's own layer (proxy/tls/bio.py, which passes half-closes: the
        opaque-TCP listeners) instead of the loop's TLS transport. `linger`: seconds a refused TLS connection
        is drained after its alert."""
        self.sock = sock
        self.factory = factory
        self.mode = mode
        self.context = context
        self.first_byte_timeout = first_byte_timeout
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.name = name
        self.layered = layered
        self.linger = linger
        self.by_sni = by_sni
        self.stats = AcceptStats()
        self.loop = asyncio.get_running_loop()
        self._pending: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}  # fd -> waiting for a byte
        self._handing: set[asyncio.Task[Any]] = set()  # handshakes in progress
        self._layers = 0  # layered handshakes in progress, or lingering after a refusal
        self._lingering: set[Lingering] = set()  # refused, the alert sent, draining (at most `linger` s)
        self._open = False
        self._window_start, self._window_lines, self._suppressed = -FAILURE_WINDOW, 0, 0  # _failed's log budget

    @property
    def accepting(self) -> bool:
        """Started and not closed."""
        return self._open

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._handing) + self._layers + len(self._lingering)

    def start(self) -> None:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self._open = True

    def close(self) -> None:
        """Stop accepting; connections not yet handed over are closed (those handed over are the caller's)."""
        if not self._open:
            return
        self._open = False
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for fd, (conn, timer) in list(self._pending.items()):
            self._drop(fd, conn, timer)
        for task in list(self._handing):
            task.cancel()
        for lingering in list(self._lingering):
            lingering.close()

    def _on_readable(self) -> None:
        for _ in range(64):  # accept what is queued, a bounded number per wake-up
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and kin: the connection stays queued; say so, try on the next wake-up
                log.warning("accept failed", listener=self.name, error=str(exc))
                return
            if self.pending >= self.max_pending:
                self.stats.overflow += 1
                if not self._pending:  # all are in handshakes or lingering: the new one goes
                    conn.close()
                    continue
                # else the one that has waited longest for its first bytes goes: a client holding max_pending
                # silent or half-sent hellos would otherwise lock every new client out for first_byte_timeout
                oldest = next(iter(self._pending))
                self._drop(oldest, *self._pending[oldest])
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = conn.fileno()
            timer = self.loop.call_later(self.first_byte_timeout, self._first_byte_timeout, fd)
            self._pending[fd] = (conn, timer)
            self.loop.add_reader(fd, self._on_first_byte, fd)

    def _first_byte_timeout(self, fd: int) -> None:
        entry = self._pending.get(fd)
        if entry is not None:
            self.stats.timed_out += 1
            self._drop(fd, *entry)

    def _drop(self, fd: int, conn: socket.socket, timer: asyncio.TimerHandle) -> None:
        self._pending.pop(fd, None)
        timer.cancel()
        self.loop.remove_reader(fd)
        conn.close()

    def _on_first_byte(self, fd: int, wait: float = 0.0) -> None:
        """The first bytes are there (or, `wait` > 0, a retry for the rest of a ClientHello): sort the
        connection; a TLS one's SNI is read from its ClientHello first (proxy/tls/client_hello.py)."""
        entry = self._pending.get(fd)
        if entry is None:  # timed out or closed while a retry was scheduled
            return
        conn, timer = entry
        sni: str | None = ""
        need = 0
        try:
            first = conn.recv(HELLO_PEEK, socket.MSG_PEEK)  # one peek sorts the connection and reads its hello
            if first and first[0] == TLS_HANDSHAKE:
                sni, need = server_name(first)
                if sni is None and len(first) == HELLO_PEEK and need <= MAX_CLIENT_HELLO:
                    first = conn.recv(need, socket.MSG_PEEK)  # a long hello: what more is there already
                    sni, need = server_name(first)
        except (BlockingIOError, InterruptedError):
            return
        except ValueError:  # not a ClientHello: the handshake will say so
            sni, need = "", 0
        except OSError:
            first, sni = b"", ""
        if not first:  # closed (or reset) before sending anything
            self._drop(fd, conn, timer)
            return
        if sni is None:
            if need > MAX_CLIENT_HELLO:  # Envoy's tls_inspector closes these (client_hello_too_large)
                self.stats.hello_too_large += 1
                self._drop(fd, conn, timer)
                return
            # The rest of the hello is on its way. The peeked bytes keep the socket readable, so wait with a
            # timer (doubling, bounded by first_byte_timeout), not with the reader.
            self.loop.remove_reader(fd)
            wait = min(max(wait * 2, 0.002), 0.2)
            self.loop.call_later(wait, self._on_first_byte, fd, wait)
            return
        del self._pending[fd]
        timer.cancel()
        self.loop.remove_reader(fd)
        tls = first[0] == TLS_HANDSHAKE
        mode = self.mode()
        context = None
        if tls and mode != DISABLE:
            context = self.context(sni or "") if self.by_sni else self.context()  # type: ignore[call-arg]
            if context is None:
                self.stats.tls_refused += 1
                if self.by_sni:  # any client picks its SNI: not worth a line each (counted in tls_refused)
                    log.debug("TLS connection refused: no server with a certificate for its SNI",
                              listener=self.name, sni=(sni or "")[:253])
                else:
                    log.warning("TLS connection refused: this workload has no certificate yet", listener=self.name)
                self._linger(Lingering(self.loop, conn, HANDSHAKE_FAILURE, self.linger))
                return
            self.stats.tls += 1
        elif mode == STRICT:
            self.stats.plaintext_refused += 1
            log.debug("plaintext connection refused: mTLS mode STRICT", listener=self.name, peer=_peer(conn))
            conn.close()  # what it sent is unread: a reset, as Envoy's (see the module's docstring)
            return
        else:
            self.stats.plaintext += 1
        # by_sni: the SNI is told even to a connection not terminated here (a gateway's TLS passthrough)
        task = asyncio.ensure_future(self._hand_over(conn, context, sni if context is not None or self.by_sni
                                                     else ""))
        self._handing.add(task)
        task.add_done_callback(self._handing.discard)

    async def _hand_over(self, conn: socket.socket, context: ssl.SSLContext | None, sni: str = "") -> None:
        keep: socket.socket | None = None
        peer = _peer(conn) if context is not None else ""  # for the log: aiofastnet closes the socket on failure
        factory = self.factory
        if sni:  # the protocol learns the client's SNI before connection_made (its `sni`, "" by default)
            def factory() -> asyncio.Protocol:
                proto = self.factory()
                proto.sni = sni  # type: ignore[attr-defined]
                return proto
        try:
            if context is None:
                await self.loop.connect_accepted_socket(factory, conn)
            elif self.layered:
                layer = TlsLayer(context, True, None, factory(), self.handshake_timeout,
                                 lambda exc: self._failed(peer, exc), linger=self.linger)
                self._layers += 1  # counts as pending (max_pending) until its handshake is done or, refused, it closed
                layer.on_settled = self._layer_done
                try:
                    await self.loop.connect_accepted_socket(lambda: layer, conn)
                except BaseException:
                    layer.settle()  # never started: not pending any more
                    raise
            else:
                if tls_transport.current() == "aiofastnet":
                    # aiofastnet drops the alert OpenSSL wrote when a handshake fails: the peer sees the
                    # connection closed, the reason is logged (_failed); `--tls-transport uvloop` sends it
                    await accept_tls(self.loop, factory, conn, context, self.handshake_timeout)
                    return
                # Our own descriptor of the socket: the loop's TLS transport closes its own when the handshake
                # fails, before the alert OpenSSL wrote is sent; this one sends it (proxy/core/tls_refusal.py).
                keep = conn.dup()
                await self.loop.connect_accepted_socket(factory, conn, ssl=alerting(context),
                                                        ssl_handshake_timeout=self.handshake_timeout)
                keep.close()
        except asyncio.CancelledError:
            conn.close()
            if keep is not None:
                keep.close()
            raise
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            # a client without a certificate, one from another CA, a protocol below TLS 1.2, a peer gone
            self._failed(peer or _peer(conn), exc)
            conn.close()  # a no-op once the loop's transport has closed it
            if keep is not None:
                self._linger(after_failure(self.loop, keep, exc, self.linger))

    def _linger(self, lingering: Lingering | None) -> None:
        if lingering is not None and lingering.on_closed is None and lingering.fd >= 0:
            self._lingering.add(lingering)
            lingering.on_closed = lambda: self._lingering.discard(lingering)

    def _layer_done(self) -> None:
        self._layers -= 1

    def _failed(self, peer: str, exc: BaseException) -> None:
        self.stats.handshake_failed += 1
        # Any client can fail a handshake at will: at most FAILURE_LINES info lines per FAILURE_WINDOW, the rest
        # counted into the next line (and always in /server_info's handshake_failed); Envoy logs them at debug.
        now = self.loop.time()
        if now - self._window_start >= FAILURE_WINDOW:
            self._window_start, self._window_lines = now, 0
        if self._window_lines >= FAILURE_LINES:
            self._suppressed += 1
            log.debug("TLS handshake failed", listener=self.name, peer=peer, error=str(exc)[:200])
            return
        self._window_lines += 1
        suppressed, self._suppressed = self._suppressed, 0
        log.info("TLS handshake failed", listener=self.name, peer=peer, error=str(exc)[:200],
                 **({"not_logged_before": suppressed} if suppressed else {}))


def _peer(conn: socket.socket) -> str:
    try:
        host, port = conn.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"
