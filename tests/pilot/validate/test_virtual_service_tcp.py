"""VirtualService `tcp` routes: validation (services/pilot/validate/virtual_service.py) and compilation
(compile/routes.py)."""

from __future__ import annotations

import textwrap

from proto.xds import TcpMatch, TcpRule, WeightedDestination
from services.pilot.compile.routes import build_routes, referenced_hosts
from services.pilot.validate import decode_documents
from tests.pilot.test_compile_clusters import make_state

DB = "db.default.svc.cluster.local"


def vs(tcp: str, http: str = "") -> str:
    return textwrap.dedent("""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: db, namespace: default}
        spec:
          hosts: [db]
        """) + textwrap.indent(tcp + http, "  ")


SPLIT = """tcp:
- match: [{port: 5432, sourceLabels: {app: api}}]
  route:
  - {destination: {host: db, subset: v1, port: {number: 5432}}, weight: 50}
  - {destination: {host: db-replica}, weight: 50}
- route: [{destination: {host: db}}]
"""


def test_tcp_routes_as_istio_writes_them_are_accepted_and_compiled():
    resources, errors, _ = decode_documents(vs(SPLIT))
    assert errors == []
    routes = build_routes(make_state([(vs(SPLIT), 7)], []))
    route = routes[DB]
    assert route.rules == [] and route.tcp == [
        TcpRule(matches=[TcpMatch(port=5432, source_labels={"app": "api"})],
                destinations=[WeightedDestination(host=DB, subset="v1", port=5432, weight=50),
                              WeightedDestination(host="db-replica.default.svc.cluster.local", weight=50)]),
        TcpRule(destinations=[WeightedDestination(host=DB, weight=100)]),
    ]
    assert referenced_hosts(routes) == {DB: 7, "db-replica.default.svc.cluster.local": 7}


def test_a_tcp_route_without_destinations_and_bad_matches_are_errors_at_their_path():
    _, errors, _ = decode_documents(vs("tcp:\n- match: [{port: 70000, sourceNamespace: Bad_NS}]\n"))
    found = {e.path: e.message for e in errors}
    assert "TCP route is required" in found["spec.tcp[0].route"]
    assert "spec.tcp[0].match[0].port" in found and "spec.tcp[0].match[0].sourceNamespace" in found


def test_fields_of_tcp_routes_isthmus_cannot_honour_are_rejected_by_name():
    _, errors, _ = decode_documents(vs("tcp:\n- match: [{destinationSubnets: [10.0.0.0/8]}]\n"
                                       "  route: [{destination: {host: db}}]\n"))
    assert [e.path for e in errors] == ["spec.tcp[0].match[0].destinationSubnets"]
    _, errors, _ = decode_documents(vs("tls:\n- match: [{sniHosts: [db.example.com], destinationSubnets: [10.0.0.0/8]}]\n"
                                       "  route: [{destination: {host: db}}]\n"))
    assert [e.path for e in errors] == ["spec.tls[0].match[0].destinationSubnets"]


def test_a_virtual_service_needs_http_or_tcp_routes():
    _, errors, _ = decode_documents(vs(""))
    assert [(e.path, e.message) for e in errors] == [
        ("spec", "http, tcp or tls must be provided in virtual service")]
