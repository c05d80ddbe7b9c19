"""What the outbound path hands between stages: the parsed request head and the chosen endpoint."""

from __future__ import annotations

from typing import Protocol


class RequestHead:
    """The parts of a downstream request that routing looks at.

    `host` is the host as the client wrote it (absolute-form URL or Host header), without the port;
    `port` is the explicit port or 80; `path` is origin-form (`/x?y=1`). Header names are lower-case.
    """

    __slots__ = ("method", "host", "port", "path", "headers")

    def __init__(self, method: str, host: str, port: int, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.host = host
        self.port = port
        self.path = path
        self.headers = headers

    def header(self, name: bytes) -> bytes | None:
        """First value of a lower-case header name, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Target:
    """One chosen endpoint: where to connect, and the cluster it was picked from (for stats/logs)."""

    __slots__ = ("address", "port", "cluster")

    def __init__(self, address: str, port: int, cluster: str) -> None:
        self.address = address
        self.port = port
        self.cluster = cluster


class Router(Protocol):
    """Logical -> concrete -> endpoint: picks where a request goes, from the config the proxy holds.

    Raises proxy.errors.NoRoute (unknown host) or NoHealthyUpstream (a cluster with nothing healthy).
    Pure and synchronous: it runs once per request on the hot path and must not allocate much.
    """

    def pick(self, head: RequestHead) -> Target: ...
