"""The NATS connection every service and proxy uses, with typed errors and safe handlers.

    BusError
    ├── BusTimeout       no reply within the timeout
    └── NoResponders     nobody subscribes to the subject (the service is not running)

nats-py errors are translated here, once. Payloads are JSON (msgspec), so a script with the `nats`
CLI can read and write every subject. A handler that raises is logged and its message dropped:
one malformed message never kills a receiver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

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


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, type_: type[T]) -> T:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder.decode(data)


Handler = Callable[[bytes], Awaitable[bytes | None]]
Listener = Callable[[bytes], Awaitable[None]]


class Bus:
    """A thin wrapper over one nats-py client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def connected(self) -> bool:
        return self.client.is_connected

    async def publish(self, subject: str, payload: bytes) -> None:
        await self.client.publish(subject, payload)

    async def request(self, subject: str, payload: bytes, timeout: float = 5.0) -> bytes:
        try:
            msg = await self.client.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(f"nothing answers on {subject}: is the service running?") from exc
        except (nats.errors.TimeoutError, asyncio.TimeoutError) as exc:
            raise BusTimeout(f"no reply on {subject} within {timeout:g}s") from exc
        except nats.errors.ConnectionClosedError as exc:
            raise BusError(f"bus connection closed while asking {subject}") from exc
        return msg.data

    async def call(self, subject: str, message: Any, reply_type: type[T], timeout: float = 5.0) -> T:
        return decode(await self.request(subject, encode(message), timeout), reply_type)

    async def serve(self, subject: str, handler: Handler, queue: str = "", concurrency: int = 1) -> Any:
        """Answer requests on subject; the handler's return value is the reply (None: no reply).

        nats-py runs one subscription's callbacks one after another; with concurrency > 1 up to that
        many requests are handled at once (for handlers that wait on etcd, like the registry's)."""

        async def answer(msg: Msg) -> None:
            try:
                reply = await handler(msg.data)
            except Exception as exc:  # a bad request must not kill the service
                log.warning("request dropped", subject=subject, error=str(exc))
                reply = encode({"ok": False, "error": f"malformed request on {subject}: {exc}"})
            if reply is not None and msg.reply:
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


async def connect(
    url: str,
    name: str,
    *,
    wait: float | None = 30.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
) -> Bus:
    """Connect, retrying until `wait` seconds pass (None: forever); reconnects forever afterwards."""

    async def reconnected() -> None:
        log.info("bus reconnected", url=url)
        if on_reconnect:
            await on_reconnect()

    async def disconnected() -> None:
        if held and (held[0].is_draining or held[0].is_closed):
            return  # our own close(), not an outage
        log.warning("bus disconnected", url=url)
        if on_disconnect:
            await on_disconnect()

    async def error(exc: Exception) -> None:
        log.debug("bus error", error=str(exc))

    held: list[Client] = []
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    while True:
        remaining = None if deadline is None else max(0.5, deadline - loop.time())
        try:
            # nats-py retries a first connect forever when reconnects are unlimited: bound it here
            client = await asyncio.wait_for(nats.connect(
                servers=[url],
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                connect_timeout=2,
                ping_interval=5,
                max_outstanding_pings=2,
                reconnected_cb=reconnected,
                disconnected_cb=disconnected,
                error_cb=error,
            ), remaining)
            held.append(client)
            return Bus(client)
        except Exception as exc:
            if deadline is not None and loop.time() > deadline:
                raise BusError(f"cannot reach the bus at {url}: {exc}") from exc
            await asyncio.sleep(0.25)
