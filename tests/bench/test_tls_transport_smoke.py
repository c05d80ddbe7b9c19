"""bench/dataplane/tls_transport.py runs end to end with tiny counts and prints a figure per transport."""

from __future__ import annotations

import re

import pytest

from bench.dataplane import tls_transport
from proxy.tls import transport


def test_smoke_prints_every_figure_for_both_transports(capsys: pytest.CaptureFixture[str]) -> None:
    tls_transport.main(["--round-trips", "20", "--handshakes", "5", "--rounds", "1"])
    out = capsys.readouterr().out
    for what in ("keep-alive µs/round trip", "handshake µs, no tickets", "handshake µs, 2 tickets"):
        line = next(line for line in out.splitlines() if line.startswith(what))
        uv, afn, ratio = (float(x) for x in re.findall(r"\d+\.\d+", line[len(what):]))
        assert uv > 0 and afn > 0 and ratio > 0, line
    assert transport.current() == transport.DEFAULT  # the run leaves the default transport chosen
