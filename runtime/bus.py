"""The NATS connection every service and proxy uses, with typed errors and safe handlers.

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

Deadlines. Every request() carries the header `Isthmus-Deadline`: the wall-clock time (Unix epoch,
milliseconds) after which its sender no longer waits for the answer, minus a margin for the work a
handler does after its last check (a quarter of the timeout, at most 1 s). A handler that changes
state calls `deadline_passed()` just before committing and refuses when it is true, so a request its
client gave up on (the service was paused, or queued behind slow work) never takes effect later.
An absolute time, not a relative budget (gRPC's grpc-timeout), because the budget would restart when
a paused receiver finally reads the message; the price is that hosts' clocks must agree to well
within the margin (NTP keeps them within milliseconds). A request without the header (a script
using the `nats` CLI) has no deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
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

from runtime.clientconfig import NatsClient
from runtime.log import get_logger

T = TypeVar("T")
log = get_logger("bus")

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {}


class BusError(Exception):
    pass


class BusTimeout(BusError):
    pass


class NoResponders(BusError):
    pass


class PayloadTooLarge(BusError):
    pass


DEADLINE_HEADER = "Isthmus-Deadline"
HEADER_ALLOWANCE = 128  # bytes the NATS headers we send may take, counted against max_payload
# Reply subjects a service answers on: clients' inboxes (nats-py's `inbox_prefix`, proto/busauth.py: `_INBOX.<role>`,
# `_INBOX.proxy.<id>`, `_INBOX.join.<digest>`). Anything else is a client asking a service to publish for it.
REPLY_PREFIXES: tuple[str, ...] = ("_INBOX.",)
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("isthmus_deadline", default=None)
_subject: contextvars.ContextVar[str] = contextvars.ContextVar("isthmus_subject", default="")
_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("isthmus_headers", default=None)


def request_header(name: str) -> str | None:
    """A header of the request being handled in this task (e.g. Isthmus-Namespace), or None."""
    headers = _headers.get()
    return headers.get(name) if headers else None


def deadline_margin(timeout: float) -> float:
    """Seconds before the requester's own timeout at which a handler must stop committing."""
    return min(1.0, timeout / 4)


def request_deadline() -> float | None:
    """The deadline (Unix time, seconds) of the request being handled in this task, if it sent one."""
    return _deadline.get()


def request_subject() -> str:
    """The subject of the request being handled in this task ("" outside a handler): a handler served on
    a wildcard reads its tokens (the registry's identity-scoped subjects)."""
    return _subject.get()


def deadline_passed() -> bool:
    """True when the request being handled carries a deadline and it has passed."""
    deadline = _deadline.get()
    return deadline is not None and time.time() >= deadline


class MalformedRequest(msgspec.DecodeError):
    """A request that cannot be read: bad JSON, wrong shape, nesting too deep, a number out of range,
    a malformed Isthmus-Deadline header. Answered "malformed request on <subject>: ...", never applied."""


_MAX_DEADLINE_DIGITS = 15  # milliseconds since the epoch: 13 digits until the year 2286


def _parse_deadline(headers: dict[str, str] | None) -> float | None:
    """The header's deadline in seconds; None without one; MalformedRequest when it is not a plain
    non-negative integer of milliseconds (a request whose deadline cannot be read is not applied)."""
    value = headers.get(DEADLINE_HEADER) if headers else None
    if value is None:
        return None
    if not (0 < len(value) <= _MAX_DEADLINE_DIGITS and value.isascii() and value.isdigit()):
        raise MalformedRequest(f"the {DEADLINE_HEADER} header {value[:40]!r} is not a time in milliseconds "
                               "since the Unix epoch")
    return int(value) / 1000


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def error_reply(message: str) -> bytes:
    """The generic failure reply: every reply type has `ok` and an `error` text (ApplyReply also
    lists ConfigErrors), so a client can always show the reason."""
    return _encoder.encode({"ok": False, "error": message})


def decode(data: bytes, type_: type[T]) -> T:
    """`data` as a `type_`; msgspec.DecodeError (or its MalformedRequest) for anything that cannot be
    read, including nesting too deep for the decoder (RecursionError) and numbers out of range."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(data)
    except msgspec.DecodeError:
        raise
    except RecursionError:
        raise MalformedRequest("the JSON is nested too deeply") from None
    except (ValueError, OverflowError) as exc:
        raise MalformedRequest(f"a value cannot be read: {str(exc)[:200]}") from None


def servers(url: str) -> list[str]:
    """The server URLs of a bus URL: one, or several comma-separated (the nodes of a NATS cluster; nats-py
    picks one and moves to another when it fails, and also learns the cluster's other nodes from the one it
    reached: nats-server's INFO connect_urls)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def connect_options(auth: NatsClient | None) -> dict[str, Any]:
    """nats-py connect() keyword arguments for a client config's credentials (none without one)."""
    if auth is None:
        return {}
    options: dict[str, Any] = {}
    if auth.user:
        options.update(user=auth.user, password=auth.password)
    if auth.inbox_prefix:
        options["inbox_prefix"] = auth.inbox_prefix
    tls = auth.tls_context()
    if tls is not None:
        options["tls"] = tls  # the server's certificate must name the URL's host (up's names 127.0.0.1)
    return options


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
        self.check_size(subject, payload)
        await self.client.publish(subject, payload)

    async def request(self, subject: str, payload: bytes, timeout: float = 5.0,
                      headers: dict[str, str] | None = None) -> bytes:
        """The reply's payload; the request carries its deadline (see the module docstring) and `headers`."""
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
            return await self.client.subscribe(subject, queue=queue, cb=answer)
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

        return await self.client.subscribe(subject, queue=queue, cb=on_msg)

    async def listen(self, subject: str, listener: Listener, queue: str = "") -> Any:
        """Receive published messages; errors are logged and the message dropped."""

        async def on_msg(msg: Msg) -> None:
            try:
                await listener(msg.data)
            except Exception as exc:
                log.warning("message dropped", subject=msg.subject, error=str(exc))

        return await self.client.subscribe(subject, queue=queue, cb=on_msg)

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
                pass


RECONNECT_WAIT = 0.25  # seconds between reconnect attempts while the bus is away
REFUSED_WAIT_MAX = 5.0  # seconds: a client the bus refuses (revoked, unknown) retries at most this often


class _Client(Client):
    """nats-py's client, reconnecting when nats-server ends a session whose credentials expired.

    The auth callout gives a proxy connection a session of at most SESSION_SECONDS (services/auth): then
    nats-server sends `-ERR 'User Authentication Expired'` and closes the connection, and the client must
    connect again through the callout (nats.go does: it treats the error as an auth error and reconnects).
    nats-py closes the client for good on any -ERR it does not know, so every sidecar lost the bus ten
    minutes after it connected (found by an attack on issue 12: pushes, heartbeats and telemetry stopped).
    Here that error is an operational one: the usual reconnect, subscriptions kept; a refusal then is
    handled as any refusal (connect()'s error callback backs off)."""

    async def _process_err(self, err_msg: str) -> None:
        if "user authentication expired" in err_msg.lower():
            await self._process_op_err(nats.errors.Error(f"nats: {err_msg.strip(chr(39))}"))
            return
        await super()._process_err(err_msg)


def refused_wait(refusals: int) -> float:
    """Seconds before the next attempt after `refusals` refusals in a row: RECONNECT_WAIT doubled per refusal,
    at most REFUSED_WAIT_MAX. The exponent is capped: 2 ** 1024 is past a float (OverflowError), which a
    sidecar refused every 5 s reached after about 85 minutes."""
    return min(RECONNECT_WAIT * 2 ** min(refusals, 32), REFUSED_WAIT_MAX)


def _store_error(exc: BaseException) -> bool:
    """Whether a handler failed because etcd did not answer (runtime.store.StoreError): found by an attack, a
    stopped etcd made `isthmus token create` say "internal error ... StoreError" with a traceback in the ca's
    log. runtime.store is not imported here (the sidecar does not load etcd's client): no StoreError can be
    raised unless it was."""
    store = sys.modules.get("runtime.store")
    return store is not None and isinstance(exc, store.StoreError)


def _refusal(exc: BaseException) -> bool:
    """Whether nats-server refused the credentials (`-ERR 'Authorization Violation'`)."""
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()


async def connect(
    url: str,
    name: str,
    *,
    wait: float | None = 30.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    auth: NatsClient | None = None,
) -> Bus:
    """Connect, retrying until `wait` seconds pass (None: forever); reconnects forever afterwards.
    `auth`: the user, password, inbox prefix and TLS CA of a client config (runtime/clientconfig.py).

    A refusal of our credentials (a revoked or unknown proxy credential, a stale password) is logged once
    per run of refusals, as a warning naming the user, and the retries back off from RECONNECT_WAIT,
    doubling to REFUSED_WAIT_MAX: a refused client can do nothing on the bus, and each attempt costs the
    auth callout and two log lines in nats-server's and the auth service's logs. BusError (with the
    last refusal or error) when `wait` passes before the first connection."""
    user = auth.user if auth and auth.user else "(anonymous)"
    refusals = 0
    last_error = ""
    client = _Client()

    async def reconnected() -> None:
        nonlocal refusals
        if refusals:
            log.info("bus credentials accepted again", url=url, user=user)
        refusals = 0
        client.options["reconnect_time_wait"] = RECONNECT_WAIT
        log.info("bus reconnected", url=url)
        if on_reconnect:
            await on_reconnect()

    async def disconnected() -> None:
        if client.is_draining or client.is_closed:
            return  # our own close(), not an outage
        log.warning("bus disconnected", url=url)
        if on_disconnect:
            await on_disconnect()

    async def error(exc: Exception) -> None:
        nonlocal refusals, last_error
        if not _refusal(exc):
            log.debug("bus error", error=str(exc))
            if not refusals:  # once refused, the server's close after its -ERR (a reset) is the same refusal
                last_error = str(exc) or type(exc).__name__
                return
        else:
            last_error = str(exc) or type(exc).__name__
        refusals += 1
        client.options["reconnect_time_wait"] = refused_wait(refusals)
        if refusals == 1:
            log.warning("bus refused our credentials", url=url, user=user, error=last_error,
                        why="revoked, expired or unknown (`isthmus proxy credentials list` shows a proxy's), or the "
                            "auth service is not answering", retry_every_max_s=REFUSED_WAIT_MAX)

    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    while True:
        remaining = None if deadline is None else max(0.5, deadline - loop.time())
        try:
            # nats-py retries a first connect forever when reconnects are unlimited: bound it here
            await asyncio.wait_for(client.connect(
                servers=servers(url),
                **connect_options(auth),
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT,
                connect_timeout=2,
                ping_interval=5,
                max_outstanding_pings=2,
                reconnected_cb=reconnected,
                disconnected_cb=disconnected,
                error_cb=error,
            ), remaining)
            client.options["reconnect_time_wait"] = RECONNECT_WAIT
            if refusals:
                log.info("bus credentials accepted", url=url, user=user)
            refusals = 0
            return Bus(client)
        except Exception as exc:
            if deadline is not None and loop.time() > deadline:
                raise BusError(f"cannot reach the bus at {url}: {str(exc) or last_error or type(exc).__name__}") from exc
            client = _Client()
            await asyncio.sleep(RECONNECT_WAIT)
