"""The tracing stage of one listener side, on the hot path: what a request head's trace headers become.

    Tracer.begin(found, headers) -> (extra, rebuilt, state)    once per request head (proxy/http/server.py)
    end_trace(head, upstream, status, flag, bytes_sent)        once per exchange end (proxy/http/telemetry.py)

`found` is what the server's one header loop noted: {name: first value} of the TRACE_HEADERS the head held,
or None when it held none. The answer says how the head goes upstream:
- PASS (None, None, None): unchanged, as received. Every request that arrives with a decision not to
  sample, every request on a side the Telemetry mode leaves out, every sampled request when reporting is off.
  Cost: the header loop's notes and two dict lookups (inline in `begin`), no allocation past the notes.
- `extra`: header lines (bytes, CRLF-terminated) to splice in before the blank line, as x-request-id is,
  the same headers appended to `headers`: a request without any context. The first sidecar decides and
  propagates the decision: unsampled, `traceparent` (flags 00) and `x-b3-sampled: 0` (B3 lets a decision
  travel without ids; W3C needs ids: a new random trace id and span id); sampled, `traceparent` and the
  x-b3 trace/span/sampled set, the span's own ids, and a span is built (below).
- `rebuilt`: a new header list (the trace headers replaced, written in the formats that came in): a
  sampled request whose context is received (the span's own id goes on as the parent of the next hop, as
  Envoy's Zipkin tracer with shared_span_context false, which Istio sets), an undecided one (B3 without a
  sampled state), a malformed one (a new trace; its tracestate dropped). Only these rebuild the head.
- `state`: a SpanState, set as RequestHead.trace, for a request this side reports a span of; None else.

With no context at all the formats written are traceparent and B3 multi both: apps instrumented with
OpenTelemetry read the first, Zipkin/Brave ones the second (Envoy's Zipkin tracer writes the same pair with
USE_B3_WITH_W3C_PROPAGATION); `b3` single is written only when it came in.
"""

from __future__ import annotations

import binascii
import os
import random
import re
import struct
import time
from collections.abc import Iterator
from itertools import repeat
from typing import TYPE_CHECKING

from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry.sampling import SidePolicy
from proxy.telemetry.spans import SpanSite, build_span
from proxy.telemetry.trace_context import (
    B3, B3_FLAGS, B3_MULTI, B3_SAMPLED, TRACEPARENT, TRACESTATE, W3C, SpanContext, extract, header_lines,
)

if TYPE_CHECKING:
    from proxy.telemetry.span_reporter import SpanReporter

Answer = tuple[bytes | None, list[tuple[bytes, bytes]] | None, "SpanState | None"]
PASS: Answer = (None, None, None)
NEW_FORMATS = W3C | B3_MULTI

_bits = random.getrandbits
_random = random.random
_now = time.time
_clock = time.monotonic


def new_span_id() -> str:
    while True:
        value = _bits(64)
        if value:
            return "%016x" % value


def new_trace_id() -> str:
    while True:
        value = _bits(128)
        if value:
            return "%032x" % value


class SpanState:
    """A span this side builds when the exchange ends: its context (own ids, parent), when it began (unix
    microseconds and the monotonic clock), and the side that reports it. RequestHead.trace holds it."""

    __slots__ = ("tracer", "context", "timestamp", "t0", "done")

    def __init__(self, tracer: Tracer, context: SpanContext) -> None:
        self.tracer = tracer
        self.context = context
        self.timestamp = int(_now() * 1_000_000)
        self.t0 = _clock()
        self.done = False

    @property
    def trace_id(self) -> str:
        return self.context.trace_id


class Tracer:
    """One listener side (kind CLIENT: outbound, SERVER: inbound). `policy` is replaced on each push
    (proxy/main.py), `reporter` receives the finished spans (None: none are built)."""

    __slots__ = ("site", "policy", "reporter")

    def __init__(self, site: SpanSite, policy: SidePolicy | None = None, reporter: SpanReporter | None = None) -> None:
        self.site = site
        self.policy = policy or SidePolicy()
        self.reporter = reporter

    def begin(self, found: dict[bytes, bytes] | None, headers: list[tuple[bytes, bytes]]) -> Answer:
        policy = self.policy
        if not policy.enabled:
            return PASS
        if found is None:  # no context: this sidecar starts the trace
            if _random() < policy.ratio:  # SidePolicy.decide, inline
                return self._start(headers, True, policy.report)
            drawn = next(_drawn, None)  # the 99%: _unsampled, inline
            if drawn is None:
                return _unsampled(headers)
            answer, pair = drawn
            headers += pair
            return answer
        # the common unsampled contexts, read without parsing (see _TRACEPARENT_UNSAMPLED); the first is answered
        # by the listener itself too (proxy/http/server.py on_headers_complete): change both together
        if found.get(B3_SAMPLED) == b"0":
            if B3 not in found and B3_FLAGS not in found:
                return PASS
        elif len(found) == 1:
            traceparent = found.get(TRACEPARENT)
            if traceparent is not None and _TRACEPARENT_UNSAMPLED(traceparent) is not None:
                return PASS
        return self._received(found, headers, policy)

    def _start(self, headers: list[tuple[bytes, bytes]], sampled: bool, report: bool) -> Answer:
        """A new trace on a request without context: header lines to splice, and the span's state."""
        if not sampled:
            return _unsampled(headers)
        ctx = SpanContext(new_trace_id(), new_span_id(), None, True)
        lines = header_lines(ctx, NEW_FORMATS)
        headers.extend(lines)
        extra = b"".join(b"%s: %s\r\n" % line for line in lines)
        return extra, None, (SpanState(self, ctx) if report and self.reporter is not None else None)

    def _received(self, found: dict[bytes, bytes], headers: list[tuple[bytes, bytes]], policy: SidePolicy) -> Answer:
        """A request that carried trace headers (found), not the plain `not sampled` begin passes."""
        got = extract(found)
        sampled = got.sampled
        if sampled is False:
            return PASS  # decided: it travels on as it came, malformed parts and all
        reporting = policy.report and self.reporter is not None
        parent = got.context
        if sampled and not reporting:
            return PASS  # the decision travels as it came; no span of ours joins the trace
        if sampled is None:
            sampled = policy.decide()
        kept = [h for h in headers if h[0] not in found]
        if parent is None:  # a decision without ids, malformed context, or nothing usable: a new trace
            kept = [h for h in kept if h[0] != TRACESTATE]
            if not sampled:
                self._start(kept, False, False)  # its lines go to `kept`; the head is rebuilt anyway
                return None, kept, None
            ctx = SpanContext(new_trace_id(), new_span_id(), None, True, got.debug)
            formats = got.formats or NEW_FORMATS
            state = SpanState(self, ctx) if reporting else None
        elif sampled and reporting:  # a child of the received span
            ctx = SpanContext(parent.trace_id, new_span_id(), parent.span_id, True, got.debug)
            formats = got.formats
            state = SpanState(self, ctx)
        else:  # undecided on arrival, decided here: the same ids go on with the decision
            parent.sampled = sampled
            ctx, formats, state = parent, got.formats, None
        if not formats & W3C and TRACEPARENT in found:  # a malformed traceparent: its tracestate goes with it
            kept = [h for h in kept if h[0] != TRACESTATE]
        kept.extend(header_lines(ctx, formats))
        return None, kept, state


_UNSAMPLED = b"traceparent: 00-%s-%s-00\r\nx-b3-sampled: 0\r\n"
_B3_UNSAMPLED = (B3_SAMPLED, b"0")
# The common unsampled contexts `begin` passes without parsing: as sidecars propagate it, `x-b3-sampled: 0`
# without `b3` or debug flags (it decides for every format: B3 is read first, as Envoy does); as OpenTelemetry
# apps send it, a lone traceparent with its sampled flag off: a valid version-00 traceparent whose sampled
# flag is off (ids not all zeros), in one C-level match
_TRACEPARENT_UNSAMPLED = re.compile(
    rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][02468ace][ \t]*").fullmatch

# A new unsampled context's lines, made in batches: one os.urandom draw of DRAWN id pairs (a 128-bit trace id
# and a 64-bit span id each: random, unpredictable, unique as W3C asks), hex-encoded and laid into DRAWN copies
# of the lines by C calls (struct splits, one %-format), so a request takes a ready answer. Two int draws and
# two int formats per request cost ~7k instructions, the batch ~3.5k per request (callgrind, `begin` alone).
# A forked child drops its parent's batch: it must not repeat its ids.
DRAWN = 64
_LINE = len(_UNSAMPLED % (b"0" * 32, b"0" * 16))
_IDS = struct.Struct("32s16s" * DRAWN).unpack  # the hex of one draw -> trace id, span id, trace id ...
_LINES = struct.Struct(f"{_LINE}s" * DRAWN).unpack  # DRAWN lines -> each one's bytes
_VALUES = struct.Struct(f"13x55s{_LINE - 68}x" * DRAWN).unpack  # -> each one's traceparent value
_ZERO = bytes(8)
_NONE, _NAME, _B3 = repeat(None), repeat(TRACEPARENT), repeat(_B3_UNSAMPLED)
_entropy = os.urandom
_Drawn = Iterator[tuple[Answer, tuple[tuple[bytes, bytes], tuple[bytes, bytes]]]]


def _draw() -> _Drawn:
    """The next DRAWN unsampled contexts, each `begin`'s answer (lines, None, None) and the two headers it adds;
    an all-zero id (2**-64 per span id) becomes ...01, as W3C forbids zeros."""
    drawn = _entropy(24 * DRAWN)
    ids = _IDS(binascii.hexlify(drawn))
    if _ZERO in drawn:  # almost never (eight zero bytes in a row): fix exactly the ids that are all zeros
        ids = tuple(i if i.strip(b"0") else i[:-1] + b"1" for i in ids)
    lines = (_UNSAMPLED * DRAWN) % ids
    return zip(zip(_LINES(lines), _NONE, _NONE), zip(zip(_NAME, _VALUES(lines)), _B3))


_drawn: _Drawn = iter(())


def _forget_drawn() -> None:
    global _drawn
    _drawn = iter(())


os.register_at_fork(after_in_child=_forget_drawn)


def _unsampled(headers: list[tuple[bytes, bytes]]) -> Answer:
    """A new trace not sampled: its lines (traceparent with fresh random ids and flags 00, x-b3-sampled: 0)
    to splice, the same two headers appended to `headers`."""
    global _drawn
    drawn = next(_drawn, None)
    if drawn is None:
        _drawn = _draw()
        drawn = next(_drawn)
    answer, pair = drawn
    headers += pair
    return answer


def end_trace(head: RequestHead, upstream: Target | None, status: int, flag: str, bytes_sent: int) -> None:
    """The exchange of `head` ended (its RequestHead.trace is a SpanState): build its span and hand it to the
    reporter. Runs once per span: a second end does nothing."""
    state = head.trace
    if not isinstance(state, SpanState) or state.done:
        return
    state.done = True
    tracer = state.tracer
    reporter = tracer.reporter
    if reporter is None:
        return
    duration = max(1, int((_clock() - state.t0) * 1_000_000))
    reporter.add(build_span(tracer.site, tracer.policy, state.context, state.timestamp, duration, head, upstream,
                            status, flag, bytes_sent))
