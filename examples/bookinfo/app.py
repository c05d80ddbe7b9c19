"""A tiny bookinfo-like app for the demo: a `reviews` backend in versions, and a `frontend` that calls
reviews through its own sidecar.

    python -m examples.bookinfo.app --role reviews --version v2 --port 9082
    python -m examples.bookinfo.app --role frontend --port 9090 \\
        --reviews-url http://reviews:9080/reviews --proxy http://127.0.0.1:15001

reviews answers every path with {"service": "reviews", "version": "<version>"}. frontend answers `/` by
asking reviews (an absolute-form request to the sidecar's outbound port, which picks the version by
the mesh config) and reports what it got: {"service": "frontend", "version": "v1", "reviews":
{"status": 200, "version": "v2"}}; when reviews fails it reports the status and error instead, still
with a 200, the way bookinfo's productpage shows "reviews unavailable". The `end-user` header and the
trace headers are passed on to reviews, so header-based routes (virtual-service-reviews-jason-v2.yaml)
and traces work.

HTTP/1.1 with keep-alive and Content-Length on stdlib asyncio streams: a demo app, not the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

PROPAGATED = ("end-user", "x-request-id", "traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid",
              "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}
MAX_HEAD = 64 * 1024

Headers = dict[str, str]  # lower-case names


class ProtocolError(Exception):
    pass


# ------------------------------------------------------------------------------------- wire format


async def read_head(reader: asyncio.StreamReader) -> tuple[str, Headers] | None:
    """The start line and headers of one message; None on a clean EOF between messages."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ProtocolError("connection closed in the middle of a message head") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("message head too large") from exc
    lines = raw.decode("latin-1").split("\r\n")
    headers: Headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


async def read_body(reader: asyncio.StreamReader, headers: Headers, until_eof: bool = False) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = headers.get("content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read() if until_eof else b""


def render(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line, *(f"{k}: {v}" for k, v in headers.items()), f"content-length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


# ------------------------------------------------------------------------------------------ server

Handler = Callable[[str, str, Headers], Awaitable[tuple[int, dict]]]


async def serve(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Answer HTTP/1.1 requests with handler(method, target, headers) -> (status, JSON body)."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                start, headers = head
                parts = start.split(" ")
                if len(parts) != 3:
                    raise ProtocolError(f"bad request line {start!r}")
                method, target, version = parts
                await read_body(reader, headers)
                try:
                    status, payload = await handler(method, target, headers)
                except Exception as exc:  # a bug in a handler answers 500, never kills the app
                    status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
                close = headers.get("connection", "").lower() == "close" or (
                    version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive")
                out = {"content-type": "application/json"}
                if close:
                    out["connection"] = "close"
                body = json.dumps(payload).encode() + b"\n"
                writer.write(render(f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", out, body))
                await writer.drain()
                if close:
                    break
        except (ProtocolError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:  # shutting down with a keep-alive connection open: end quietly
            pass
        finally:
            writer.close()

    return await asyncio.start_server(connection, host, port, limit=MAX_HEAD)


# ------------------------------------------------------------------------------------------ client


class Response:
    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        return json.loads(self.body)


class HttpClient:
    """Keep-alive HTTP/1.1 client with a small idle pool. With `proxy` ("http://host:port") every
    request goes to the proxy in absolute form (`GET http://reviews:9080/reviews HTTP/1.1`), the way
    an app uses HTTP_PROXY."""

    def __init__(self, proxy: str | None = None, timeout: float = 5.0, max_idle: int = 64) -> None:
        self.proxy = _host_port(proxy) if proxy else None
        self.timeout = timeout
        self.max_idle = max_idle
        self.idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def get(self, url: str, headers: Headers | None = None) -> Response:
        return await self.request("GET", url, headers)

    async def request(self, method: str, url: str, headers: Headers | None = None, body: bytes = b"") -> Response:
        parts = urlsplit(url)
        origin = _host_port(url)
        address = self.proxy or origin
        target = url if self.proxy else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        out = {"host": parts.netloc, **(headers or {})}
        wire = render(f"{method} {target} HTTP/1.1", out, body)
        while True:
            conn, reused = await self._connection(address)
            try:
                return await asyncio.wait_for(self._exchange(address, conn, wire), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError, ProtocolError):
                conn[1].close()
                if reused and method in ("GET", "HEAD"):
                    continue  # the server closed an idle keep-alive connection: retry on another
                raise
            except BaseException:
                conn[1].close()
                raise

    async def _connection(self, address: tuple[str, int]) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        pool = self.idle.get(address)
        while pool:
            reader, writer = pool.pop()
            if not writer.is_closing() and not reader.at_eof():
                return (reader, writer), True
            writer.close()
        conn = await asyncio.wait_for(asyncio.open_connection(*address, limit=MAX_HEAD), self.timeout)
        return conn, False

    async def _exchange(self, address: tuple[str, int],
                        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], wire: bytes) -> Response:
        reader, writer = conn
        writer.write(wire)
        await writer.drain()
        head = await read_head(reader)
        if head is None:
            raise ConnectionResetError("connection closed before a response")
        start, headers = head
        try:
            status = int(start.split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise ProtocolError(f"bad status line {start!r}") from exc
        close = headers.get("connection", "").lower() == "close"
        body = await read_body(reader, headers, until_eof=close or "content-length" not in headers
                               and "transfer-encoding" not in headers)
        pool = self.idle.setdefault(address, [])
        if close or len(pool) >= self.max_idle:
            writer.close()
        else:
            pool.append(conn)
        return Response(status, headers, body)

    async def close(self) -> None:
        for pool in self.idle.values():
            for _, writer in pool:
                writer.close()
        self.idle.clear()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


# ------------------------------------------------------------------------------------------- roles


def reviews_handler(version: str) -> Handler:
    async def handle(method: str, target: str, headers: Headers) -> tuple[int, dict]:
        return 200, {"service": "reviews", "version": version}

    return handle


def frontend_handler(version: str, reviews_url: str, client: HttpClient) -> Handler:
    async def handle(method: str, target: str, headers: Headers) -> tuple[int, dict]:
        path = urlsplit(target).path if "://" in target else target.split("?")[0]
        if path == "/health":
            return 200, {"status": "ok"}
        if path != "/":
            return 404, {"error": f"no page {path}; try /"}
        passed = {name: headers[name] for name in PROPAGATED if name in headers}
        try:
            response = await client.get(reviews_url, passed)
        except (OSError, asyncio.TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
            reviews = {"status": 0, "error": f"{type(exc).__name__}: {exc}".rstrip(": ")}
        else:
            reviews = {"status": response.status}
            try:
                data = response.json()
            except ValueError:
                data = {}
            if response.status == 200 and isinstance(data, dict) and "version" in data:
                reviews["version"] = data["version"]
            else:
                reviews["error"] = response.body[:200].decode(errors="replace").strip()
        return 200, {"service": "frontend", "version": version, "reviews": reviews}

    return handle


async def main(args: argparse.Namespace) -> None:
    client: HttpClient | None = None
    if args.role == "reviews":
        handler = reviews_handler(args.version)
    else:
        client = HttpClient(proxy=args.proxy, timeout=args.timeout)
        handler = frontend_handler(args.version, args.reviews_url, client)
    try:
        server = await serve(handler, args.host, args.port)
    except OSError as exc:  # the port is taken: one line naming the flag, as `isthmus proxy run` says it
        print(f"error: --port {args.port}: {os.strerror(exc.errno).lower() if exc.errno else exc}", file=sys.stderr)
        if client:
            await client.close()
        raise SystemExit(2) from None
    print(json.dumps({"event": "ready", "role": args.role, "version": args.version,
                      "listen": f"{args.host}:{args.port}"}), file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if client:
        await client.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.bookinfo.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("reviews", "frontend"), required=True)
    parser.add_argument("--version", default="v1", help="this workload's version label (default v1)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--reviews-url", default="http://reviews:9080/reviews", help="frontend: where reviews is")
    parser.add_argument("--proxy", help="frontend: the sidecar's outbound listener, e.g. http://127.0.0.1:15001")
    parser.add_argument("--timeout", type=float, default=5.0, help="frontend: seconds to wait for reviews")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
