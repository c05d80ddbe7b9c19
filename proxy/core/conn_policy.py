"""A cluster's settings for its upstream connections (DestinationRule connectionPool), as the transport
applies them, and the pool key they give. Neutral: the circuit breaker compiles it, the transport reads it.
"""

from __future__ import annotations

import socket

Key = tuple[str | int, ...]  # (address, port[, cluster][, "mtls", identity, sni])


class ConnPolicy:
    """A cluster's settings for its upstream connections (DestinationRule connectionPool)."""

    __slots__ = ("cluster", "max_requests", "idle_timeout", "max_duration", "keepalive")

    def __init__(self, cluster: str, max_requests: int = 0, idle_timeout: float = 0.0, max_duration: float = 0.0,
                 keepalive: tuple[int, int, int] | None = None) -> None:
        self.cluster = cluster
        self.max_requests = max_requests  # maxRequestsPerConnection; 0: unlimited, 1: no keep-alive
        self.idle_timeout = idle_timeout  # seconds; 0: the pool's
        self.max_duration = max_duration  # seconds since connect; 0: none
        self.keepalive = keepalive  # (idle seconds, interval seconds, probes), 0: the OS's; None: no SO_KEEPALIVE

    def key(self, address: str, port: int) -> Key:
        return (address, port, self.cluster)


def set_keepalive(sock: socket.socket | object, idle: int, interval: int, probes: int) -> None:
    """SO_KEEPALIVE, and the times and count that are set (0 leaves the OS's value)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # type: ignore[union-attr]
    for option, value in ((getattr(socket, "TCP_KEEPIDLE", None), idle),
                          (getattr(socket, "TCP_KEEPINTVL", None), interval),
                          (getattr(socket, "TCP_KEEPCNT", None), probes)):
        if option is not None and value:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)  # type: ignore[union-attr]
