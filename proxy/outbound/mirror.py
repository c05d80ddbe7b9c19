"""Istio's mirror / mirrorPercentage / mirrors of one rule: a fire-and-forget copy of the request.

Compiled once per rule. The copy is what goes upstream (after rewrite and header operations) with its
Host suffixed `-shadow` before any port (`reviews:9080` -> `reviews-shadow:9080`), as Envoy does, and
`connection: close`. It is sent to an endpoint of the mirror cluster picked by that cluster's balancer
once the whole request is in hand, on its own connection; its response is read and dropped. The
primary request never waits for it and never sees its failures. Bounded: requests whose body exceeds
MAX_BODY are not mirrored, at most MAX_IN_FLIGHT copies per process are in flight (more are dropped),
each cut after TIMEOUT seconds, and at most MAX_IN_FLIGHT requests per process may be collecting a copy of
their body at once (the exchange frees that entry on every way a request ends).
"""

from __future__ import annotations

import asyncio
from random import random
from typing import Any

from proto import xds
from proxy.core.tls_refusal import close_refused, connect_tls

MAX_BODY = 64 * 1024
MAX_IN_FLIGHT = 64
TIMEOUT = 10.0
Header = tuple[bytes, bytes]


class MirrorPolicy:
    __slots__ = ("targets",)

    def __init__(self, mirrors: list[xds.MirrorPolicy]) -> None:
        for m in mirrors:
            if not 0.0 <= m.percent <= 100.0:
                raise ValueError(f"mirror percentage {m.percent:g} is not within 0..100")
        self.targets = tuple((m.host, m.subset or "", m.port, m.percent / 100.0) for m in mirrors)

    def chosen(self) -> list[tuple[str, str, int | None]]:
        """The mirrors this request goes to (each decided with its own random draw)."""
        return [(host, subset, port) for host, subset, port, ratio in self.targets
                if ratio >= 1.0 or (ratio > 0.0 and random() < ratio)]


def shadow_host(value: bytes) -> bytes:
    if value.startswith(b"["):
        end = value.find(b"]")
        return value[:end + 1] + b"-shadow" + value[end + 1:] if end >= 0 else value + b"-shadow"
    host, sep, port = value.rpartition(b":")
    if sep and port.isdigit():
        return host + b"-shadow:" + port
    return value + b"-shadow"


def shadow_headers(headers: list[Header]) -> list[Header]:
    out = [(n, shadow_host(v)) if n == b"host" else (n, v) for n, v in headers if n != b"connection"]
    out.append((b"connection", b"close"))
    return out


class PendingCopy:
    """A copy waiting for the rest of its request body."""

    __slots__ = ("targets", "parts", "size")

    def __init__(self, targets: list[tuple[str, int, Any]], parts: list[bytes]) -> None:
        self.targets = targets
        self.parts = parts
        self.size = 0

    def add(self, data: bytes) -> bool:
        """False once the body is over MAX_BODY: the copy is given up."""
        self.size += len(data)
        if self.size > MAX_BODY:
            return False
        self.parts.append(data)
        return True

    def send(self) -> None:
        data = b"".join(self.parts)
        for address, port, tls in self.targets:
            Shadows.send(address, port, data, tls)


class _Sink(asyncio.Protocol):
    """Writes the copy and drops whatever comes back; `done` resolves when the connection is gone."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.hold = False  # with TLS: written only once the peer's identity is checked (release)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        if not self.hold:
            transport.write(self.data)

    def release(self, transport: Any) -> None:
        transport.write(self.data)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Shadows:
    """Counts of the copies this process sent (for tests and the admin page).

    Each copy holds one of MAX_IN_FLIGHT slots from `send` until its task ends, and the task gives it
    back in a `finally`, so every way a copy can end (connect refused, reset while uploading, the
    TIMEOUT over connect and exchange, a response, cancellation at shutdown) frees the slot.
    """

    in_flight = 0
    sent = 0
    dropped = 0
    failed = 0  # copies that could not be delivered (connect failure, timeout): a stat

    @classmethod
    def send(cls, address: str, port: int, data: bytes, tls: Any = None) -> None:
        """`tls`: the endpoint's TLS origination (proxy/tls/origination.TlsOrigination), None for plaintext."""
        if cls.in_flight >= MAX_IN_FLIGHT:
            cls.dropped += 1
            return
        cls.in_flight += 1
        cls.sent += 1
        asyncio.ensure_future(cls._deliver(address, port, data, tls))

    @classmethod
    async def _deliver(cls, address: str, port: int, data: bytes, tls: Any = None) -> None:
        transport = None
        try:
            async with asyncio.timeout(TIMEOUT):  # one bound over connect, upload and response
                sink = _Sink(data)
                loop = asyncio.get_running_loop()
                if tls is None:
                    transport, _ = await loop.create_connection(lambda: sink, address, port)
                else:  # as the primary goes: mutual TLS, the peer's SPIFFE ID checked before the copy is written
                    context = tls.context()
                    if context is None:
                        raise OSError("no workload certificate yet for mutual TLS")
                    sink.hold = True
                    transport, _ = await connect_tls(loop, lambda: sink, address, port, context, tls.sni or None)
                    try:
                        tls.check(transport.get_extra_info("ssl_object"), f"{address}:{port}")
                    except OSError:
                        close_refused(transport)  # close_notify, bounded (proxy/core/tls_refusal.py)
                        transport = None
                        raise
                    sink.release(transport)
                await sink.done
        except (OSError, TimeoutError):
            cls.failed += 1
        finally:
            cls.in_flight -= 1
            if transport is not None:
                transport.abort()  # a no-op once closed; cuts a copy the timeout gave up on


def from_rule(rule: xds.HttpRule) -> MirrorPolicy | None:
    return MirrorPolicy(rule.mirrors) if rule.mirrors else None
