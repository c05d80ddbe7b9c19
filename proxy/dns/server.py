"""The sidecar's DNS server: UDP and TCP on one loopback address and port (`proxy run --dns-port`).

    DnsServer(host, port, lookup).start() / stop()

Each query is answered in the callback that received it (proxy/dns/answer.py), so nothing queues in the
sidecar: the kernel's socket buffer is the only queue, and what overflows it is dropped by the kernel (the
client asks again). Bounds, each a constant documented in docs/dns.md:
- UDP: a response is dropped, not buffered, while UDP_WRITE_BUFFER_MAX bytes already wait to be sent;
- TCP (RFC 7766, for answers cut to fit UDP): at most MAX_TCP_CONNECTIONS open; at the cap a new connection
  closes the one least recently active (RFC 7766 6.2.2 lets a server close idle ones), so a process holding
  the cap with idle connections cannot lock others out of DNS over TCP (a tester did); a
  length prefix above answer.MAX_QUERY_BYTES, or a malformed query, closes the connection; a connection
  with no complete query for TCP_IDLE_TIMEOUT seconds is closed; one whose reader lets TCP_WRITE_BUFFER_MAX
  bytes of answers pile up is cut.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from proxy.dns.answer import MAX_QUERY_BYTES, Lookup, respond
from runtime.log import get_logger

log = get_logger("proxy.dns")

MAX_TCP_CONNECTIONS = 64  # open DNS-over-TCP connections (clients use one for a truncated answer, then close)
TCP_IDLE_TIMEOUT = 10.0  # seconds without a complete query (CoreDNS's and Unbound's order: RFC 7766 6.2.3)
TCP_WRITE_BUFFER_MAX = 64 * 1024  # answers waiting for a client that does not read
UDP_WRITE_BUFFER_MAX = 256 * 1024  # responses waiting in the transport when the socket cannot take more
TCP_MAX_ANSWER = 65535  # a TCP message's length prefix is 16 bits


class DnsServer:
    """Answers on `host`:`port` (UDP and TCP; port 0: a free one, the same for both) with `lookup`."""

    def __init__(self, host: str, port: int, lookup: Lookup) -> None:
        self.host, self.port = host, port
        self.lookup = lookup
        # open TCP connections, least recently active first (a query answered moves its connection to the end)
        self.tcp_connections: dict[_TcpQueries, None] = {}
        self.refused = 0  # TCP connections closed to make room: MAX_TCP_CONNECTIONS were open
        self.dropped = 0  # UDP responses dropped: the transport's buffer was full
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind UDP, then TCP on the same port; OSError (the port is taken) with nothing left bound. With port 0
        the pair is tried up to 8 times (the free UDP port may be taken over TCP)."""
        for attempt in range(8 if self.port == 0 else 1):
            try:
                await self._bind(self.port)
                return
            except OSError:
                if self.port != 0 or attempt == 7:
                    raise

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        udp, _ = await loop.create_datagram_endpoint(lambda: _UdpQueries(self), sock=sock)
        bound = sock.getsockname()[1]
        try:
            self._tcp = await loop.create_server(lambda: _TcpQueries(self), self.host, bound, reuse_address=True)
        except OSError:
            udp.close()
            await asyncio.sleep(0)  # the transport closes its socket a loop turn later: free the port now
            raise
        self._udp, self.port = udp, bound  # type: ignore[assignment]

    async def stop(self) -> None:
        udp, self._udp = self._udp, None
        if udp is not None:
            udp.close()
        tcp, self._tcp = self._tcp, None
        if tcp is not None:
            tcp.close()
            for conn in list(self.tcp_connections):
                conn.close()
            await tcp.wait_closed()


class _UdpQueries(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = respond(data, self.server.lookup)
        transport = self.transport
        if reply is None or transport is None:
            return
        if transport.get_write_buffer_size() >= UDP_WRITE_BUFFER_MAX:
            self.server.dropped += 1
            return
        transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable from a client gone
        log.debug("dns udp error", error=str(exc))


class _TcpQueries(asyncio.Protocol):
    """One DNS-over-TCP connection: 2-byte length prefixed queries, answered in order."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.tcp_connections) >= MAX_TCP_CONNECTIONS:
            server.refused += 1
            oldest = next(iter(server.tcp_connections))
            server.tcp_connections.pop(oldest)
            oldest.close()
        server.tcp_connections[self] = None
        self.idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, self.close)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            size = int.from_bytes(buffer[:2], "big")
            if size > MAX_QUERY_BYTES:
                log.debug("dns tcp connection closed: query too long", bytes=size, max_bytes=MAX_QUERY_BYTES)
                self.close()
                return
            if len(buffer) < 2 + size:
                return
            query = bytes(buffer[2:2 + size])
            del buffer[:2 + size]
            reply = respond(query, self.server.lookup, TCP_MAX_ANSWER)
            transport = self.transport
            if reply is None or transport is None or transport.is_closing():
                self.close()
                return
            transport.write(len(reply).to_bytes(2, "big") + reply)
            if transport.get_write_buffer_size() > TCP_WRITE_BUFFER_MAX:
                self.close()
                return
            if self.idle is not None:
                self.idle.cancel()
            self.idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, self.close)
            connections = self.server.tcp_connections
            if connections.pop(self, 0) is None:  # still held: now the most recently active
                connections[self] = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.tcp_connections.pop(self, None)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
