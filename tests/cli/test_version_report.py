"""`isthmus version`'s report and short form, without a bus."""

from __future__ import annotations

from isthmus.commands.version import short_lines, version_report
from proto.health import HealthReply
from proto.xds import ProxyStatus


def test_the_report_counts_replicas_and_proxy_versions() -> None:
    health = {"pilot": [HealthReply(service="pilot", instance="b", ready=True, version="0.2.0"),
                        HealthReply(service="pilot", instance="a", ready=True, leader=True, version="0.2.0")],
              "ca": [HealthReply(service="ca", instance="c", ready=False)]}
    proxies = [ProxyStatus(proxy_id="p1", proxy_version="0.2.0"), ProxyStatus(proxy_id="p2", proxy_version="0.1.0"),
               ProxyStatus(proxy_id="g", proxy_version="0.2.0", gateway=True)]
    report = version_report("0.2.0", health, proxies)
    assert [r["instance"] for r in report["control_plane"]["pilot"]] == ["a", "b"]
    assert report["control_plane"]["ca"][0]["version"] == "unknown"  # a replica older than the field
    assert report["data_plane"] == {"proxies": 3, "versions": {"0.2.0": 2, "0.1.0": 1}, "gateways": 1}
    assert short_lines(report) == ["client version: 0.2.0",
                                   "control plane version: 0.2.0 (2 replicas), unknown (1 replicas)",
                                   "data plane version: 0.1.0 (1 proxies), 0.2.0 (2 proxies)"]


def test_without_pilot_the_data_plane_says_why() -> None:
    report = version_report("0.2.0", {"pilot": []}, None, "pilot did not answer")
    assert short_lines(report)[1:] == ["control plane version: none answered",
                                       "data plane version: unknown: pilot did not answer"]
