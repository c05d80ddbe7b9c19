"""services/pilot/validate/workload_entry.py: a WorkloadEntry's address, ports and labels."""

from __future__ import annotations

from tests.pilot.validate.documents import by_path, decode


def test_a_workload_entry_needs_an_address_and_valid_ports():
    text = """
    apiVersion: networking.istio.io/v1
    kind: WorkloadEntry
    metadata: {name: vm-1}
    spec:
      ports: {http: 0}
      labels: {app: ratings}
    """
    _, errors, _ = decode(text)
    assert by_path(errors, "spec.address").message == "address is required"
    assert "1..65535" in by_path(errors, "spec.ports[http]").message
