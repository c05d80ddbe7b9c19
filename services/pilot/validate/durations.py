"""Istio durations: what its YAML accepts, parsed once for validation and for the compilers.

    parse_duration("1m30s") -> 90_000_000_000 (ns)      raises ValueError
    to_ms("250ms") -> 250                               (a duration that passed validation)
    duration_ms(text, path, f, allow_zero) -> ms | None (records an error in `f` when invalid)

Go's time.ParseDuration, as protobuf jsonpb reads a Duration: decimal numbers with units h, m, s, ms,
us, ns, e.g. "1.5s", "250ms", "1m30s". Istio requires at least 1 ms and whole milliseconds; a field that
allows zero ("0s" on a route's `timeout`: no timeout, Envoy's 0) says so. A leaf: the compilers
(services/pilot/compile/) import it.
"""

from __future__ import annotations

import re

from services.pilot.validate.findings import Findings

_UNIT_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000,
            "us": 1_000, "µs": 1_000, "μs": 1_000, "ns": 1}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Nanoseconds in a Go-format duration; raises ValueError."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0
    if s.startswith("-"):
        raise ValueError(f"duration `{text}` is negative")
    s = s.removeprefix("+")
    pos, total = 0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"`{text}` is not a duration (examples: 1.5s, 250ms, 1m30s)")
        number, unit = m.groups()
        whole, _, frac = number.partition(".")
        scale = _UNIT_NS[unit]
        total += int(whole or 0) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = m.end()
    if not s:
        raise ValueError("duration is empty")
    return total


def to_ms(text: str | None, default: int = 0) -> int:
    """Whole milliseconds of a duration that passed validation; `default` when unset."""
    return parse_duration(text) // 1_000_000 if text else default


def duration_ms(text: str, path: str, f: Findings, allow_zero: bool = False) -> int | None:
    """Milliseconds of a valid Istio duration, else None with an error recorded."""
    try:
        ns = parse_duration(text)
    except ValueError as exc:
        f.error(path, str(exc))
        return None
    if ns == 0 and allow_zero:
        return 0
    if ns < 1_000_000:
        f.error(path, f"duration `{text}` must be at least 1ms")
        return None
    if ns % 1_000_000:
        f.error(path, f"duration `{text}`: only durations to ms precision are supported")
        return None
    return ns // 1_000_000
