"""Trace context on the wire: W3C Trace Context (`traceparent`, `tracestate`) and B3 (the multi-header
`x-b3-*` form and the single `b3` header), read from and written to request headers.

    extract(found) -> Extracted        found: {lower-case name: first value} of the TRACE_HEADERS a head held
    header_lines(ctx, formats) -> list[tuple[bytes, bytes]]   the headers that carry `ctx` in `formats`

Reading follows Envoy's Zipkin tracer (source/extensions/tracers/zipkin/span_context_extractor.cc) for B3,
and the W3C Trace Context spec (www.w3.org/TR/trace-context/) for traceparent: only the first value of a
header is read (an untrusted header, as Envoy says); the sampling decision is taken from `b3`, else
`x-b3-flags: 1` (debug) / `x-b3-sampled`, else the traceparent's flags; the ids from `b3`, else the
`x-b3-traceid`/`x-b3-spanid` pair, else traceparent. A malformed value of one format is ignored as its spec
says (another valid format still counts; with none, a new trace starts), never an error to the client.
Ids are lower-case hex: trace 32 digits (a 16-digit B3 id is kept as sent), span 16, never all zeros.
"""

from __future__ import annotations

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
B3 = b"b3"
B3_TRACE_ID = b"x-b3-traceid"
B3_SPAN_ID = b"x-b3-spanid"
B3_PARENT_ID = b"x-b3-parentspanid"
B3_SAMPLED = b"x-b3-sampled"
B3_FLAGS = b"x-b3-flags"
# What the sidecar's header loop notes (proxy/http/server.py): every name that carries a context or a
# decision. tracestate is not among them: it only travels with traceparent, as received.
TRACE_HEADERS = frozenset((TRACEPARENT, B3, B3_TRACE_ID, B3_SPAN_ID, B3_PARENT_ID, B3_SAMPLED, B3_FLAGS))

# formats, as bits
W3C = 1
B3_MULTI = 2
B3_SINGLE = 4

_HEX = b"0123456789abcdef"


def _hex_id(value: bytes, *sizes: int) -> str | None:
    """`value` as an id when it is lower-case hex of one of `sizes` digits and not all zeros, else None.
    (B3 and W3C both ask for lower case; Envoy's atoull would take upper case too: we keep to the specs.)"""
    if len(value) not in sizes or value.translate(None, _HEX):
        return None
    text = value.decode("ascii")
    return None if text.strip("0") == "" else text


class SpanContext:
    """One request's context as received or as made: `trace_id` (16 or 32 hex digits), `span_id` (16),
    `parent_id` (16 or None), `sampled` (True / False / None: no decision yet), `debug` (B3's flags 1)."""

    __slots__ = ("trace_id", "span_id", "parent_id", "sampled", "debug")

    def __init__(self, trace_id: str, span_id: str, parent_id: str | None = None, sampled: bool | None = None,
                 debug: bool = False) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.debug = debug

    def __repr__(self) -> str:
        return (f"SpanContext({self.trace_id}, {self.span_id}, parent={self.parent_id}, sampled={self.sampled}, "
                f"debug={self.debug})")


class Extracted:
    """What a request's trace headers said: `context` (ids, None when no format gave valid ids), `sampled`
    (the decision, None without one: B3 lets a decision travel without ids, e.g. `b3: 0`), `debug`,
    `formats` (the bits of the formats whose values were valid), `malformed` (a value was not)."""

    __slots__ = ("context", "sampled", "debug", "formats", "malformed")

    def __init__(self) -> None:
        self.context: SpanContext | None = None
        self.sampled: bool | None = None
        self.debug = False
        self.formats = 0
        self.malformed = False


def parse_traceparent(value: bytes) -> tuple[str, str, bool] | None:
    """(trace id, parent id, sampled) of a W3C traceparent, or None if it is invalid: version 00 exactly
    `00-<32 hex>-<16 hex>-<2 hex>`; a later version (not ff) at least that, more only after a `-` (the spec's
    rule for versions it does not know yet); ids not all zeros; lower case only."""
    if len(value) < 55 or value[2] != 45 or value[35] != 45 or value[52] != 45:  # 45: "-"
        return None
    version = value[:2]
    if version == b"00":
        if len(value) != 55:
            return None
    elif version == b"ff" or version.translate(None, _HEX) or (len(value) > 55 and value[55] != 45):
        return None
    flags = value[53:55]
    if flags.translate(None, _HEX):
        return None
    trace_id = _hex_id(value[3:35], 32)
    span_id = _hex_id(value[36:52], 16)
    if trace_id is None or span_id is None:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def _b3_flag(value: bytes) -> bool | None:
    """A B3 sampling state: 1/0, d (debug: sampled); `true`/`false` as old Zipkin tracers wrote (Envoy reads
    `true`); None for anything else (malformed)."""
    if value == b"1" or value == b"d" or value == b"true":
        return True
    if value == b"0" or value == b"false":
        return False
    return None


def parse_b3_single(value: bytes) -> tuple[SpanContext | None, bool | None, bool] | None:
    """(context or None, sampled or None, debug) of a `b3` header, None if it is malformed: `{0,1,d}` alone,
    or `traceid-spanid[-state[-parentid]]` (openzipkin/b3-propagation's single header)."""
    if len(value) == 1:
        state = _b3_flag(value)
        return None if state is None else (None, state, value == b"d")
    parts = value.split(b"-")
    if len(parts) < 2 or len(parts) > 4:
        return None
    trace_id = _hex_id(parts[0], 16, 32)
    span_id = _hex_id(parts[1], 16)
    if trace_id is None or span_id is None:
        return None
    sampled = None
    debug = False
    parent = None
    if len(parts) >= 3:
        if len(parts[2]) != 1:
            return None
        sampled = _b3_flag(parts[2])
        if sampled is None:
            return None
        debug = parts[2] == b"d"
    if len(parts) == 4:
        parent = _hex_id(parts[3], 16)
        if parent is None:
            return None
    return SpanContext(trace_id, span_id, parent, sampled, debug), sampled, debug


def extract(found: dict[bytes, bytes]) -> Extracted:
    """Read the context of a request whose trace headers (first value each) are `found` (module docstring)."""
    out = Extracted()
    b3 = found.get(B3)
    if b3 is not None:
        single = parse_b3_single(b3.strip())
        if single is None:
            out.malformed = True
        else:
            out.formats |= B3_SINGLE
            out.context, out.sampled, out.debug = single
    trace = found.get(B3_TRACE_ID)
    span = found.get(B3_SPAN_ID)
    sampled_value = found.get(B3_SAMPLED)
    flags_value = found.get(B3_FLAGS)
    if trace is not None or span is not None or sampled_value is not None or flags_value is not None:
        multi_ok = True
        multi_ctx = None
        if trace is not None or span is not None:
            trace_id = _hex_id(trace.strip(), 16, 32) if trace is not None else None
            span_id = _hex_id(span.strip(), 16) if span is not None else None
            parent = found.get(B3_PARENT_ID)
            parent_id = _hex_id(parent.strip(), 16) if parent is not None and parent.strip() else None
            if trace_id is None or span_id is None or (parent is not None and parent.strip() and parent_id is None):
                multi_ok = False
            else:
                multi_ctx = SpanContext(trace_id, span_id, parent_id)
        debug = flags_value is not None and flags_value.strip() == b"1"
        state = None
        if sampled_value is not None:
            state = _b3_flag(sampled_value.strip())
            if state is None:
                multi_ok = False
        if multi_ok:
            out.formats |= B3_MULTI
            if out.sampled is None:  # b3 wins when it decided
                if debug:
                    out.sampled, out.debug = True, True
                elif state is not None:
                    out.sampled = state
            if out.context is None and multi_ctx is not None:
                out.context = multi_ctx
        else:
            out.malformed = True
    tp = found.get(TRACEPARENT)
    if tp is not None:
        parsed = parse_traceparent(tp.strip())
        if parsed is None:
            out.malformed = True
        else:
            out.formats |= W3C
            trace_id, span_id, sampled = parsed
            if out.sampled is None:
                out.sampled = sampled
            if out.context is None:
                out.context = SpanContext(trace_id, span_id)
    if out.context is not None:
        out.context.sampled = out.sampled
        out.context.debug = out.debug
    return out


def header_lines(ctx: SpanContext, formats: int) -> list[tuple[bytes, bytes]]:
    """The headers that carry `ctx` (ids and decision: `ctx.sampled` must be set) in each format of
    `formats`: traceparent (a 16-digit trace id left-padded with zeros, as the B3/W3C interop asks), the
    `x-b3-*` set as Envoy's Zipkin tracer writes it (traceid, spanid, parentspanid when there is a parent,
    sampled; `x-b3-flags: 1` instead of sampled when debug), or `b3` (traceid-spanid-state[-parentid])."""
    out: list[tuple[bytes, bytes]] = []
    trace = ctx.trace_id.encode()
    span = ctx.span_id.encode()
    if formats & W3C:
        padded = trace if len(trace) == 32 else b"0" * 16 + trace
        out.append((TRACEPARENT, b"00-%s-%s-%s" % (padded, span, b"01" if ctx.sampled else b"00")))
    if formats & B3_MULTI:
        out.append((B3_TRACE_ID, trace))
        out.append((B3_SPAN_ID, span))
        if ctx.parent_id is not None:
            out.append((B3_PARENT_ID, ctx.parent_id.encode()))
        if ctx.debug:
            out.append((B3_FLAGS, b"1"))
        else:
            out.append((B3_SAMPLED, b"1" if ctx.sampled else b"0"))
    if formats & B3_SINGLE:
        state = b"d" if ctx.debug else b"1" if ctx.sampled else b"0"
        value = b"%s-%s-%s" % (trace, span, state)
        if ctx.parent_id is not None:
            value += b"-" + ctx.parent_id.encode()
        out.append((B3, value))
    return out
