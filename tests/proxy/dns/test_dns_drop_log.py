"""A flood of junk DNS packets with the level at debug: the log's volume is bounded, not the sender's."""

from __future__ import annotations

import random
from typing import Any

import pytest

from proxy.dns import answer


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def debug(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_dropped_packets_log_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(answer, "log", recorder)
    monkeypatch.setattr(answer, "_dropped", answer._DropLog())
    rnd = random.Random(7)
    junk = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 40))) for _ in range(2000)] + [b"x" * 513] * 500
    for packet in junk:
        assert answer.respond(packet, lambda name: ("", False)) is None
    assert 1 <= len(recorder.lines) <= 3, len(recorder.lines)  # 2500 drops in well under 3 s
    answer._dropped.next_at = 0.0  # the interval passed: the next drop is logged with the count since the last
    answer.respond(b"junk", lambda name: ("", False))
    assert recorder.lines[-1][1]["dropped"] >= 2500 - len(recorder.lines)
