"""Which requests a side samples (proxy/telemetry/sampling.py): the pushed Telemetry policy, else the mesh
default, per side (Istio's Telemetry API tracing.match.mode)."""

from __future__ import annotations

import pytest

from proto.telemetry import TelemetryPolicy, TracingPolicy
from proxy.telemetry.sampling import CLIENT, SERVER, SidePolicy, side_policy


def test_without_a_telemetry_policy_both_sides_sample_the_mesh_default_and_report():
    for side in (CLIENT, SERVER):
        policy = side_policy(None, 1.0, side)
        assert (policy.enabled, policy.percent, policy.report) == (True, 1.0, True)
        assert side_policy(TelemetryPolicy(sources=["ns/t"]), 7.5, side).percent == 7.5  # no tracing in it


def test_the_telemetry_percentage_wins_over_the_mesh_default_and_unset_inherits_it():
    tracing = TelemetryPolicy(tracing=TracingPolicy(sampling_percent=42.0))
    assert side_policy(tracing, 1.0, CLIENT).percent == 42.0
    assert side_policy(TelemetryPolicy(tracing=TracingPolicy()), 3.0, SERVER).percent == 3.0


@pytest.mark.parametrize("mode, client, server", [
    ("CLIENT_AND_SERVER", True, True), ("CLIENT", True, False), ("SERVER", False, True),
])
def test_the_mode_picks_the_sides_that_trace(mode, client, server):
    telemetry = TelemetryPolicy(tracing=TracingPolicy(mode=mode, sampling_percent=100.0))
    assert side_policy(telemetry, 1.0, CLIENT).enabled is client
    assert side_policy(telemetry, 1.0, SERVER).enabled is server


def test_disabled_reporting_and_tags_come_through():
    telemetry = TelemetryPolicy(tracing=TracingPolicy(report=False, custom_tags={"team": "a"},
                                                      header_tags={"tenant": "X-Tenant"}))
    policy = side_policy(telemetry, 1.0, CLIENT)
    assert policy.report is False and policy.custom_tags == {"team": "a"}
    assert policy.header_tags == {"tenant": "x-tenant"}  # header names are matched lower case


def test_zero_percent_never_samples_and_a_hundred_always_does():
    assert not any(SidePolicy(True, 0.0).decide() for _ in range(10_000))
    assert all(SidePolicy(True, 100.0).decide() for _ in range(10_000))


def test_a_percentage_samples_about_that_share():
    share = sum(SidePolicy(True, 25.0).decide() for _ in range(20_000)) / 20_000
    assert 0.2 < share < 0.3


def test_a_percentage_out_of_range_is_clamped():
    assert SidePolicy(True, 250.0).percent == 100.0 and SidePolicy(True, -1.0).percent == 0.0
