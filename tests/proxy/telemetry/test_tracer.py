"""The tracing stage on the listener's hot path (proxy/telemetry/tracer.py, proxy/http/server.py): what a
head's trace headers become upstream, which requests make spans, and how the client and server spans of
one call link. Driven without sockets (the listener protocol and a pooled upstream connection on recording
transports: tests/proxy/test_head_as_received.py)."""

from __future__ import annotations

from proto.xds import FaultPolicy, HttpRule, WeightedDestination
from proxy.telemetry.sampling import CLIENT, SERVER, SidePolicy
from proxy.telemetry.span_reporter import SpanReporter
from proxy.telemetry.spans import site_for
from proxy.telemetry.trace_context import extract
from proxy.telemetry.tracer import Tracer
from tests.proxy.test_head_as_received import FQDN, ID, Side, get, rebuilt

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def traced(kind: str = CLIENT, percent: float = 100.0, rule: HttpRule | None = None,
           **policy: object) -> tuple[Side, SpanReporter]:
    side = Side(rule)
    reporter = SpanReporter("proxy-1", "isthmus.telemetry.spans.default.sa")
    site = site_for(kind, service="reviews", namespace="default", labels={"app": "reviews", "version": "v1"},
                    workload="reviews-v1", node_id="proxy-1", address="10.0.0.1", service_port=9080,
                    domain_suffix="svc.cluster.local", mesh_id="cluster.local")
    enabled = bool(policy.pop("enabled", True))
    side.proto.shared.tracer = Tracer(site, SidePolicy(enabled, percent, **policy), reporter)  # type: ignore[arg-type]
    return side, reporter


def headers_of(head: bytes) -> dict[bytes, bytes]:
    lines = head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}


def context_of(head: bytes):  # type: ignore[no-untyped-def]
    return extract({k: v for k, v in headers_of(head).items() if k != b"tracestate"})


async def test_an_unsampled_request_with_a_context_goes_upstream_exactly_as_received():
    for percent in (0.0, 100.0):  # an incoming decision is honoured whatever the sampling percentage
        side, reporter = traced(percent=percent)
        for extra in (b"traceparent: 00-%s-%s-00\r\nx-b3-sampled: 0\r\n" % (TRACE.encode(), SPAN.encode()),
                      b"traceparent: 00-%s-%s-00\r\n" % (TRACE.encode(), SPAN.encode()),
                      b"b3: 0\r\n", b"x-b3-sampled: 0\r\n"):
            request = get(extra=extra)
            assert side.send(request) == [request]
        assert not reporter.spans


async def test_a_request_without_context_gets_the_decision_spliced_in_as_received_otherwise():
    side, reporter = traced(percent=0.0)
    (head,) = side.send(get())
    assert not rebuilt(head) and head.startswith(get()[:-2])  # the client's head, then the added lines
    added = headers_of(head)
    assert added[b"x-b3-sampled"] == b"0" and added[b"traceparent"].endswith(b"-00")
    got = context_of(head)
    assert got.sampled is False and got.context is not None and not got.malformed
    assert not reporter.spans
    # with no x-request-id either, both are spliced in, once each
    (head,) = side.send(get().replace(ID, b""))
    assert not rebuilt(head) and head.count(b"x-request-id: ") == 1 and head.count(b"traceparent: ") == 1


async def test_the_first_sidecar_decides_to_sample_and_its_span_is_the_context_it_sends():
    side, reporter = traced(percent=100.0)
    (head,) = side.send(get())
    assert not rebuilt(head)  # spliced, as x-request-id is
    got = context_of(head)
    assert got.sampled is True and got.formats == 3  # traceparent and B3 multi, both
    (span,) = reporter.spans
    assert (span.trace_id, span.id, span.parent_id, span.kind) == (got.context.trace_id, got.context.span_id,
                                                                   None, "CLIENT")
    assert len(span.trace_id) == 32 and len(span.id) == 16  # 128-bit trace ids, as Istio configures Envoy


async def test_an_incoming_sampled_flag_is_honoured_at_zero_percent_and_the_span_is_a_child():
    side, reporter = traced(percent=0.0)
    request = get(extra=b"traceparent: 00-%s-%s-01\r\ntracestate: congo=t61rcWkgMzE\r\n" % (TRACE.encode(),
                                                                                          SPAN.encode()))
    (head,) = side.send(request)
    (span,) = reporter.spans
    assert (span.trace_id, span.parent_id) == (TRACE, SPAN) and span.id != SPAN
    sent = headers_of(head)
    # the format that came in goes on, with this span as the parent of the next hop; tracestate untouched
    assert sent[b"traceparent"] == b"00-%s-%s-01" % (TRACE.encode(), span.id.encode())
    assert sent[b"tracestate"] == b"congo=t61rcWkgMzE"
    assert b"x-b3-traceid" not in sent and b"b3" not in sent
    assert head.count(b"traceparent") == 1


async def test_b3_single_and_multi_are_written_back_in_the_format_that_came_in():
    side, reporter = traced(percent=0.0)
    (head,) = side.send(get(extra=b"b3: %s-%s-1\r\n" % (TRACE.encode(), SPAN.encode())))
    span = reporter.spans[-1]
    assert headers_of(head)[b"b3"] == b"%s-%s-1-%s" % (TRACE.encode(), span.id.encode(), SPAN.encode())
    assert b"traceparent" not in headers_of(head)
    (head,) = side.send(get(extra=b"X-B3-TraceId: %s\r\nX-B3-SpanId: %s\r\nX-B3-Sampled: 1\r\n"
                            % (TRACE.encode(), SPAN.encode())))
    span = reporter.spans[-1]
    sent = headers_of(head)
    assert (sent[b"x-b3-traceid"], sent[b"x-b3-spanid"], sent[b"x-b3-parentspanid"], sent[b"x-b3-sampled"]) == (
        TRACE.encode(), span.id.encode(), SPAN.encode(), b"1")
    assert head.lower().count(b"x-b3-spanid") == 1  # replaced, not added


async def test_an_undecided_b3_context_gets_this_sidecars_decision_with_the_same_ids():
    side, reporter = traced(percent=0.0)
    (head,) = side.send(get(extra=b"x-b3-traceid: %s\r\nx-b3-spanid: %s\r\n" % (TRACE.encode(), SPAN.encode())))
    sent = headers_of(head)
    assert (sent[b"x-b3-traceid"], sent[b"x-b3-spanid"], sent[b"x-b3-sampled"]) == (TRACE.encode(), SPAN.encode(),
                                                                                     b"0")
    assert not reporter.spans


async def test_a_malformed_context_starts_a_new_trace_and_is_never_refused():
    side, reporter = traced(percent=100.0)
    (head,) = side.send(get(extra=b"traceparent: 00-zzzz-01\r\ntracestate: a=b\r\nb3: junk\r\n"))
    assert side.client.data[-1].startswith(b"HTTP/1.1 200")
    sent = headers_of(head)
    assert b"tracestate" not in sent and b"b3" not in sent  # the old trace's state goes with it
    got = context_of(head)
    assert got.sampled is True and not got.malformed
    (span,) = reporter.spans
    assert span.parent_id is None and span.trace_id == got.context.trace_id


async def test_a_side_the_telemetry_mode_leaves_out_adds_and_changes_nothing():
    side, reporter = traced(percent=100.0, enabled=False)
    for request in (get(), get(extra=b"traceparent: 00-%s-%s-01\r\n" % (TRACE.encode(), SPAN.encode()))):
        assert side.send(request) == [request]
    assert not reporter.spans


async def test_with_reporting_disabled_decisions_propagate_and_no_span_is_made():
    side, reporter = traced(percent=100.0, report=False)
    sampled = get(extra=b"traceparent: 00-%s-%s-01\r\n" % (TRACE.encode(), SPAN.encode()))
    assert side.send(sampled) == [sampled]  # our span would not exist: the app's spans join the caller's
    (head,) = side.send(get())
    assert context_of(head).sampled is True
    assert not reporter.spans


async def test_client_span_server_span_and_the_apps_next_client_span_link_up():
    client, client_spans = traced(CLIENT, percent=100.0)
    server, server_spans = traced(SERVER, percent=0.0)
    onward, onward_spans = traced(CLIENT, percent=0.0)
    (out,) = client.send(get())  # the caller's app sends no context: its sidecar starts the trace
    (into_app,) = server.send(out)  # the callee's sidecar receives what the caller's sent
    forwarded = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers_of(into_app).items()
                         if k.startswith(b"x-b3-") or k == b"traceparent")
    onward.send(get(b"/next", forwarded))  # the app forwards the trace headers on its own call
    (c,), (s,), (n,) = client_spans.spans, server_spans.spans, onward_spans.spans
    assert c.trace_id == s.trace_id == n.trace_id
    assert (c.parent_id, s.parent_id, n.parent_id) == (None, c.id, s.id)
    assert (c.kind, s.kind, n.kind) == ("CLIENT", "SERVER", "CLIENT")


async def test_the_span_ends_with_the_exchange_and_a_5xx_is_an_error():
    side, reporter = traced(percent=100.0)
    side.proto.data_received(get())
    assert not reporter.spans  # not before the response
    side.upstream.data.clear()
    side.conn.data_received(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    (span,) = reporter.spans
    assert span.tags["http.status_code"] == "500" and span.tags["error"] == "true"
    assert span.duration is not None and span.duration >= 1 and span.timestamp > 1_600_000_000_000_000


async def test_a_local_answer_ends_the_span_too():
    abort = HttpRule(destinations=[WeightedDestination(host=FQDN)],
                     fault=FaultPolicy(abort_status=418, abort_percent=100.0))
    side, reporter = traced(percent=100.0, rule=abort)
    side.proto.data_received(get())  # answered by the sidecar: nothing goes upstream
    assert side.client.data[-1].startswith(b"HTTP/1.1 418") and not side.upstream.data
    (span,) = reporter.spans
    assert span.tags["http.status_code"] == "418" and span.tags["response_flags"] == "FI" and "error" not in span.tags


async def test_the_unsampled_fast_path_takes_only_a_valid_traceparent():
    side, reporter = traced(percent=100.0)
    for bad in (f"00-{'0' * 32}-{SPAN}-00", f"00-{TRACE}-{'0' * 16}-00", f"00-{TRACE.upper()}-{SPAN}-00",
                f"00-{TRACE}-{SPAN}-00-more"):
        (head,) = side.send(get(extra=b"traceparent: %s\r\n" % bad.encode()))
        got = context_of(head)  # malformed: a new trace, decided here (100%), never the bad value passed on
        assert got.sampled is True and got.context.trace_id != TRACE and bad.encode() not in head
    assert len(reporter.spans) == 4


async def test_a_head_rebuilt_for_another_reason_carries_the_new_context_too():
    side, reporter = traced(percent=0.0)
    (head,) = side.send(get(extra=b"Connection: keep-alive\r\n"))  # a hop-by-hop header: rebuilt from the list
    assert rebuilt(head) and b"connection" not in head.lower()
    sent = headers_of(head)
    assert sent[b"x-b3-sampled"] == b"0" and context_of(head).context is not None
    assert head.count(b"traceparent") == 1


async def test_the_unsampled_new_context_lines_have_one_exact_shape_and_fresh_ids(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import re

    from proxy.telemetry import tracer

    shape = re.compile(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-00\r\nx-b3-sampled: 0\r\n")
    side, reporter = traced(percent=0.0)
    seen = set()
    for _ in range(150):  # more than two batches of drawn ids (tracer.DRAWN)
        (head,) = side.send(get())
        # the client's head as sent, then exactly the two lines, then the blank line
        assert head.startswith(get()[:-2]) and head.endswith(b"\r\n\r\n")
        found = shape.fullmatch(head[len(get()) - 2:-2])
        assert found is not None
        trace_id, span_id = found.groups()
        assert trace_id != b"0" * 32 and span_id != b"0" * 16
        seen.add((trace_id, span_id))
    assert len(seen) == 150 and len({t for t, _ in seen}) == 150 and len({s for _, s in seen}) == 150
    assert not reporter.spans
    # the header list carries the same two headers the lines splice in (a later stage may rebuild from it)
    headers: list[tuple[bytes, bytes]] = []
    extra, rebuilt_list, state = tracer.Tracer(side.proto.shared.tracer.site, SidePolicy(True, 0.0)).begin(
        None, headers)
    assert rebuilt_list is None and state is None and extra is not None and shape.fullmatch(extra)
    assert headers == [(b"traceparent", extra[13:68]), (b"x-b3-sampled", b"0")]
    # a draw of all zeros still writes valid, non-zero ids (...01, as before); the largest ids keep their width;
    # only an id that is all zeros is changed
    some = bytes(range(1, 25))
    for draw, trace_id, span_id in ((bytes, b"0" * 31 + b"1", b"0" * 15 + b"1"),
                                    (lambda n: b"\xff" * n, b"f" * 32, b"f" * 16),
                                    (lambda n: (bytes(16) + some[:8]) * (n // 24), b"0" * 31 + b"1", some[:8].hex().encode()),
                                    (lambda n: (some[:16] + bytes(8)) * (n // 24), some[:16].hex().encode(), b"0" * 15 + b"1")):
        monkeypatch.setattr(tracer, "_entropy", draw)
        monkeypatch.setattr(tracer, "_drawn", iter(()))  # the batch drawn before
        for _ in range(tracer.DRAWN + 1):  # through a whole batch and into the next
            extra, _, _ = tracer.Tracer(side.proto.shared.tracer.site, SidePolicy(True, 0.0)).begin(None, [])
            found = shape.fullmatch(extra)  # type: ignore[arg-type]
            assert found is not None and found[1] == trace_id and found[2] == span_id


def test_a_forked_child_never_repeats_its_parents_unsampled_ids() -> None:
    from proxy.telemetry import tracer
    from tests.proxy.fork_helpers import from_forked_child

    side = tracer.Tracer(site_for(CLIENT, service="reviews", namespace="default", labels={}, workload="reviews-v1",
                                  node_id="proxy-1", address="10.0.0.1", service_port=9080,
                                  domain_suffix="svc.cluster.local", mesh_id="cluster.local"), SidePolicy(True, 0.0))
    side.begin(None, [])  # a batch is drawn, most of it still to be used
    got = from_forked_child(lambda: b"".join(side.begin(None, [])[0] for _ in range(tracer.DRAWN)))  # type: ignore[misc]
    mine = b"".join(side.begin(None, [])[0] for _ in range(tracer.DRAWN))  # type: ignore[misc]
    assert len(got) == len(mine) and got.count(b"traceparent") == tracer.DRAWN
    assert not {line for line in got.split(b"\r\n") if line.startswith(b"traceparent")} & {
        line for line in mine.split(b"\r\n") if line.startswith(b"traceparent")}


def test_what_the_listener_passes_without_calling_begin_is_what_begin_passes() -> None:
    # proxy/http/server.py answers a propagated "not sampled" (x-b3-sampled: 0 without b3 or x-b3-flags) itself;
    # begin must answer PASS for exactly such notes, whatever the policy (on, off, 100%, not reporting)
    from proxy.telemetry.tracer import PASS

    site = site_for(SERVER, service="reviews", namespace="default", labels={}, workload="reviews-v1",
                    node_id="proxy-1", address="10.0.0.1", service_port=9080, domain_suffix="svc.cluster.local",
                    mesh_id="cluster.local")
    parent = f"00-{TRACE}-{SPAN}-01".encode()
    for policy in (SidePolicy(True, 100.0), SidePolicy(False, 100.0), SidePolicy(True, 0.0)):
        tracer = Tracer(site, policy, SpanReporter("proxy-1", "s"))
        for found in ({b"x-b3-sampled": b"0"}, {b"x-b3-sampled": b"0", b"traceparent": parent},
                      {b"x-b3-sampled": b"0", b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": SPAN.encode()}):
            headers: list[tuple[bytes, bytes]] = list(found.items())
            assert tracer.begin(dict(found), headers) is PASS and headers == list(found.items())


async def test_a_propagated_unsampled_decision_with_b3_flags_is_still_the_tracers_to_read() -> None:
    # x-b3-flags: 1 (debug) beside x-b3-sampled: 0 is sampled (B3): the listener must not pass it itself
    side, reporter = traced(percent=0.0)
    side.send(get(extra=b"x-b3-traceid: %s\r\nx-b3-spanid: %s\r\nx-b3-sampled: 0\r\nx-b3-flags: 1\r\n"
                  % (TRACE.encode(), SPAN.encode())))
    (span,) = reporter.spans
    assert (span.trace_id, span.parent_id) == (TRACE, SPAN)
