"""The admin listener (default 127.0.0.1:15000): /ready, /config_dump, /server_info, /clusters, /certs,
/logging (GET; POST ?level=LEVEL changes the log level at runtime, as Envoy's), /stats/prometheus (Envoy's
path: the sidecar's Istio standard metrics in Prometheus text, proxy/telemetry/).

Not the hot path: plain asyncio streams, one request per connection. Bounded like the listeners, if
loosely: a request head of at most MAX_HEAD bytes (431 past it) read within HEAD_TIMEOUT seconds, and at
most MAX_CONNECTIONS connections at once (more are closed at once). It listens on 127.0.0.1 only: anyone
on the host may read it, nobody else.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

_json = msgspec.json.Encoder()
_REASONS = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed", 503: b"Service Unavailable", 400: b"Bad Request",
            408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
MAX_HEAD = 16 * 1024  # bytes of request line + headers
HEAD_TIMEOUT = 5.0  # seconds to receive them
MAX_CONNECTIONS = 64
NOT_READY = "no config from pilot for this workload yet"  # /ready's 503 body, unless `not_ready` says more
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"  # the exposition format /stats/prometheus serves


class AdminServer:
    def __init__(self, host: str, port: int, is_ready: Callable[[], bool],
                 config_dump: Callable[[], dict[str, Any]], server_info: Callable[[], dict[str, Any]],
                 clusters: Callable[[], Any] | None = None, certs: Callable[[], Any] | None = None,
                 prometheus: Callable[[], bytes | Awaitable[bytes]] | None = None,
                 not_ready: Callable[[], str] | None = None) -> None:
        self.host = host
        self.port = port
        self.is_ready = is_ready
        self.config_dump = config_dump
        self.server_info = server_info
        self.clusters = clusters  # /clusters: circuit breakers and outlier state per cluster
        self.certs = certs  # /certs: the workload certificate and the roots trusted (Envoy's shape)
        # /stats/prometheus: Prometheus text format 0.0.4; may be a coroutine (the sidecar renders it off the loop)
        self.prometheus = prometheus
        # why /ready is 503 ("": no reason known, the default's when not ready): a reason (the registry refuses this
        # workload's registration) makes /ready 503 even with config held, which the sidecar keeps serving with
        self.not_ready = not_ready
        self.server: asyncio.Server | None = None
        self.open = 0  # connections being served

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True,
                                                 limit=MAX_HEAD - 4)  # the limit is what precedes CRLFCRLF

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    def respond(self, method: str, path: str) -> tuple[int, str, bytes | Awaitable[bytes]]:
        path, _, query = path.partition("?")
        if path == "/logging":
            return logging_endpoint(method, query)
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        if path == "/ready":
            why = self.not_ready() if self.not_ready is not None else ""
            if self.is_ready() and not why:
                return 200, "text/plain", b"LIVE\n"
            return 503, "text/plain", f"NOT READY: {why or NOT_READY}\n".encode()
        if path == "/config_dump":
            return 200, "application/json", _json.encode(self.config_dump()) + b"\n"
        if path == "/server_info":
            return 200, "application/json", _json.encode(self.server_info()) + b"\n"
        if path == "/clusters" and self.clusters is not None:
            return 200, "application/json", _json.encode(self.clusters()) + b"\n"
        if path == "/certs" and self.certs is not None:
            return 200, "application/json", _json.encode(self.certs()) + b"\n"
        if path == "/stats/prometheus" and self.prometheus is not None:
            return 200, PROMETHEUS_TEXT, self.prometheus()
        return 404, "text/plain", (b"unknown admin path; try /ready, /config_dump, /server_info, /clusters, /certs, /logging, "
                                   b"/stats/prometheus\n")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= MAX_CONNECTIONS:
            writer.close()
            return
        self.open += 1
        try:
            try:
                head = await asyncio.wait_for(read_head(reader), HEAD_TIMEOUT)
            except (asyncio.LimitOverrunError, ValueError):
                status, ctype, body = 431, "text/plain", b"request head too large\n"
            except asyncio.TimeoutError:
                status, ctype, body = 408, "text/plain", b"request head not received in time\n"
            else:
                parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
                if head is BARE_LF:
                    status, ctype, body = 400, "text/plain", b"bare LF in the request head\n"
                elif len(parts) != 3:
                    status, ctype, body = 400, "text/plain", b"bad request line\n"
                else:
                    status, ctype, answer = self.respond(parts[0], parts[1])
                    body = await answer if inspect.isawaitable(answer) else answer
            writer.write(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                         % (status, _REASONS.get(status, b""), ctype.encode(), len(body)) + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


def logging_endpoint(method: str, query: str) -> tuple[int, str, bytes]:
    """Envoy's /logging: GET shows the level, `POST /logging?level=debug` changes it for the whole process, at
    runtime (runtime/log.py set_level; `isthmus proxy log` changes it over the bus, the same way)."""
    from urllib.parse import parse_qs

    from runtime.log import level_name, set_level

    if method in ("GET", "HEAD"):
        return 200, "text/plain", f"active loggers:\n  isthmus: {level_name()}\n".encode()
    if method != "POST":
        return 405, "text/plain", b"GET or POST /logging?level=LEVEL\n"
    levels = parse_qs(query).get("level") or []
    if len(levels) != 1:
        return 400, "text/plain", b"give one level: POST /logging?level=debug|info|warning|error\n"
    try:
        before = set_level(levels[0])
    except ValueError as exc:
        return 400, "text/plain", f"{exc}\n".encode()
    return 200, "text/plain", f"active loggers:\n  isthmus: {level_name()} (was {before})\n".encode()


BARE_LF = b"\n"  # read_head's answer for a line not ended by CRLF


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request head up to its empty line, line by line, so that a line ended by a bare LF (or holding a
    bare CR) is answered 400 at once instead of waiting out HEAD_TIMEOUT for a CRLFCRLF that never comes.
    Raises ValueError past MAX_HEAD bytes, IncompleteReadError at EOF."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\n")
        size += len(line)
        if size > MAX_HEAD:
            raise ValueError("request head too large")
        if line[-2:-1] != b"\r" or b"\r" in line[:-2]:
            return BARE_LF
        if line == b"\r\n":
            return b"".join(lines) + line
        lines.append(line)
