"""Reading and writing trace context (proxy/telemetry/trace_context.py): W3C traceparent, B3 multi and single,
good, malformed and mixed, as the specs and Envoy's Zipkin extractor read them."""

from __future__ import annotations

import pytest

from proxy.telemetry.trace_context import (
    B3_MULTI, B3_SINGLE, W3C, SpanContext, extract, header_lines, parse_b3_single, parse_traceparent,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{SPAN}-01".encode()


def test_a_valid_traceparent_gives_its_ids_and_sampled_flag():
    assert parse_traceparent(TP) == (TRACE, SPAN, True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00".encode()) == (TRACE, SPAN, False)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-03".encode()) == (TRACE, SPAN, True)  # other flag bits kept apart
    # a later version is read by its first fields; more only after a dash (the spec's forward compatibility)
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-future".encode()) == (TRACE, SPAN, True)


@pytest.mark.parametrize("value", [
    f"00-{TRACE}-{SPAN}-01-extra",  # version 00 is exactly 55 characters
    f"00-{TRACE}-{SPAN}-1",  # short
    f"00-{TRACE.upper()}-{SPAN}-01",  # upper case
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
    f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
    f"0g-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-0x",
    f"00_{TRACE}_{SPAN}_01",
    f"01-{TRACE}-{SPAN}-01x",  # a later version: more only after a dash
    "",
    "garbage",
])
def test_a_malformed_traceparent_is_refused(value):
    assert parse_traceparent(value.encode()) is None


@pytest.mark.parametrize("value, trace, parent, sampled, debug", [
    (f"{TRACE}-{SPAN}", TRACE, None, None, False),
    (f"{TRACE}-{SPAN}-1", TRACE, None, True, False),
    (f"{TRACE}-{SPAN}-0", TRACE, None, False, False),
    (f"{TRACE}-{SPAN}-d", TRACE, None, True, True),
    (f"{TRACE}-{SPAN}-1-{PARENT}", TRACE, PARENT, True, False),
    (f"{TRACE[16:]}-{SPAN}-1", TRACE[16:], None, True, False),  # a 64-bit trace id
])
def test_b3_single_with_ids(value, trace, parent, sampled, debug):
    ctx, got_sampled, got_debug = parse_b3_single(value.encode())
    assert (ctx.trace_id, ctx.span_id, ctx.parent_id) == (trace, SPAN, parent)
    assert (got_sampled, got_debug) == (sampled, debug)


@pytest.mark.parametrize("value, sampled", [(b"0", False), (b"1", True), (b"d", True)])
def test_b3_single_may_carry_a_decision_alone(value, sampled):
    assert parse_b3_single(value) == (None, sampled, value == b"d")


@pytest.mark.parametrize("value", [
    "x", "2", f"{TRACE}", f"{TRACE}-{SPAN}-", f"{TRACE}-{SPAN}-x", f"{TRACE}-{SPAN}-1-", f"{TRACE}-{SPAN}-1-zz",
    f"{TRACE}-{SPAN}-{PARENT}", f"{TRACE}-{SPAN[:8]}", f"{TRACE[:20]}-{SPAN}", f"{TRACE}-{SPAN}-1-{PARENT}-1",
])
def test_malformed_b3_single_is_refused(value):
    assert parse_b3_single(value.encode()) is None


def test_b3_multi_gives_ids_decision_and_parent():
    got = extract({b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": SPAN.encode(),
                   b"x-b3-parentspanid": PARENT.encode(), b"x-b3-sampled": b"1"})
    assert (got.context.trace_id, got.context.span_id, got.context.parent_id) == (TRACE, SPAN, PARENT)
    assert got.sampled is True and got.formats == B3_MULTI and not got.malformed


def test_b3_multi_without_a_sampled_state_leaves_the_decision_open():
    got = extract({b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": SPAN.encode()})
    assert got.sampled is None and got.context is not None


@pytest.mark.parametrize("headers, sampled, debug", [
    ({b"x-b3-sampled": b"0"}, False, False),  # B3 lets a decision travel without ids
    ({b"x-b3-sampled": b"true"}, True, False),  # as old Zipkin tracers wrote it (Envoy reads it)
    ({b"x-b3-flags": b"1"}, True, True),  # debug implies sampled
    ({b"x-b3-flags": b"1", b"x-b3-sampled": b"0"}, True, True),
])
def test_b3_multi_decisions(headers, sampled, debug):
    got = extract(headers)
    assert (got.sampled, got.debug, got.context, got.malformed) == (sampled, debug, None, False)


@pytest.mark.parametrize("headers", [
    {b"x-b3-traceid": TRACE.encode()},  # a trace id without a span id
    {b"x-b3-traceid": b"xyz", b"x-b3-spanid": SPAN.encode()},
    {b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": SPAN.encode(), b"x-b3-parentspanid": b"nothex!!nothex!!"},
    {b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": SPAN.encode(), b"x-b3-sampled": b"yes"},
    {b"b3": b"nonsense"},
    {b"traceparent": b"00-nonsense"},
])
def test_malformed_context_alone_gives_nothing_usable(headers):
    got = extract(headers)
    assert got.malformed and got.context is None and got.sampled is None and got.formats == 0


def test_the_b3_header_wins_over_the_others_for_ids_and_decision():
    other = "1" * 32
    got = extract({b"b3": f"{TRACE}-{SPAN}-0".encode(), b"x-b3-traceid": other.encode(),
                   b"x-b3-spanid": SPAN.encode(), b"x-b3-sampled": b"1", b"traceparent": TP})
    assert got.context.trace_id == TRACE and got.sampled is False
    assert got.formats == W3C | B3_MULTI | B3_SINGLE


def test_b3_multi_decides_before_traceparent_and_traceparent_fills_missing_ids():
    got = extract({b"x-b3-sampled": b"0", b"traceparent": TP})
    assert got.sampled is False and got.context.trace_id == TRACE and got.context.span_id == SPAN


def test_a_malformed_format_is_ignored_when_another_is_valid():
    got = extract({b"b3": b"garbage", b"traceparent": TP})
    assert got.malformed and got.formats == W3C and got.sampled is True and got.context.trace_id == TRACE
    got = extract({b"traceparent": b"00-bad", b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": SPAN.encode(),
                   b"x-b3-sampled": b"1"})
    assert got.malformed and got.formats == B3_MULTI and got.sampled is True


def test_trailing_whitespace_is_not_part_of_a_value():
    got = extract({b"traceparent": TP + b"  ", b"x-b3-sampled": b"1 "})
    assert not got.malformed and got.sampled is True


def test_each_format_is_written_as_its_spec_and_envoy_write_it():
    ctx = SpanContext(TRACE, SPAN, PARENT, True)
    assert header_lines(ctx, W3C) == [(b"traceparent", TP)]
    assert header_lines(ctx, B3_MULTI) == [(b"x-b3-traceid", TRACE.encode()), (b"x-b3-spanid", SPAN.encode()),
                                           (b"x-b3-parentspanid", PARENT.encode()), (b"x-b3-sampled", b"1")]
    assert header_lines(ctx, B3_SINGLE) == [(b"b3", f"{TRACE}-{SPAN}-1-{PARENT}".encode())]
    unsampled = SpanContext(TRACE, SPAN, None, False)
    assert header_lines(unsampled, W3C | B3_SINGLE) == [(b"traceparent", f"00-{TRACE}-{SPAN}-00".encode()),
                                                         (b"b3", f"{TRACE}-{SPAN}-0".encode())]
    debug = SpanContext(TRACE, SPAN, None, True, True)
    assert (b"x-b3-flags", b"1") in header_lines(debug, B3_MULTI)
    assert (b"x-b3-sampled", b"1") not in header_lines(debug, B3_MULTI)
    assert header_lines(debug, B3_SINGLE) == [(b"b3", f"{TRACE}-{SPAN}-d".encode())]


def test_a_64_bit_b3_trace_id_is_padded_in_traceparent_and_kept_in_b3():
    ctx = SpanContext(TRACE[16:], SPAN, None, True)
    assert header_lines(ctx, W3C) == [(b"traceparent", f"00-{'0' * 16}{TRACE[16:]}-{SPAN}-01".encode())]
    assert header_lines(ctx, B3_MULTI)[0] == (b"x-b3-traceid", TRACE[16:].encode())


def test_what_is_written_reads_back_the_same():
    ctx = SpanContext(TRACE, SPAN, PARENT, False)
    for formats in (W3C, B3_MULTI, B3_SINGLE):
        got = extract(dict(header_lines(ctx, formats)))
        assert got.formats == formats and got.sampled is False and not got.malformed
        assert (got.context.trace_id, got.context.span_id) == (TRACE, SPAN)
