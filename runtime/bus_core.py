"""The NATS connection every service and proxy uses, with typed errors and safe handlers (the Bus class;
runtime/bus.py re-exports it).

    BusError
    ├── BusTimeout       no reply within the timeout
    ├── NoResponders     nobody subscribes to the subject (the service is not running)
    └── PayloadTooLarge  the message exceeds the server's max_payload (refused before sending)

nats-py errors are translated here, once. Payloads are JSON (msgspec), so a script with the `nats`
CLI can read and write every subject. A handler that raises never kills a receiver: a request that
does not decode (decode() turns every decoding failure, RecursionError and out-of-range numbers
included, into msgspec.DecodeError), or whose Isthmus-Deadline header is not an integer, is answered {"ok": false, "error": "malformed request on <subject>: ..."}, any other
exception (our bug) is logged with its traceback and answered {"ok": false, "error": "internal
error ..."}; every reply type carries that `error` text, so clients can show the reason.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from runtime.hidden_imports import modules_hidden

# nats-py imports aiohttp for its WebSocket transport whenever aiohttp is installed (it is: the telemetry service
# serves HTTP with it). Isthmus never dials ws://, and aiohttp costs every process that loads it ~15 MB of RSS,
# every sidecar included: it is hidden while nats loads, unless this process has loaded it already (the
# telemetry service then keeps it). nats.aio.transport sets aiohttp = None on the ImportError it then gets.
with modules_hidden("aiohttp"):
    import nats
    import nats.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg

from runtime.bus_codec import MalformedRequest, decode, encode, error_reply
from runtime.bus_deadline import DEADLINE_HEADER, _deadline, _headers, _parse_deadline, _subject, deadline_margin
from runtime.log import get_logger

T = TypeVar("T")
log = get_logger("bus")


class BusError(Exception):
    """The bus could not carry a message: away, closed, refused (every bus failure below is one)."""


class BusTimeout(BusError):
    """A request's reply did not come within its timeout."""


class NoResponders(BusError):
    """No subscriber serves the subject a request was sent on (nats-server's no-responders status)."""


class PayloadTooLarge(BusError):
    """A message over the server's max_payload, refused before it was sent."""


HEADER_ALLOWANCE = 128  # bytes the NATS headers we send may take, counted against max_payload
# Reply subjects a service answers on: clients' inboxes (nats-py's `inbox_prefix`, proto/busauth.py: `_INBOX.<role>`,
# `_INBOX.proxy.<id>`, `_INBOX.join.<digest>`). Anything else is a client asking a service to publish for it.
REPLY_PREFIXES: tuple[str, ...] = ("_INBOX.",)


Handler = Callable[[bytes], Awaitable[bytes | None]]
Listener = Callable[[bytes], Awaitable[None]]


class Bus:
    """A thin wrapper over one nats-py client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def connected(self) -> bool:
        return self.client.is_connected

    @property
    def max_payload(self) -> int:
        """The largest message the server accepts (its INFO max_payload), headers included."""
        return int(self.client.max_payload)

    def check_size(self, subject: str, payload: bytes) -> None:
        """PayloadTooLarge, naming the sizes, when payload cannot be sent on this bus."""
        limit = self.max_payload - HEADER_ALLOWANCE
        if len(payload) > limit:
            raise PayloadTooLarge(f"the message to {subject} is {len(payload)} bytes; this bus accepts at most "
                                  f"{limit} (nats-server max_payload {self.max_payload} bytes, less headers)")

    async def publish(self, subject: str, payload: bytes) -> None:
        """BusError when the message cannot be sent: too large, the connection closed for good, or away with
        nats-py's reconnect buffer full (it raised its own errors, which callers' `except BusError` missed)."""
        self.check_size(subject, payload)
        try:
            await self.client.publish(subject, payload)
        except nats.errors.OutboundBufferLimitError as exc:
            raise BusError(f"the bus is away and its reconnect buffer is full: {subject} not sent") from exc
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
            raise BusError(f"bus connection closed: {subject} not sent") from exc

    async def request(self, subject: str, payload: bytes, timeout: float = 5.0,
                      headers: dict[str, str] | None = None) -> bytes:
        """The reply's payload; the request carries its deadline (runtime/bus_deadline.py) and `headers`."""
        self.check_size(subject, payload)
        deadline = time.time() + timeout - deadline_margin(timeout)
        headers = {**(headers or {}), DEADLINE_HEADER: str(int(deadline * 1000))}
        try:
            msg = await self.client.request(subject, payload, timeout=timeout, headers=headers)
        except nats.errors.MaxPayloadError as exc:
            raise PayloadTooLarge(f"the message to {subject} exceeds the bus's max_payload") from exc
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(f"nothing answers on {subject}: is the service running?") from exc
        except (nats.errors.TimeoutError, asyncio.TimeoutError) as exc:
            raise BusTimeout(f"no reply on {subject} within {timeout:g}s") from exc
        except nats.errors.ConnectionClosedError as exc:
            raise BusError(f"bus connection closed while asking {subject}") from exc
        return msg.data

    async def call(self, subject: str, message: Any, reply_type: type[T], timeout: float = 5.0) -> T:
        return decode(await self.request(subject, encode(message), timeout), reply_type)

    async def serve(self, subject: str, handler: Handler, queue: str = "", concurrency: int = 1,
                    reply_prefixes: tuple[str, ...] = REPLY_PREFIXES) -> Any:
        """Answer requests on subject; the handler's return value is the reply (None: no reply).

        A request whose reply subject does not start with one of `reply_prefixes` (an inbox) is logged and
        dropped unhandled: nats-server's allow_responses lets a service publish to whatever reply subject it
        was sent, so a client could otherwise have it publish on a subject the client may not (a push, the
        bundle updates, the config API). A request without a reply subject is handled (and not answered).

        nats-py runs one subscription's callbacks one after another; with concurrency > 1 up to that
        many requests are handled at once (for handlers that wait on etcd, like the registry's)."""

        async def answer(msg: Msg) -> None:
            subject = msg.subject  # the request's own subject (`subject` may be a wildcard), for replies and logs
            if msg.reply and not msg.reply.startswith(reply_prefixes):
                log.warning("request dropped: its reply subject is not an inbox", subject=subject,
                            reply=msg.reply[:200])
                return
            try:
                deadline = _parse_deadline(msg.headers)
            except MalformedRequest as exc:
                log.warning("malformed request", subject=subject, error=str(exc))
                if msg.reply:
                    await msg.respond(error_reply(f"malformed request on {subject}: {exc}"))
                return
            token = _deadline.set(deadline)
            subject_token = _subject.set(msg.subject)
            headers_token = _headers.set(msg.headers)
            try:
                reply = await handler(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # a bad request: its sender's fault
                log.warning("malformed request", subject=subject, error=str(exc)[:500])
                reply = error_reply(f"malformed request on {subject}: {str(exc)[:500]}")
            except Exception as exc:
                if _store_error(exc):  # etcd away or slow: not our bug, and the caller is told so
                    log.warning("request failed: store unavailable", subject=subject, error=str(exc)[:500])
                    reply = error_reply(f"store unavailable on {subject}: {str(exc)[:500]}; try again when etcd "
                                        "answers")
                else:  # our bug: answer, log the traceback, keep serving
                    log.exception("request failed", subject=subject)
                    reply = error_reply(f"internal error on {subject}: {type(exc).__name__}: {exc}")
            finally:
                _deadline.reset(token)
                _subject.reset(subject_token)
                _headers.reset(headers_token)
            if reply is not None and msg.reply:
                try:
                    self.check_size(msg.reply, reply)
                except PayloadTooLarge as exc:
                    log.warning("reply too large", subject=subject, size=len(reply))
                    reply = error_reply(f"the reply on {subject} is {len(reply)} bytes, larger than this bus's "
                                        f"max_payload ({exc}); ask for less at once")
                await msg.respond(reply)

        if concurrency <= 1:
            return await self._subscribe(subject, queue, answer)
        slots = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[None]] = set()

        async def bounded(msg: Msg) -> None:
            async with slots:
                await answer(msg)

        async def on_msg(msg: Msg) -> None:
            await slots.acquire()  # full: stop taking messages, so pending ones queue in the client
            slots.release()
            task = asyncio.ensure_future(bounded(msg))
            running.add(task)
            task.add_done_callback(running.discard)

        return await self._subscribe(subject, queue, on_msg)

    async def listen(self, subject: str, listener: Listener, queue: str = "") -> Any:
        """Receive published messages; errors are logged and the message dropped."""

        async def on_msg(msg: Msg) -> None:
            try:
                await listener(msg.data)
            except Exception as exc:
                log.warning("message dropped", subject=msg.subject, error=str(exc))

        return await self._subscribe(subject, queue, on_msg)

    async def _subscribe(self, subject: str, queue: str, cb: Callable[[Msg], Awaitable[None]]) -> Any:
        """nats-py's subscribe; BusError when the connection is closed for good (or draining): callers such as
        a newly elected pilot catch it and stand down, where nats-py's own error went unhandled."""
        try:
            return await self.client.subscribe(subject, queue=queue, cb=cb)
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
            raise BusError(f"bus connection closed: cannot subscribe to {subject}") from exc

    async def flush(self, timeout: float = 2.0) -> None:
        await self.client.flush(timeout=timeout)

    async def close(self, timeout: float = 2.0) -> None:
        """Drain (deliver what is in flight), bounded: with the server gone, drain would wait forever."""
        if self.client.is_closed:
            return
        try:
            await asyncio.wait_for(self.client.drain(), timeout)
        except Exception:
            try:
                await asyncio.wait_for(self.client.close(), timeout)
            except Exception:
                pass  # closing after a failed drain: the connection is dropped either way


def _store_error(exc: BaseException) -> bool:
    """Whether a handler failed because etcd did not answer (runtime.store.StoreError): found by an attack, a
    stopped etcd made `isthmus token create` say "internal error ... StoreError" with a traceback in the ca's
    log. runtime.store is not imported here (the sidecar does not load etcd's client): no StoreError can be
    raised unless it was."""
    store = sys.modules.get("runtime.store")
    return store is not None and isinstance(exc, store.StoreError)
