"""The request deadline and what a handler reads of the request it is handling (runtime/bus_core.py
Bus.serve sets them per request).

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

import contextvars
import time

from runtime.bus_codec import MalformedRequest

DEADLINE_HEADER = "Isthmus-Deadline"
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
