"""Smoke test of the control-plane benchmark: 20 simulated proxies, one config change, one endpoint
added and expired, against a real nats-server, etcd, auth, registry and pilot, locked down as `isthmus up`
runs them (each simulated proxy on its own proxy credential, through the auth callout). Asserts that every
scenario produced figures for every proxy, nothing about speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.controlplane.run import run

N = 20


def _figures(summary: dict, expected: int) -> None:
    for key in ("p50_ms", "p99_ms", "max_ms"):
        assert key in summary, summary
        assert summary[key] > 0, summary
    assert summary["count"] == expected, summary
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"], summary


@pytest.mark.timeout(180)
def test_controlplane_smoke(tmp_path: Path) -> None:
    report = run(quick=True, results_dir=tmp_path, smoke=True)

    assert report["mode"] == "smoke"
    result = report["runs"][str(N)]
    assert "error" not in result, result.get("error")
    assert result["n"] == N

    _figures(result["registration"]["replied"], N)
    assert result["registration"]["heartbeats"]["ok"] == N
    _figures(result["cold_start"]["synced"], N)
    assert result["cold_start"]["all_synced"]
    config = result["config"]
    _figures(config["convergence"], N * config["applies"])
    assert config["applies"] == 1
    assert config["worker_stats"]["nacks"] == 0
    _figures(result["endpoints"]["added"], N * result["endpoints"]["cycles"])
    _figures(result["endpoints"]["expired"], N * result["endpoints"]["cycles"])
    assert result["costs"]["pilot_compile_vs_change_ms"] > 0

    # the plane was locked down, every proxy connected with its own credential, the callout's cost is reported
    bus_auth = result["bus_auth"]
    assert bus_auth["issue"]["anonymous_refused"]
    assert bus_auth["issue"]["credentials"] == N + 1  # one per simulated proxy, one for the driver
    _figures(bus_auth["connected"], N)
    assert bus_auth["auth_cold_start"]["rss_peak_mb"] > 0 and "auth_cpu_ms_per_connection" in bus_auth
    assert result["cold_start"]["failed_proxies"] == 0

    # the pilot resource figures are there, and results were written
    assert "pilot" in config["resources"] and "auth" in config["resources"]
    assert (tmp_path / "controlplane" / "results.json").exists()

    # nothing the benchmark started is left running
    assert len(result["pids"]) >= 8  # nats, etcd, the control bus, auth, registry, pilot, two workers
    assert not [pid for pid in result["pids"] if _alive(pid)], "processes left running"
    # and no credential of the plane is left behind in the results
    state = tmp_path / "controlplane" / f"n{N}"
    assert not (state / "secrets").exists() and not (state / "isthmus.yaml").exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
