"""A small keep-alive HTTP/1.1 client for tests, so requests travel exactly as written."""

from __future__ import annotations

import asyncio

import httptools


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.done = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True

    @property
    def text(self) -> str:
        return self.body.decode()


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> Response:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {target} HTTP/1.1"]
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body:
            lines.append(f"content-length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        response = Response()
        parser = httptools.HttpResponseParser(response)
        assert self.reader is not None
        while not response.done:
            chunk = await asyncio.wait_for(self.reader.read(65536), self.timeout)
            if not chunk:
                parser.feed_data(b"")  # lets a read-until-close body complete
                if not response.done:
                    raise ConnectionError("connection closed before the response completed")
                break
            parser.feed_data(chunk)
        response.status = parser.get_status_code()
        if response.headers.get("connection", "").lower() == "close":
            await self.close()
        return response

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class AppServer:
    """Base of the test apps: listens on `host` (127.0.0.1 unless set before start) at a free port and answers
    each connection's requests with `serve_one` (one request; returns False to close the connection)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self.open = 0  # connections open now

    async def start(self):  # type: ignore[no-untyped-def]
        self.server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        raise NotImplementedError  # each app says how it answers

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        try:
            while await self.serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()


class Backend(AppServer):
    """An app behind a sidecar: answers every request with `name` and counts what it saw."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length:
            await reader.readexactly(length)
        self.requests.append((method, path, headers))
        body = self.name.encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        return True
