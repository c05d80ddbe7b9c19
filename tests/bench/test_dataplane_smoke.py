"""The data-plane benchmark's harness works end to end: every row yields figures (no speed asserted).

Starts nginx, the HAProxy pairs, the bare Python pair and the Isthmus control plane with two sidecars on
loopback, and runs tiny loads (wrk 1 s, 200 fixed-rate requests per row). Needs wrk, hey, haproxy and
nginx: `make deps` (which `make test` runs first) installs them with apt-get; without them this test fails
saying so, it never skips and never installs anything itself.
"""

from __future__ import annotations

import json

import pytest

from bench.dataplane import issue15
from bench.dataplane.features import RULES
from bench.dataplane.loadgen import parse_hey, parse_hey_csv, parse_wrk, percentile
from bench.dataplane.run import HANDSHAKE_ROWS, ROWS, run
from bench.dataplane.tools import ToolsMissing, ensure_tools

WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:18080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   216.54us  234.89us   4.22ms   94.47%
    Req/Sec   110.80k    16.45k  127.57k    80.00%
  Latency Distribution
     50%  171.00us
     75%  243.00us
     90%  368.00us
     99%    1.07ms
  220486 requests in 2.00s, 51.73MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 110193.69
Transfer/sec:     25.85MB
"""

HEY_OUTPUT = """\
Summary:
  Total:\t2.0048 secs
  Slowest:\t0.0029 secs
  Fastest:\t0.0000 secs
  Average:\t0.0002 secs
  Requests/sec:\t997.5862

Latency distribution:
  10%% in 0.0001 secs
  50%% in 0.0002 secs
  90%% in 0.0004 secs
  99%% in 0.0008 secs

Status code distribution:
  [200]\t1998 responses
  [503]\t2 responses

Error distribution:
  [3]\tGet "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused
""".replace("%%", "%")

HEY_CSV = """\
response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
0.0006,0.0002,0.0000,0.0000,0.0002,0.0001,200,0.0002
0.0001,0.0000,0.0000,0.0000,0.0001,0.0000,200,0.0008
0.0003,0.0000,0.0000,0.0000,0.0001,0.0000,503,0.0009
"""


def test_wrk_output_gives_rps_latency_in_ms_and_every_error() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.rps == 110193.69
    assert result.requests == 220486
    assert result.duration_s == 2.0
    assert result.latency_ms["p50"] == pytest.approx(0.171)
    assert result.latency_ms["p99"] == pytest.approx(1.07)
    assert result.latency_ms["max"] == pytest.approx(4.22)
    assert result.errors == 7


def test_hey_summary_gives_percentiles_slowest_and_errors() -> None:
    result = parse_hey(HEY_OUTPUT)
    assert result.rps == 997.5862
    assert result.latency_ms["p50"] == pytest.approx(0.2)
    assert result.latency_ms["p99"] == pytest.approx(0.8)
    assert result.latency_ms["max"] == pytest.approx(2.9)
    assert (result.ok, result.errors, result.requests) == (1998, 5, 2003)


def test_hey_csv_keeps_2xx_times_and_counts_the_rest() -> None:
    ok, bad = parse_hey_csv(HEY_CSV)
    assert ok == pytest.approx([0.6, 0.1])
    assert bad == 1


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99.9) == 3.0


@pytest.fixture(scope="module")
def tools() -> None:
    try:
        ensure_tools(install=False)
    except ToolsMissing as exc:
        pytest.fail(f"{exc}; `make deps` installs them", pytrace=False)


@pytest.mark.timeout(180)
def test_smoke_run_yields_figures_for_every_row(tools: None, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    result = run(quick=True, results_dir=tmp_path, smoke=True)

    json.dumps(result)  # the orchestrator writes it as JSON
    assert set(result["rows"]) == set(ROWS)
    for name in ROWS:
        row = result["rows"][name]["summary"]
        assert row["rps"]["median"] > 0, name
        assert row["fixed_rps"]["median"] > 0, name
        for pct in ("p50", "p90", "p99", "max"):
            assert row[f"lat_{pct}_ms"]["median"] >= 0, (name, pct)
        for role in result["rows"][name]["proxies"]:
            assert row[f"{role}.rss_mb_1k"]["median"] > 0, (name, role)
            assert row[f"{role}.cpu_per_1k_s"]["median"] >= 0, (name, role)
    assert result["rows"]["direct"]["proxies"] == []
    assert result["rows"]["isthmus-pair"]["proxies"] == ["client", "server"]
    assert result["rows"]["bare-pair"]["proxies"] == ["client", "server"]  # bench/dataplane/bare_proxy.py
    assert result["rows"]["bare-single"]["proxies"] == ["server"]
    for name in ("bare-pair", "bare-single"):  # a measuring stick that drops requests measures nothing
        rep = result["rows"][name]["reps"][0]
        assert (rep["wrk_errors"], rep["fixed_errors"]) == (0, 0), name
    for key in ("rps_ratio_pair", "rps_ratio_isthmus_bare_pair", "rps_ratio_bare_haproxy_pair"):
        assert result["ratios"][key]["median"] > 0, key
    # the TLS rows: the Isthmus pair's server sidecar accepted mutual TLS only (check_mtls raises otherwise)
    mtls = result["rows"]["isthmus-mtls-pair"]["reps"][0]
    assert mtls["plaintext_connections"] == 0 and mtls["mtls_connections"] >= 0
    for name in ("isthmus-mtls-pair", "haproxy-tls-pair", "bare-tls-pair"):
        rep = result["rows"][name]["reps"][0]
        assert (rep["wrk_errors"], rep["fixed_errors"]) == (0, 0), name
    assert set(result["handshakes"]) == set(HANDSHAKE_ROWS)
    for name in HANDSHAKE_ROWS:  # a full handshake between the pair per request, on both pairs
        rep = result["handshakes"][name]["reps"][0]
        assert rep["conns_per_s"] > 0 and rep["errors"] == 0, name
        assert rep["conns_per_request"] >= 0.9, name
        assert rep["server.cpu_ms_per_conn"] >= 0, name
    # HAProxy computes this from two per-second rate counters (100 - 100 * key rate / TLS session rate, stats.c),
    # read a moment apart: it reads 1 now and then with no session resumed (the parallel run's flake)
    assert result["handshakes"]["haproxy-tls-handshake"]["reps"][0]["session_reuse_pct"] <= 2
    for key in ("rps_ratio_mtls_pair", "rps_ratio_mtls_plain_pair", "conns_ratio_mtls", "cpu_ratio_mtls_pair"):
        assert result["ratios"][key]["median"] > 0, key
    out = capsys.readouterr().out
    assert "Isthmus/bare rps, pair" in out
    assert "Isthmus mTLS / HAProxy TLS rps, pair" in out and "isthmus-mtls-handshake" in out
    assert {t["key"] for t in result["targets"]} == {
        "rps_ratio_single", "added_p99_ms_pair", "isthmus_vcpu_1k", "isthmus_rss_mb_1k", "rps_ratio_mtls_pair",
        *(key for key, *_ in issue15.TARGETS)}
    # CPU at 1,000 rps over 200 requests may read 0 ticks (10 ms) for HAProxy: no ratio then, in smoke runs only
    assert all(t["value"] is not None for t in result["targets"] if not t["key"].startswith("cpu_1k_ratio"))
    # issue 15's features, read from the sidecars at the start and the end, and every request counted by metrics
    features = result["features"]
    assert features["on"] and features["authz_rules"] == RULES
    for when in ("start", "end"):
        sidecars = features["sidecars"][when]
        assert sidecars["server"]["authz_rules"] == sidecars["mtls-server"]["authz_rules"] == RULES
        assert all(s["access_log_flag"] == "" and s["trace_sampling_percent"] == [1.0, 1.0] for s in sidecars.values())
    for name, roles in (("isthmus-pair", ("client", "server")), ("isthmus-single", ("server",)),
                        ("isthmus-mtls-pair", ("client", "server"))):
        rep = result["rows"][name]["reps"][0]
        for role in roles:
            assert rep[f"{role}.requests_counted"] >= rep["wrk_requests"] + rep["fixed_requests"], (name, role)
    assert "bare Python, mTLS pair (bare-tls-pair)" in out and "worst Isthmus sidecar RSS MB" in out
    assert result["ratios"]["rps_ratio_bare_haproxy_mtls_pair"]["median"] > 0
    assert (tmp_path / "dataplane-raw.log").stat().st_size > 0
