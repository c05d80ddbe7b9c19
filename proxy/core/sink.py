"""What an upstream connection reports to: the exchange it serves, and the client it relays to.

Neutral: the transport (proxy/http/upstream.py) calls these; the exchange (proxy/http/exchange.py) and the
client connection (proxy/http/server.py) implement them. Neither side imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio


class Gate(Protocol):
    """A connection's reading, paused for any of several reasons (proxy/http/flow.ReadGate)."""

    def pause(self, reason: int) -> None: ...
    def resume(self, reason: int) -> None: ...


class Client(Protocol):
    """The downstream connection as the upstream side sees it: where a tunnel's bytes go, whose reading
    is paused while the upstream cannot take more."""

    gate: Gate
    loop: asyncio.AbstractEventLoop  # whose time() the end of a response is stamped with

    def write(self, data: bytes) -> None: ...


class ResponseSink(Protocol):
    """The exchange an upstream connection serves, told of each response event.

    `framing` is proxy/http/upstream's NO_BODY, LENGTH or STREAM; `drop` the lower-case header names the
    response's Connection header lists (hop-by-hop, not forwarded), or None. `on_raw_response_head` gets
    the head as received, hop-by-hop lines cut, up to its final CRLF (proxy/http/response_head.scan); it
    returns False when the exchange needs the parsed headers, and then gets on_response_head instead.
    """

    proto: Client
    is_head: bool  # a HEAD request: the response has no body whatever its headers say
    req_done: bool  # the whole request body went out
    upgrade: bytes | None  # the Upgrade value of a websocket request

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                         drop: frozenset[bytes] | None, framing: int) -> None: ...
    def on_raw_response_head(self, status: int, parts: list[bytes], framing: int) -> bool: ...
    def on_upgrade(self, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None: ...
    def on_response_body(self, body: bytes) -> None: ...
    def on_response_end(self, now: float = 0.0) -> None: ...
    def flush(self) -> None: ...
    def upstream_lost(self, exc: BaseException, retryable: bool) -> None: ...
