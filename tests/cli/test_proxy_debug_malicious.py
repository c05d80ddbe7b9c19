"""A malicious proxy answering `isthmus proxy-config` / `bug-report` (isthmus/proxy_debug.fetch_section):
whatever it sends, the CLI ends with one CliError, in bounded time and memory (no traceback, no hang)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from isthmus.errors import CliError
from isthmus.proxy_debug import fetch_section
from proto.debug import ProxyDebugReply, ProxyDebugRequest
from proto.xds import ProxyStatus

STATUS = ProxyStatus(proxy_id="p1", bus_user="proxy.cred1")


class FakeBus:
    """Answers each request with `answer(request)`, after `delay` seconds."""

    def __init__(self, answer: Any, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = 0

    async def call(self, subject: str, request: ProxyDebugRequest, reply_type: Any, timeout: float) -> Any:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answer(request)


def run(bus: FakeBus, timeout: float = 1.0) -> Any:
    return asyncio.run(fetch_section(bus, STATUS, "routes", timeout))


@pytest.mark.parametrize("body", ["not json {", "\x00\xff", '{"a": ', "[1, 2", ""])
def test_garbage_json_is_one_clean_error(body: str) -> None:
    bus = FakeBus(lambda r: ProxyDebugReply(ok=True, body=body if r.offset == 0 else "", offset=r.offset,
                                            total=len(body), digest="d"))
    with pytest.raises(CliError, match="not JSON|did not"):
        run(bus)


def test_a_section_that_is_not_an_object_is_refused() -> None:
    bus = FakeBus(lambda r: ProxyDebugReply(ok=True, body="[1,2,3]", total=7, digest="d"))
    with pytest.raises(CliError, match="not a JSON object"):
        run(bus)


def test_empty_chunks_before_total_are_refused() -> None:
    """A proxy claiming 10 characters and sending none ends at once, not after MAX_CHUNKS requests."""
    bus = FakeBus(lambda r: ProxyDebugReply(ok=True, body="", offset=r.offset, total=10, digest="d"))
    with pytest.raises(CliError):
        run(bus)
    assert bus.calls <= 2


def test_a_slow_trickle_is_bounded_by_one_deadline() -> None:
    """One character per reply, each just inside the per-request timeout: without an overall deadline the CLI
    waited MAX_CHUNKS x timeout (21 min at 5 s) per proxy; it must give up within a few timeouts."""
    body = '{"routes": [' + "1," * 5000 + "1]}"
    bus = FakeBus(lambda r: ProxyDebugReply(ok=True, body=body[r.offset:r.offset + 1], offset=r.offset,
                                            total=len(body), digest="d"), delay=0.05)
    started = time.monotonic()
    with pytest.raises(CliError):
        run(bus, timeout=0.3)
    assert time.monotonic() - started < 3.0


def test_a_chunk_at_the_wrong_offset_is_refused() -> None:
    """A reply whose offset is not the one asked for is not joined to the others (chunk mixing/replay)."""
    good = '{"routes": []}'
    bus = FakeBus(lambda r: ProxyDebugReply(ok=True, body=good[:5], offset=0, total=len(good), digest="d"))
    with pytest.raises(CliError):
        run(bus)


def test_an_honest_proxy_still_answers() -> None:
    body = '{"routes": [' + ",".join(['"r"'] * 3000) + "]}"
    bus = FakeBus(lambda r: ProxyDebugReply(ok=True, body=body[r.offset:r.offset + 1024], offset=r.offset,
                                            total=len(body), digest="d"))
    assert len(run(bus)["routes"]) == 3000


@pytest.mark.parametrize("section", ["routes", "clusters", "endpoints", "listeners", "secret"])
def test_table_of_a_dump_in_another_shape_is_one_error(section: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON object whose fields are not what the tables read: one `error:` line (exit 1), no traceback."""
    from click.testing import CliRunner

    from isthmus.cli import cli
    from isthmus.commands import proxy_config

    shaped = {"routes": "x", "clusters": [1, None], "security": 5, "gateway": 5, "workload": 3, "roots": 4}
    monkeypatch.setattr(proxy_config, "fetch", lambda obj, name, sec: (STATUS, shaped))
    result = CliRunner().invoke(cli, ["proxy-config", section, "p1"])
    assert result.exit_code == 1, result.output
    assert "see it with -o json" in result.output
    assert not isinstance(result.exception, (AttributeError, TypeError)), result.exception
