"""Spans go to the bus in batches through a bounded queue (proxy/telemetry/span_reporter.py): a batch when
ISTHMUS_SPAN_BATCH spans wait or ISTHMUS_SPAN_FLUSH_INTERVAL passed, the oldest dropped and counted past
ISTHMUS_SPAN_QUEUE, so a dead bus never grows memory. Pure logic: a recording stand-in for the bus (the real
bus carries them in tests/integration/test_tracing.py)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from proto.observations import Span, SpanBatch
from runtime import bus as busmod
from proxy.telemetry.span_reporter import SpanReporter

SUBJECT = "isthmus.telemetry.spans.default.reviews"


class Bus:
    """What the reporter uses of runtime.bus.Bus: `connected` and `publish`."""

    def __init__(self, connected: bool = True, fail: BaseException | None = None) -> None:
        self.connected = connected
        self.fail = fail
        self.sent: list[tuple[str, SpanBatch]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((subject, msgspec.json.decode(payload, type=SpanBatch)))


def span(i: int) -> Span:
    return Span(trace_id="%032x" % (i + 1), id="%016x" % (i + 1))


def ids(bus: Bus) -> list[int]:
    return [int(s.id, 16) - 1 for _, batch in bus.sent for s in batch.spans]


def test_the_bounds_must_make_sense():
    for batch, queue, interval in ((0, 10, 1.0), (10, 9, 1.0), (1, 1, 0.0)):
        with pytest.raises(ValueError):
            SpanReporter("p", SUBJECT, batch, queue, interval)
    SpanReporter("p", SUBJECT, 10, 10, 0.01)  # a queue of exactly one batch is fine


async def test_a_full_batch_goes_at_once_and_one_short_waits_for_the_interval():
    reporter = SpanReporter("proxy-1", SUBJECT, batch=3, max_queue=10, interval=60.0)
    bus = Bus()
    task = asyncio.create_task(reporter.run(bus))
    await asyncio.sleep(0)
    for i in range(2):
        reporter.add(span(i))
    await asyncio.sleep(0.05)
    assert bus.sent == []  # one short of a batch: waits (for the 60 s interval)
    reporter.add(span(2))  # at the batch size: sent now
    for _ in range(20):
        await asyncio.sleep(0.01)
        if bus.sent:
            break
    assert [(subject, batch.proxy_id) for subject, batch in bus.sent] == [(SUBJECT, "proxy-1")]
    assert ids(bus) == [0, 1, 2] and reporter.sent == 3 and not reporter.spans
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_what_waits_goes_after_the_interval_in_batches_of_at_most_the_batch_size():
    reporter = SpanReporter("proxy-1", SUBJECT, batch=4, max_queue=100, interval=0.05)
    for i in range(10):
        reporter.add(span(i))
    bus = Bus()
    task = asyncio.create_task(reporter.run(bus))
    await asyncio.sleep(0.3)  # generous: the interval is 0.05 s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [len(batch.spans) for _, batch in bus.sent] == [4, 4, 2] and ids(bus) == list(range(10))


def test_the_queue_holds_max_queue_spans_and_drops_the_oldest_one_over():
    reporter = SpanReporter("p", SUBJECT, batch=2, max_queue=5)
    for i in range(5):
        reporter.add(span(i))
    assert len(reporter.spans) == 5 and reporter.dropped == 0  # at the bound: all kept
    reporter.add(span(5))  # one over: the oldest goes, counted
    assert len(reporter.spans) == 5 and reporter.dropped == 1
    assert [int(s.id, 16) - 1 for s in reporter.spans] == [1, 2, 3, 4, 5]


async def test_a_dead_bus_never_grows_memory_and_what_waits_goes_once_it_is_back():
    reporter = SpanReporter("p", SUBJECT, batch=10, max_queue=20, interval=0.02)
    bus = Bus(connected=False)
    task = asyncio.create_task(reporter.run(bus))
    for i in range(1000):
        reporter.add(span(i))
        if i % 100 == 0:
            await asyncio.sleep(0.01)
    assert len(reporter.spans) == 20 and reporter.dropped == 980 and bus.sent == []
    bus.connected = True
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ids(bus) == list(range(980, 1000)) and reporter.sent == 20


async def test_a_failed_publish_keeps_the_batch_for_the_next_flush_within_the_bound():
    reporter = SpanReporter("p", SUBJECT, batch=3, max_queue=4)
    bus = Bus(fail=busmod.BusError("connection closed"))
    for i in range(4):
        reporter.add(span(i))
    await reporter.flush(bus)  # type: ignore[arg-type]
    assert [int(s.id, 16) - 1 for s in reporter.spans] == [0, 1, 2, 3] and reporter.dropped == 0
    bus.fail = None
    await reporter.flush(bus)  # type: ignore[arg-type]
    assert ids(bus) == [0, 1, 2, 3]


async def test_a_batch_the_bus_refuses_as_too_large_is_dropped_and_counted():
    reporter = SpanReporter("p", SUBJECT, batch=2, max_queue=4)
    bus = Bus(fail=busmod.PayloadTooLarge("too large"))
    for i in range(3):
        reporter.add(span(i))
    await reporter.flush(bus)  # type: ignore[arg-type]
    assert reporter.failed == 3 and not reporter.spans
    assert reporter.stats()["failed"] == 3


async def test_spans_waiting_at_stop_are_sent_if_the_bus_is_up():
    reporter = SpanReporter("p", SUBJECT, batch=100, max_queue=100, interval=60.0)
    bus = Bus()
    task = asyncio.create_task(reporter.run(bus))
    await asyncio.sleep(0)
    reporter.add(span(7))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ids(bus) == [7]
