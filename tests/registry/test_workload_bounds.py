"""services/registry/service.py: a registration's app_ports are bounded like its other maps."""

from __future__ import annotations

import msgspec
import pytest

from proto.registry import Workload
from services.registry.service import MAX_LABELS, _invalid


def workload(app_ports: dict[int, int]) -> Workload:
    return Workload(id="w1", service="fin", namespace="foo", app_ports=app_ports)


def test_app_ports_up_to_one_per_tcp_port_plus_the_http_one_are_accepted_one_more_is_refused():
    at_limit = {9000 + i: 8000 + i for i in range(MAX_LABELS + 1)}
    assert _invalid(workload(at_limit)) == ""
    over = {**at_limit, 1: 1}
    assert _invalid(workload(over)) == f"{MAX_LABELS + 2} app ports, more than {MAX_LABELS + 1}"


def test_app_ports_outside_1_to_65535_are_refused():
    for bad in ({0: 80}, {80: 65536}, {-1: 80}):
        assert _invalid(workload(bad)) == "app ports must be 1-65535"
    assert _invalid(workload({1: 65535})) == ""


def test_the_metric_names_a_workload_registers_are_bounded_like_its_other_names():
    for field in ("workload_name", "cluster"):
        assert _invalid(Workload(id="w1", service="fin", namespace="foo", **{field: "x" * 253})) == ""
        assert _invalid(Workload(id="w1", service="fin", namespace="foo", **{field: "x" * 254})) == \
            f"{field} is 254 characters, more than 253"


def test_a_gateways_ports_are_bounded_in_count_and_range() -> None:
    def gateway(ports: dict[int, int]) -> Workload:
        return Workload(id="gw", service="istio-ingressgateway", namespace="istio-system", gateway=True,
                        gateway_ports=ports)

    assert _invalid(gateway({80: 8080, 443: 8443})) == ""
    at_limit = {p: p + 1000 for p in range(1, MAX_LABELS + 1)}
    assert _invalid(gateway(at_limit)) == ""
    over = {p: p + 1000 for p in range(1, MAX_LABELS + 2)}
    assert _invalid(gateway(over)) == f"{MAX_LABELS + 1} gateway ports, more than {MAX_LABELS}"
    assert _invalid(gateway({80: 0})) == "gateway ports must be 1-65535"
    assert _invalid(gateway({0: 8080})) == "gateway ports must be 1-65535"


def test_a_registry_list_asks_for_at_most_max_list_workloads() -> None:
    from proto.registry import MAX_LIST, WorkloadListRequest

    assert msgspec.json.decode(b'{"limit": %d}' % MAX_LIST, type=WorkloadListRequest).limit == MAX_LIST
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"limit": %d}' % (MAX_LIST + 1), type=WorkloadListRequest)
