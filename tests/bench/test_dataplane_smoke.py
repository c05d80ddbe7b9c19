"""The data-plane benchmark's harness works end to end: every row yields figures (no speed asserted).

Starts nginx, two HAProxy and the Isthmus control plane with two sidecars on loopback, and runs tiny
loads (wrk 1 s, 200 fixed-rate requests per row). Needs wrk, hey, haproxy and nginx: installed with
apt-get when missing (CI runs as root); skipped only when that is impossible.
"""

from __future__ import annotations

import json

import pytest

from bench.dataplane.run import ROWS, run
from bench.dataplane.tools import ToolsMissing, ensure_tools


@pytest.fixture(scope="module")
def tools() -> None:
    try:
        ensure_tools()
    except ToolsMissing as exc:
        pytest.skip(f"data-plane benchmark tools are not installed and could not be installed: {exc}")


@pytest.mark.timeout(180)
def test_smoke_run_yields_figures_for_every_row(tools: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
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
    assert {t["key"] for t in result["targets"]} == {
        "rps_ratio_single", "added_p99_ms_pair", "isthmus_vcpu_1k", "isthmus_rss_mb_1k"}
    assert all(t["value"] is not None for t in result["targets"])
    assert (tmp_path / "dataplane-raw.log").stat().st_size > 0
