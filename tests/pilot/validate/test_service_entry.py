"""services/pilot/validate/service_entry.py: hosts, ports, resolution, location and endpoints."""

from __future__ import annotations

from proto.resources import ServiceEntry
from tests.pilot.validate.documents import by_path, decode


SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  endpoints:
  - {address: 10.1.0.1, ports: {http: 9090}}
"""


def test_a_valid_service_entry_decodes():
    resources, errors, _ = decode(SE)
    assert errors == [] and isinstance(resources[0], ServiceEntry)


def test_service_entry_ports_resolution_location_and_endpoints_are_checked():
    text = (SE.replace("number: 443", "number: 70000").replace("name: http,", "name: https,")
            .replace("MESH_EXTERNAL", "OUTSIDE").replace("address: 10.1.0.1", "address: db.internal")
            .replace("{http: 9090}", "{grpc: 9090}"))
    _, errors, _ = decode(text)
    assert "65535" in by_path(errors, "spec.ports[0].number").message
    assert "already defined" in by_path(errors, "spec.ports[1].name").message
    assert "unknown location" in by_path(errors, "spec.location").message
    assert "not a valid IP" in by_path(errors, "spec.endpoints[0].address").message
    assert "not defined by the service entry" in by_path(errors, "spec.endpoints[0].ports[grpc]").message


def test_dns_round_robin_is_not_supported_yet_and_static_needs_endpoints():
    _, errors, _ = decode(SE.replace("STATIC", "DNS_ROUND_ROBIN"))
    assert "not supported yet" in by_path(errors, "spec.resolution").message
    text = SE.replace("  endpoints:\n  - {address: 10.1.0.1, ports: {http: 9090}}\n", "")
    _, errors, _ = decode(text)
    assert "needs endpoints or a workloadSelector" in by_path(errors, "spec.endpoints").message
