"""A bound, listening socket for a TlsAcceptor (proxy/tls/acceptor.py), which accepts on it itself.

    listening_socket(host, port, backlog) -> socket.socket    OSError as loop.create_server raises it
"""

from __future__ import annotations

import socket


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """Bound to the first address `host` resolves to (AI_PASSIVE: "" or 0.0.0.0 is every IPv4 address), with
    SO_REUSEADDR as loop.create_server(reuse_address=True) sets it, listening, non-blocking."""
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
