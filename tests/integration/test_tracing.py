"""Distributed tracing across real sidecars on a locked-down plane (docs/tracing.md): a caller's app sends
through its sidecar to productpage, whose app calls reviews and forwards the trace headers, as Istio asks
of apps. The spans arrive on the bus (TELEMETRY_SPANS.<namespace>.<service account>, read here with the
telemetry service's own credentials) and link up: the caller's CLIENT span -> productpage's SERVER span ->
productpage's CLIENT span -> reviews' SERVER span, one trace. Sampling is set as an operator sets the
mesh default, on pilot (ISTHMUS_TRACE_SAMPLING, Istio's PILOT_TRACE_SAMPLING, then a restart), since the
Telemetry resource's compilation is another part of issue 12; an incoming sampled flag is honoured either way.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
import pytest

from proto.observations import Span, SpanBatch
from proto.subjects import TELEMETRY_SPANS
from tests.integration.conftest import ControlPlane, Sidecar, eventually, fqdn
from tests.integration.httpclient import Backend, Client

FAST = {"ISTHMUS_SPAN_FLUSH_INTERVAL": "0.2"}  # spans reach the bus within 0.2 s, not 1 s
FORWARDED = ("x-request-id", "traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
             "x-b3-sampled", "x-b3-flags", "b3")  # what Istio asks an app to forward
_namespaces = itertools.count(1)


class Forwarder(Backend):
    """productpage: for each request, calls reviews through its own sidecar with the trace headers it got."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.outbound_port = 0  # its sidecar's outbound listener, set once that is started
        self.next_host = ""

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        self.requests.append((method, path, headers))
        client = Client("127.0.0.1", self.outbound_port)
        try:
            onward = await client.request("GET", f"http://{self.next_host}:9080/reviews",
                                          {k: v for k, v in headers.items() if k in FORWARDED})
        finally:
            await client.close()
        body = f"{self.name}+{onward.text}".encode()
        writer.write(b"HTTP/1.1 %d OK\r\ncontent-length: %d\r\n\r\n%s" % (onward.status, len(body), body))
        await writer.drain()
        return True


class SpanSink:
    """Every SpanBatch on TELEMETRY_SPANS.>, with its subject, as the telemetry service receives them."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, SpanBatch]] = []

    async def start(self, plane: ControlPlane) -> "SpanSink":
        self.nc = await plane.nats_client("telemetry")

        async def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
            self.batches.append((msg.subject, msgspec.json.decode(msg.data, type=SpanBatch)))
        await self.nc.subscribe(f"{TELEMETRY_SPANS}.>", cb=on_msg)
        await self.nc.flush()
        return self

    def spans(self, trace_id: str) -> list[tuple[str, Span]]:
        return [(subject, span) for subject, batch in self.batches for span in batch.spans if span.trace_id == trace_id]

    async def trace(self, trace_id: str, count: int, timeout: float = 15.0) -> list[tuple[str, Span]]:
        await eventually(lambda: len(self.spans(trace_id)) >= count, timeout)
        return self.spans(trace_id)

    async def stop(self) -> None:
        await self.nc.close()


class Chain:
    """sleep (the caller) -> productpage (forwards) -> reviews, each behind its sidecar, in a namespace of their own."""

    def __init__(self, mesh: ControlPlane) -> None:
        self.mesh = mesh
        self.ns = f"tr{next(_namespaces)}"

    async def start(self) -> "Chain":
        self.reviews = await Backend("reviews").start()
        self.productpage = await Forwarder("productpage").start()
        self.productpage.next_host = "reviews"
        self.sleep = await Backend("sleep").start()
        mesh, ns = self.mesh, self.ns
        self.sides: dict[str, Sidecar] = {
            "reviews": mesh.proxy("reviews", self.reviews.port, 9080, ns, "app=reviews,version=v1",
                                  ("--service-account", "bookinfo-reviews"), env=FAST),
            "productpage": mesh.proxy("productpage", self.productpage.port, 9080, ns, "app=productpage,version=v1",
                                      ("--service-account", "bookinfo-productpage"), env=FAST),
            "sleep": mesh.proxy("sleep", self.sleep.port, 80, ns, "app=sleep", ("--service-account", "sleep"),
                                env=FAST),
        }
        self.productpage.outbound_port = self.sides["productpage"].outbound_port
        await asyncio.gather(*(side.ready(60) for side in self.sides.values()))
        await eventually(lambda: self.sides["sleep"].endpoints(fqdn("productpage", ns)) >= 1, 30)
        await eventually(lambda: self.sides["productpage"].endpoints(fqdn("reviews", ns)) >= 1, 30)
        return self

    async def call(self, headers: dict[str, str] | None = None) -> str:
        """One request from sleep's app through its sidecar; the body says both apps answered."""
        client = Client("127.0.0.1", self.sides["sleep"].outbound_port)
        try:
            response = await client.request("GET", "http://productpage:9080/productpage", headers)
        finally:
            await client.close()
        assert response.status == 200 and response.text == "productpage+reviews", (response.status, response.text)
        return response.text

    def tracing(self, name: str) -> dict:
        return self.sides[name].config_dump()["proxy"]["tracing"]

    async def stop(self) -> None:
        for app in (self.reviews, self.productpage, self.sleep):
            await app.stop()


async def set_sampling(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, percent: float, chain: Chain) -> None:
    """The mesh default as an operator changes it (pilot's environment, a restart); every sidecar holds it."""
    monkeypatch.setenv("ISTHMUS_TRACE_SAMPLING", str(percent))
    await plane.restart_service("pilot")
    for name in chain.sides:
        await eventually(lambda: chain.tracing(name)["client"]["sampling_percent"] == percent
                         and chain.tracing(name)["server"]["sampling_percent"] == percent, 20)


@pytest.fixture
async def chain(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    app = await Chain(mesh).start()
    yield app
    await app.stop()


@pytest.fixture
async def sink(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    spans = await SpanSink().start(mesh)
    yield spans
    await spans.stop()


async def test_one_call_through_two_sidecars_and_a_forwarding_app_is_one_linked_trace(
        mesh: ControlPlane, chain: Chain, sink: SpanSink, monkeypatch: pytest.MonkeyPatch) -> None:
    await set_sampling(mesh, monkeypatch, 100.0, chain)
    await chain.call()  # no context from the app: the first sidecar (sleep's) decides and starts the trace
    got = chain.reviews.requests[-1][2]
    trace_id = got["x-b3-traceid"]
    assert got["x-b3-sampled"] == "1" and got["traceparent"].endswith("-01") and trace_id in got["traceparent"]
    spans = await sink.trace(trace_id, 4)
    assert len(spans) == 4
    by = {(span.local_endpoint.service_name, span.kind): (subject, span) for subject, span in spans}
    ns = chain.ns
    (s_sub, caller), (p_sub, server), (_, onward), (r_sub, callee) = (
        by[(f"sleep.{ns}", "CLIENT")], by[(f"productpage.{ns}", "SERVER")], by[(f"productpage.{ns}", "CLIENT")],
        by[(f"reviews.{ns}", "SERVER")])
    # client span -> server span -> the app's next client span -> the next server span
    assert caller.parent_id is None
    assert (server.parent_id, onward.parent_id, callee.parent_id) == (caller.id, server.id, onward.id)
    assert len({caller.id, server.id, onward.id, callee.id}) == 4 and len(trace_id) == 32
    # each sidecar publishes under its own identity only
    assert (s_sub, p_sub, r_sub) == (f"{TELEMETRY_SPANS}.{ns}.sleep", f"{TELEMETRY_SPANS}.{ns}.bookinfo-productpage",
                                     f"{TELEMETRY_SPANS}.{ns}.bookinfo-reviews")
    # names and tags as Envoy and Istio set them
    assert caller.name == server.name == f"{fqdn('productpage', ns)}:9080/*"
    assert onward.name == callee.name == f"{fqdn('reviews', ns)}:9080/*"
    request_id = chain.productpage.requests[-1][2]["x-request-id"]
    for span in (caller, server, onward, callee):
        tags = span.tags or {}
        assert tags["http.status_code"] == "200" and tags["response_flags"] == "-" and "error" not in tags
        assert tags["guid:x-request-id"] == request_id and tags["http.method"] == "GET"
        assert tags["istio.namespace"] == ns and tags["component"] == "proxy"
        assert span.duration and span.timestamp
    assert caller.tags["istio.canonical_service"] == "sleep" and callee.tags["istio.canonical_revision"] == "v1"
    assert caller.tags["upstream_cluster"] == f"outbound|9080||{fqdn('productpage', ns)}"
    assert caller.tags["http.url"] == "http://productpage:9080/productpage"
    assert server.tags["upstream_cluster"].startswith("inbound|")
    # the client span's upstream is the server sidecar's inbound listener
    assert caller.remote_endpoint.port == chain.sides["productpage"].inbound_port
    assert chain.tracing("sleep")["reporter"]["dropped"] == 0


async def test_an_unsampled_request_reports_nothing_yet_propagates_its_decision(
        mesh: ControlPlane, chain: Chain, sink: SpanSink, monkeypatch: pytest.MonkeyPatch) -> None:
    await set_sampling(mesh, monkeypatch, 0.0, chain)
    await chain.call()  # no context: sleep's sidecar decides not to sample, and says so
    into_productpage = chain.productpage.requests[-1][2]
    into_reviews = chain.reviews.requests[-1][2]
    assert into_productpage["x-b3-sampled"] == "0" and into_productpage["traceparent"].endswith("-00")
    # passed through both sidecars unchanged: the same context reaches reviews
    assert into_reviews["traceparent"] == into_productpage["traceparent"] and into_reviews["x-b3-sampled"] == "0"
    unsampled = into_productpage["traceparent"].split("-")[1]
    # an incoming sampled flag is honoured at 0%: the app's own context, sampled, makes a trace of four spans
    sampled = "4bf92f3577b34da6a3ce929d0e0e4736"
    await chain.call({"traceparent": f"00-{sampled}-00f067aa0ba902b7-01"})
    spans = await sink.trace(sampled, 4)
    assert {span.kind for _, span in spans} == {"CLIENT", "SERVER"}
    assert next(span for _, span in spans if span.local_endpoint.service_name.startswith("sleep.")).parent_id \
        == "00f067aa0ba902b7"
    # every sidecar queued spans in order: those of the first request, had there been any, came before these
    assert sink.spans(unsampled) == []
    assert sum(chain.tracing(name)["reporter"]["sent"] for name in chain.sides) == 4


async def test_a_proxy_publishes_spans_only_under_its_own_identity(mesh: ControlPlane, sink: SpanSink) -> None:
    """Checked with nats-py as an attacker would (not our sidecar): a forged trace under another namespace
    or service account is refused by nats-server and never reaches the telemetry service."""
    from tests.integration.test_bus_lockdown import Violations, connect_as, issue

    errors = Violations()
    proxy = await connect_as(mesh, await issue(mesh, "spans-a", "web"), errors)
    forged = msgspec.json.encode(SpanBatch(proxy_id="x", spans=[Span(trace_id="f" * 32, id="e" * 16)]))
    own = msgspec.json.encode(SpanBatch(proxy_id="x", spans=[Span(trace_id="a" * 32, id="b" * 16)]))
    try:
        for subject in (f"{TELEMETRY_SPANS}.spans-b.web", f"{TELEMETRY_SPANS}.spans-a.db", TELEMETRY_SPANS):
            await proxy.publish(subject, forged)
            await errors.seen(f'permissions violation for publish to "{subject}"')
        await proxy.publish(f"{TELEMETRY_SPANS}.spans-a.web", own)
        await proxy.flush()
        await sink.trace("a" * 32, 1)  # its own subject reaches the telemetry service: after the forged ones
        assert sink.spans("f" * 32) == []
    finally:
        await proxy.close()
