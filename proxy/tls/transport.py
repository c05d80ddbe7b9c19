"""Which asyncio transport carries the sidecar's TLS connections: uvloop's SSL transport, or aio-libs'
aiofastnet (C/Cython TLS transports over the same uvloop event loop, reading and writing OpenSSL's buffers
directly instead of through two memory BIOs and a 256 KiB bytes object per read).

    configure("aiofastnet" | "uvloop")       once, at start-up (proxy/main.py, --tls-transport; default aiofastnet)
    await open_tls(loop, factory, host, port, context, server_hostname, handshake_timeout) -> (transport, protocol)
    await accept_tls(loop, factory, sock, context, handshake_timeout) -> (transport, protocol)

Both give a transport whose get_extra_info("peercert") is the peer's decoded certificate and whose
"ssl_object" answers version() and cipher(), which is all the sidecar reads (proxy/identity/tls.py,
proxy/tls/peer.py). Plaintext connections stay on uvloop's own TCP transport either way: aiofastnet's plain
transport is slower there. Measured in docs/performance.md ("TLS levers").

A refused handshake: on uvloop's transport the peer reads the alert OpenSSL wrote (proxy/core/tls_refusal.py
keeps it; the acceptor sends it for the server side, `connect_tls` for the client side); aiofastnet drops it
with the connection, so its peer sees the connection closed, and the reason is only in our log.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

from proxy.core.tls_refusal import close_refused, connect_tls

TRANSPORTS = ("aiofastnet", "uvloop")
DEFAULT = "aiofastnet"

_aiofastnet: Any = None  # the module while aiofastnet is chosen


def _default() -> None:
    configure(DEFAULT)


def configure(name: str) -> None:
    """Choose the TLS transport for every connection opened or accepted after this call. ValueError for a name
    outside TRANSPORTS; ImportError when aiofastnet is chosen and not installed."""
    global _aiofastnet
    if name not in TRANSPORTS:
        raise ValueError(f"unknown TLS transport {name!r}: one of {', '.join(TRANSPORTS)}")
    if name == "aiofastnet":
        import aiofastnet

        _aiofastnet = aiofastnet
    else:
        _aiofastnet = None


def current() -> str:
    return "aiofastnet" if _aiofastnet is not None else "uvloop"


async def open_tls(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol], host: str,
                   port: int, context: ssl.SSLContext, server_hostname: str | None,
                   handshake_timeout: float) -> tuple[asyncio.BaseTransport, Any]:
    """loop.create_connection(..., ssl=context) on the chosen transport: (transport, protocol) once the
    handshake is done; OSError, ssl.SSLError or TimeoutError as create_connection raises them."""
    if _aiofastnet is not None:
        return await _aiofastnet.create_connection(loop, factory, host, port, ssl=context,
                                                   server_hostname=server_hostname,
                                                   ssl_handshake_timeout=handshake_timeout)
    # uvloop's transport, made as a TCP connection and then start_tls so that a chain we refuse sends its alert
    return await connect_tls(loop, factory, host, port, context, server_hostname, handshake_timeout)


async def accept_tls(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol],
                     sock: socket.socket, context: ssl.SSLContext,
                     handshake_timeout: float) -> tuple[asyncio.BaseTransport, Any]:
    """loop.connect_accepted_socket(..., ssl=context) on the chosen transport (the server side of the
    handshake); raises as connect_accepted_socket does."""
    if _aiofastnet is not None:
        return await _aiofastnet.connect_accepted_socket(loop, factory, sock, ssl=context,
                                                         ssl_handshake_timeout=handshake_timeout)
    return await loop.connect_accepted_socket(factory, sock, ssl=context, ssl_handshake_timeout=handshake_timeout)


async def connect_checked(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol], address: str,
                          port: int, tls: Any, timeout: float) -> tuple[asyncio.BaseTransport, Any]:
    """open_tls with `tls`'s context and SNI, then `tls.check` on the peer (a TlsOrigination's SPIFFE ID, an
    ExternalTls's subjectAltNames): the transport is aborted and ssl.SSLError raised when the peer is not
    the one expected. OSError when this workload has no certificate yet."""
    context = tls.context()
    if context is None:
        raise OSError("this workload has no certificate yet for mutual TLS")
    transport, protocol = await open_tls(loop, factory, address, port, context, tls.sni or None, timeout)
    try:
        tls.check(transport.get_extra_info("peercert"), f"{address}:{port}")
    except ssl.SSLError:
        close_refused(transport)  # another identity: close_notify, aborted after LINGER (proxy/core/tls_refusal.py)
        raise
    return transport, protocol


_default()  # what tests and embedders get without a configure() call
