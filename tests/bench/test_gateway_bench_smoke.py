"""The gateway benchmark's harness works end to end (issue 13): the Isthmus ingress gateway (TLS from the client,
auto mTLS to bench-backend's sidecar) and the HAProxy edge pair each yield every figure, the handshake run really
is a full handshake per request, and the Isthmus figures come with their ratios to HAProxy's. Tiny loads (wrk 1 s
twice and 200 fixed-rate requests per row); no speed asserted. Needs wrk, hey, haproxy and nginx (`make deps`):
without them it fails saying so, it never skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gateway.run import RATIOS, ROWS, check_handshakes, run
from bench.dataplane.tools import ToolsMissing, ensure_tools


def test_a_handshake_run_with_too_few_new_tls_connections_or_a_resumed_session_is_refused() -> None:
    assert check_handshakes("row", 100, (10, 5, 0), (100, 5, 0)) == (90, 0)  # 0.9 per request: a full handshake each
    with pytest.raises(RuntimeError, match="89 new TLS connections"):
        check_handshakes("row", 100, (10, 5, 0), (99, 5, 0))
    with pytest.raises(RuntimeError, match="resumed 98%"):
        check_handshakes("row", 100, (0, 0, 0), (100, 0, 98))
    # aborted handshakes of a loaded client read as a few percent "reuse" in HAProxy's figure: still full handshakes
    assert check_handshakes("row", 100, (0, 0, 0), (100, 0, 6)) == (100, 0)
    with pytest.raises(RuntimeError, match="resumed 26%"):
        check_handshakes("row", 100, (0, 0, 0), (100, 0, 26))


@pytest.fixture(scope="module")
def tools() -> None:
    try:
        ensure_tools(install=False)
    except ToolsMissing as exc:
        pytest.fail(f"{exc}; `make deps` installs them", pytrace=False)


@pytest.mark.timeout(180)
def test_smoke_run_yields_every_figure_for_the_gateway_and_haproxy(tools: None, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    result = run(quick=True, results_dir=tmp_path, smoke=True)

    json.dumps(result)  # the orchestrator writes it as JSON
    assert set(result["rows"]) == set(ROWS) == {"isthmus-gateway", "haproxy-edge"}
    for name in ROWS:
        rep = result["rows"][name]["reps"][0]
        assert result["rows"][name]["proxies"] == ["edge", "sidecar"]
        assert rep["rps"] > 0 and rep["conns_per_s"] > 0 and rep["fixed_rps"] > 0, name
        assert (rep["wrk_errors"], rep["conns_errors"], rep["fixed_errors"]) == (0, 0, 0), name
        assert rep["edge_tls_per_request"] >= 0.9, name  # Connection: close: a new TLS connection per request
        assert rep["upstream_tls_per_request"] < 0.5, name  # ... while the edge-to-sidecar hop stays pooled
        for pct in ("p50", "p99"):
            assert rep[f"lat_{pct}_ms"] > 0, (name, pct)
        for role in ("edge", "sidecar"):
            assert rep[f"{role}.rss_mb_1k"] > 0 and rep[f"{role}.cpu_per_1k_s"] >= 0, (name, role)
            assert rep[f"{role}.cpu_ms_per_conn"] >= 0, (name, role)
    assert {key for key, _, _ in RATIOS} >= {"rps", "conns_per_s", "lat_p99_ms", "edge.rss_mb_1k"}
    # CPU has 10 ms resolution: at smoke loads HAProxy's CPU may round to 0, and a ratio to 0 is left out
    for key in ("rps", "conns_per_s", "lat_p99_ms", "edge.rss_mb_1k", "edge.cpu_ms_per_conn"):
        assert result["ratios"][key]["median"] > 0, key
    out = capsys.readouterr().out
    assert "isthmus-gateway edge" in out and "new TLS handshakes per s" in out
    assert (tmp_path / "gateway-raw.log").stat().st_size > 0
