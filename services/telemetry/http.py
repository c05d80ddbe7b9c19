"""The telemetry service's HTTP port (aiohttp): /healthz, /metrics, Zipkin's v2 API, the dashboard's JSON API
and, when services/telemetry/dashboard is installed, the dashboard page (`/`, `/static/`).

Everything is read-only but POST /api/v2/spans (Zipkin's collector endpoint, for apps that report their own
spans): bounded by max_body_bytes (413), max_post_spans (413), each span checked (400 naming the first bad
one), 202 when taken. Connections past max_connections are closed as soon as they open, and a connection on
which no request has started for idle_timeout seconds (a head sent a byte at a time, an idle keep-alive) and
none is being answered is closed (ConnectionReaper), so slow clients cannot hold the connection bound. aiohttp's
own bounds stay in force: a request line or header at most 8190 bytes (400).
docs/telemetry-service.md lists the routes and who may reach them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from proto.observations import Span
from services.telemetry.state import Telemetry
from services.telemetry.traces import SpanRefused, check

JSON = "application/json"
MAX_LIMIT = 1000
METRICS_CHUNK = 256 * 1024  # bytes of /metrics text written at a time
_encoder = msgspec.json.Encoder()
_span_list = msgspec.json.Decoder(list[Span])
StatusFetch = Callable[[], Awaitable[bytes]]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(value), status=status, content_type=JSON)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class BadParam(ValueError):
    """A query parameter out of its range or not a number: 400 with the message."""


def _number(request: web.Request, name: str, default: float | None, low: float, high: float,
            integer: bool = True) -> float | None:
    text = request.query.get(name, "")
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise BadParam(f"{name} is {text[:40]!r}: give {'an integer' if integer else 'a number'}") from None
    if not low <= value <= high:
        raise BadParam(f"{name} is {text[:40]!r}: give {low:g} to {high:g}")
    return value


def _annotation_query(text: str) -> dict[str, str]:
    """Zipkin's annotationQuery: `error and http.method=GET` -> {"error": "", "http.method": "GET"}."""
    query: dict[str, str] = {}
    for part in text.split(" and "):
        key, _, value = part.strip().partition("=")
        if key:
            query[key] = value
    return query


class Routes:
    def __init__(self, telemetry: Telemetry, proxy_status: StatusFetch, healthy: Callable[[], bool]) -> None:
        self.t = telemetry
        self.proxy_status = proxy_status
        self.healthy = healthy

    def table(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz), web.get("/metrics", self.metrics),
            web.get("/api/v2/services", self.zipkin_services), web.get("/api/v2/spans", self.zipkin_spans),
            web.get("/api/v2/remoteServices", self.zipkin_remote), web.get("/api/v2/traces", self.zipkin_traces),
            web.get("/api/v2/trace/{trace_id}", self.zipkin_trace), web.post("/api/v2/spans", self.zipkin_post),
            web.get("/api/v2/autocompleteKeys", self.empty_list), web.get("/api/v2/autocompleteValues", self.empty_list),
            web.get("/api/graph", self.graph), web.get("/api/series", self.series), web.get("/api/proxies", self.proxies),
            web.get("/api/logs", self.logs),
        ]

    async def healthz(self, _: web.Request) -> web.Response:
        ok = self.healthy()
        return web.Response(text="ok\n" if ok else "bus disconnected\n", status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """Streamed in chunks of METRICS_CHUNK bytes, yielding to the loop after each: an exposition of
        max_series histogram series is hundreds of MB of text and seconds of CPU; built whole it held that
        memory per scrape and blocked the loop until the health checks failed and the service was killed."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
        await response.prepare(request)
        chunk: list[str] = []
        size = 0
        for line in self.t.exposition_lines():
            chunk.append(line)
            size += len(line) + 1
            if size >= METRICS_CHUNK:
                chunk.append("")
                await response.write("\n".join(chunk).encode())
                chunk.clear()
                size = 0
                await asyncio.sleep(0)  # a write to a fast reader does not yield by itself
        chunk.append("")
        await response.write("\n".join(chunk).encode())
        await response.write_eof()
        return response

    async def empty_list(self, _: web.Request) -> web.Response:
        return _json([])

    async def zipkin_services(self, _: web.Request) -> web.Response:
        return _json(self.t.traces.services())

    async def zipkin_spans(self, request: web.Request) -> web.Response:
        service = request.query.get("serviceName", "")
        if not service:
            return _error(400, "serviceName is required")
        return _json(self.t.traces.span_names(service))

    async def zipkin_remote(self, request: web.Request) -> web.Response:
        service = request.query.get("serviceName", "")
        if not service:
            return _error(400, "serviceName is required")
        return _json(self.t.traces.remote_services(service))

    async def zipkin_traces(self, request: web.Request) -> web.Response:
        now_ms = int(time.time() * 1000)
        try:
            end_ts = int(_number(request, "endTs", now_ms, 1, 2**53) or now_ms)
            lookback = int(_number(request, "lookback", 86_400_000, 0, 2**53) or 0)
            limit = int(_number(request, "limit", 10, 1, MAX_LIMIT) or 10)
            min_d = int(_number(request, "minDuration", 0, 0, 2**63 - 1) or 0)
            max_d = int(_number(request, "maxDuration", 0, 0, 2**63 - 1) or 0)
        except BadParam as exc:
            return _error(400, str(exc))
        traces = self.t.traces.query(request.query.get("serviceName", ""), request.query.get("spanName", ""),
                                     end_ts, lookback, min_d, max_d, limit,
                                     _annotation_query(request.query.get("annotationQuery", "")),
                                     request.query.get("remoteServiceName", ""))
        return _json(traces)

    async def zipkin_trace(self, request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"]
        spans = self.t.traces.trace(trace_id) if len(trace_id) in (16, 32) else None
        if spans is None:
            return _error(404, f"trace {trace_id[:40]} not found")
        return _json(spans)

    async def zipkin_post(self, request: web.Request) -> web.Response:
        kind = request.content_type
        if kind not in (JSON, "application/octet-stream", "text/plain") and not kind.endswith("+json"):
            return _error(415, f"Content-Type {kind[:80]} is not taken: send a JSON list of Zipkin v2 spans "
                               "(application/json)")
        try:
            body = await request.read()  # 413 past client_max_size (max_body_bytes), decompressed if gzip
        except web.RequestPayloadError as exc:  # a body that does not decode as its Content-Encoding says
            return _error(400, f"the body cannot be read: {' '.join(str(exc).split())[:200]}")
        try:
            spans = _span_list.decode(body)
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            return _error(400, f"not a JSON list of Zipkin v2 spans: {str(exc)[:300]}")
        if len(spans) > self.t.settings.max_post_spans:
            return _error(413, f"{len(spans)} spans in one request; at most {self.t.settings.max_post_spans}")
        checked: list[Span] = []
        for i, span in enumerate(spans):
            try:
                checked.append(check(span))
            except SpanRefused as exc:
                return _error(400, f"span {i}: {exc}")
        self.t.add_spans(checked)
        return web.Response(status=202)

    async def graph(self, request: web.Request) -> web.Response:
        try:
            window = float(_number(request, "window", 60.0, 1, 86_400, integer=False) or 60.0)
        except BadParam as exc:
            return _error(400, str(exc))
        return _json(self.t.history.graph(time.time(), window, self.t.merger.totals))

    async def series(self, request: web.Request) -> web.Response:
        service = request.query.get("service", "")
        if not service:
            return _error(400, "service is required (a FQDN, e.g. reviews.default.svc.cluster.local)")
        try:
            minutes = float(_number(request, "minutes", 15.0, 1, 1440, integer=False) or 15.0)
        except BadParam as exc:
            return _error(400, str(exc))
        return _json(self.t.history.series(service, minutes, time.time()))

    async def proxies(self, _: web.Request) -> web.Response:
        try:
            body = await self.proxy_status()
        except Exception as exc:  # pilot away or slow: the page shows why
            return _json({"ok": False, "error": f"pilot did not answer: {str(exc)[:300]}", "proxies": []}, 503)
        return web.Response(body=body, content_type=JSON)

    async def logs(self, request: web.Request) -> web.Response:
        try:
            limit = int(_number(request, "limit", 100, 1, MAX_LIMIT) or 100)
        except BadParam as exc:
            return _error(400, str(exc))
        return _json(self.t.logs.recent(request.query.get("service", ""), request.query.get("namespace", ""), limit))


def dashboard_routes() -> list[web.RouteDef]:
    """The dashboard page's routes (services/telemetry/dashboard), or an index of the API without it."""
    try:
        from services.telemetry import dashboard  # type: ignore[attr-defined]
    except ImportError:
        async def index(_: web.Request) -> web.Response:
            return _json({"dashboard": "not installed", "api": ["/healthz", "/metrics", "/api/v2/services",
                                                                "/api/graph", "/api/series", "/api/proxies",
                                                                "/api/logs"]})
        return [web.get("/", index)]
    return list(dashboard.routes())


class ConnectionReaper:
    """Closes connections no request has started on for `timeout` seconds while none is in progress: aiohttp
    has no timeout on a request's head, so without it 256 clients sending a byte every few seconds would hold
    every connection (slowloris). A request starting (the middleware: its head is complete) renews the
    connection; one being answered (a long /metrics stream) is never cut. Checked every timeout / 2."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.opened: dict[asyncio.BaseTransport, float] = {}  # connection -> loop time a request last started
        self.busy: dict[asyncio.BaseTransport, int] = {}  # connection -> requests being answered
        self.reaped = 0
        self.task: asyncio.Task[None] | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        transport = request.transport
        if transport is None:
            return await handler(request)
        self.opened[transport] = asyncio.get_running_loop().time()
        self.busy[transport] = self.busy.get(transport, 0) + 1
        try:
            return await handler(request)
        finally:
            left = self.busy.get(transport, 1) - 1
            if left:
                self.busy[transport] = left
            else:
                self.busy.pop(transport, None)
            self.opened[transport] = asyncio.get_running_loop().time()

    async def run(self, connections: Callable[[], list[Any]]) -> None:
        """`connections()`: aiohttp's live RequestHandlers (web.Server.connections); one first seen starts its
        idle clock then, so a silent connection is closed between `timeout` and 1.5 x `timeout` after accept."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.timeout / 2)
            now = loop.time()
            live = {protocol.transport for protocol in connections() if protocol.transport is not None}
            for transport in live:
                since = self.opened.setdefault(transport, now)
                if transport not in self.busy and now - since >= self.timeout and not transport.is_closing():
                    self.reaped += 1
                    transport.close()
            for transport in [t for t in self.opened if t not in live]:  # gone: forget them
                self.opened.pop(transport, None)
                self.busy.pop(transport, None)


class _Refused(asyncio.Protocol):
    """A connection past max_connections: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class HttpServer:
    """start() binds (OSError when the port is taken), stop() closes listener and connections."""

    def __init__(self, telemetry: Telemetry, proxy_status: StatusFetch, healthy: Callable[[], bool]) -> None:
        self.settings = telemetry.settings
        self.reaper = ConnectionReaper(self.settings.idle_timeout)
        self.app = web.Application(client_max_size=self.settings.max_body_bytes, middlewares=[self.reaper.middleware])
        self.app.add_routes(Routes(telemetry, proxy_status, healthy).table())
        self.app.add_routes(dashboard_routes())
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)  # stop promptly
        self.server: asyncio.base_events.Server | None = None
        self.refused = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self.runner.setup()
        handler = self.runner.server
        assert handler is not None
        limit = self.settings.max_connections

        def factory() -> asyncio.Protocol:
            if len(handler.connections) >= limit:
                self.refused += 1
                return _Refused()
            return handler()

        self.server = await asyncio.get_running_loop().create_server(
            factory, self.settings.bind, self.settings.port, reuse_address=True)
        self.reaper.task = asyncio.get_running_loop().create_task(self.reaper.run(lambda: handler.connections))

    async def stop(self) -> None:
        if self.reaper.task is not None:
            self.reaper.task.cancel()
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()
