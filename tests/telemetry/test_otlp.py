"""OTLP/HTTP export against a loopback receiver that decodes what it gets with opentelemetry-proto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from proto.observations import Span, ZipkinEndpoint
from services.telemetry.otlp import OtlpExporter


class Receiver:
    """An OTLP/HTTP traces endpoint: answers `statuses` in turn (then 200), keeps what it decoded."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self.statuses = list(statuses or [])

    async def handle(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        decoded = ExportTraceServiceRequest()
        decoded.ParseFromString(await request.read())
        self.requests.append(decoded)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def spans(self) -> list[tuple[str, trace_pb2.Span]]:
        return [(next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), s)
                for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield r, f"http://127.0.0.1:{port}/v1/traces"
    await runner.cleanup()


def span(i: int, service: str = "frontend", trace: str = "4e441824ec2b6a44ffdc9bb9a6453df3") -> Span:
    return Span(trace_id=trace, id=f"{i:016x}", parent_id="ffdc9bb9a6453df3" if i > 1 else None, name="get /reviews",
                kind="CLIENT" if i % 2 else "SERVER", timestamp=1_700_000_000_000_000 + i, duration=1500,
                local_endpoint=ZipkinEndpoint(service_name=service), remote_endpoint=ZipkinEndpoint(service_name="reviews"),
                tags={"http.status_code": "503", "error": "upstream reset"} if i == 3 else {"http.status_code": "200"})


async def run_until(exporter: OtlpExporter, done, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.ensure_future(exporter.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done():
            assert asyncio.get_running_loop().time() < deadline, "export did not happen in time"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_spans_arrive_as_otlp_protobuf_with_ids_times_kinds_and_services(receiver) -> None:  # type: ignore[no-untyped-def]
    r, url = receiver
    exporter = OtlpExporter(url, batch=512, flush_every=0.1)
    exporter.offer([span(1), span(2, service="reviews"), span(3), span(4, trace="00000000000000aa")])
    await run_until(exporter, lambda: exporter.exported == 4)
    assert r.content_types == ["application/x-protobuf"]
    got = {s.span_id.hex(): (service, s) for service, s in r.spans()}
    service, first = got[f"{1:016x}"]
    assert service == "frontend" and first.trace_id.hex() == "4e441824ec2b6a44ffdc9bb9a6453df3"
    assert first.kind == trace_pb2.Span.SPAN_KIND_CLIENT and first.parent_span_id == b""
    assert first.start_time_unix_nano == (1_700_000_000_000_000 + 1) * 1000
    assert first.end_time_unix_nano - first.start_time_unix_nano == 1_500_000
    assert got[f"{2:016x}"][0] == "reviews" and got[f"{2:016x}"][1].kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert got[f"{2:016x}"][1].parent_span_id.hex() == "ffdc9bb9a6453df3"
    errored = got[f"{3:016x}"][1]
    assert errored.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert {a.key: a.value.string_value for a in errored.attributes}["http.status_code"] == "503"
    assert got[f"{4:016x}"][1].trace_id.hex() == "0" * 30 + "aa"  # a 64-bit trace id, padded to OTLP's 128


async def test_batches_are_bounded_and_a_full_queue_drops_and_counts(receiver) -> None:  # type: ignore[no-untyped-def]
    r, url = receiver
    exporter = OtlpExporter(url, max_queue=5, batch=2, flush_every=0.1)
    exporter.offer([span(i) for i in range(1, 6)])  # five: at the queue bound
    exporter.offer([span(6)])  # one over
    assert exporter.dropped == 1
    await run_until(exporter, lambda: exporter.exported == 5)
    assert [sum(len(ss.spans) for rs in q.resource_spans for ss in rs.scope_spans) for q in r.requests] == [2, 2, 1]


async def test_a_retryable_refusal_is_retried_and_a_final_one_drops_the_batch(receiver) -> None:  # type: ignore[no-untyped-def]
    r, url = receiver
    r.statuses = [503, 200]
    exporter = OtlpExporter(url, flush_every=0.05, retry_pause=0.01)
    exporter.offer([span(1)])
    await run_until(exporter, lambda: exporter.exported == 1)
    assert len(r.requests) == 2
    r.statuses = [400]
    exporter.offer([span(2)])
    await run_until(exporter, lambda: exporter.dropped == 1)
    assert len(r.requests) == 3  # a 400 is not retried


async def test_an_unreachable_collector_drops_after_retries() -> None:
    exporter = OtlpExporter("http://127.0.0.1:9/v1/traces", flush_every=0.05, retry_pause=0.01, timeout=2)
    exporter.offer([span(1), span(2)])
    await run_until(exporter, lambda: exporter.dropped == 2)
