"""services/pilot/compile/gateway.py: Istio's ingress and egress task YAML -> the GatewayListeners a registered
gateway workload gets; endpoints of gateway workloads; the pusher's deltas and snapshots."""

from __future__ import annotations

from pathlib import Path

import msgspec

from proto.gateway_xds import GatewayListeners, GatewayServer, ServerTls, TlsRule
from proto.registry import Workload
from proto.routes import RouteMatch, StringMatch, TcpRule, WeightedDestination
from services.pilot.compile import MeshState, Stored, compile_mesh, compile_with_gateways
from services.pilot.compile.gateway import build_gateways
from services.pilot.pusher import Pusher
from services.pilot.validate import decode_documents

YAML = Path(__file__).resolve().parent / "gateway_yaml"
INGRESS = Workload(id="ingress-1", service="istio-ingressgateway", namespace="istio-system", address="10.0.0.9",
                   labels={"istio": "ingressgateway", "app": "istio-ingressgateway"}, gateway=True,
                   gateway_ports={80: 8080, 443: 8443, 8080: 8081})
EGRESS = Workload(id="egress-1", service="istio-egressgateway", namespace="istio-system", address="10.0.0.8",
                  labels={"istio": "egressgateway"}, gateway=True, gateway_ports={80: 8080})


def resources(*texts: str, namespace: str = "default", start: int = 10) -> dict:
    out = {}
    revision = start
    for text in texts:
        decoded, errors, _ = decode_documents(text, default_namespace=namespace)
        assert errors == [], errors
        for res in decoded:
            revision += 1
            out[(res.kind, res.metadata.namespace, res.metadata.name)] = Stored(res, revision, revision)
    return out


def state(*texts: str, workloads=(INGRESS, EGRESS), namespace: str = "default") -> MeshState:
    return MeshState.build(resources(*texts, namespace=namespace), {w.id: (w, 5) for w in workloads}, revision=99)


def task(name: str) -> str:
    return (YAML / name).read_text()


def only_port(listeners: GatewayListeners, port: int):
    [config] = [p for p in listeners.ports if p.port == port]
    return config


def test_the_httpbin_ingress_task_routes_by_host_and_path():
    g = build_gateways(state(task("httpbin-gateway.yaml")))
    ingress = g["ingress-1"]
    assert ingress.namespace == "istio-system" and ingress.gateways == ["default/httpbin-gateway"]
    port = only_port(ingress, 80)
    assert port.servers == [GatewayServer(gateway="default/httpbin-gateway", port=80, protocol="HTTP",
                                          hosts=["httpbin.example.com"], name="http")]
    [vh] = port.virtual_hosts
    assert vh.domains == ["httpbin.example.com"] and vh.route.source == "default/httpbin"
    [rule] = vh.route.rules
    assert rule.matches == [RouteMatch(uri=StringMatch(prefix="/status")), RouteMatch(uri=StringMatch(prefix="/delay"))]
    assert rule.destinations == [WeightedDestination(host="httpbin.default.svc.cluster.local", port=8000)]
    assert g["egress-1"].ports == [] and g["egress-1"].gateways == []  # the selector picks the ingress only


def test_bookinfo_gateway_star_host_on_port_8080():
    text = task("bookinfo-gateway.yaml")
    port = only_port(build_gateways(state(text, namespace="bookinfo"))["ingress-1"], 8080)
    [vh] = port.virtual_hosts
    assert vh.domains == ["*"]
    assert vh.route.rules[0].destinations[0].host == "productpage.bookinfo.svc.cluster.local"
    assert len(vh.route.rules[0].matches) == 5


def test_secure_ingress_simple_with_credential_name():
    port = only_port(build_gateways(state(task("secure-simple.yaml")))["ingress-1"], 443)
    [server] = port.servers
    assert server.protocol == "HTTPS" and server.tls == ServerTls(mode="SIMPLE", credential_name="httpbin-credential")
    assert [vh.domains for vh in port.virtual_hosts] == [["httpbin.example.com"]]


def test_secure_ingress_several_hosts_by_sni_each_with_its_certificate_and_routes():
    simple = task("secure-simple.yaml").split("---", 1)[1]  # the httpbin VirtualService of the first step
    port = only_port(build_gateways(state(task("secure-multi-host.yaml"), simple))["ingress-1"], 443)
    assert [(s.hosts, s.tls.credential_name) for s in port.servers] == [
        (["httpbin.example.com"], "httpbin-credential"), (["helloworld.example.com"], "helloworld-credential")]
    routes = {vh.domains[0]: vh.route for vh in port.virtual_hosts}
    assert routes["helloworld.example.com"].rules[0].destinations[0].host == "helloworld.default.svc.cluster.local"
    assert routes["httpbin.example.com"].rules[0].destinations[0].port == 8000


def test_secure_ingress_mutual():
    port = only_port(build_gateways(state(task("secure-mutual.yaml")))["ingress-1"], 443)
    assert port.servers[0].tls == ServerTls(mode="MUTUAL", credential_name="httpbin-credential")


def test_passthrough_task_routes_tls_by_sni_without_terminating():
    port = only_port(build_gateways(state(task("passthrough-nginx.yaml")))["ingress-1"], 443)
    assert port.servers[0].tls.mode == "PASSTHROUGH"
    assert port.virtual_hosts == [] and port.tcp_routes == []
    assert port.tls_routes == [TlsRule(sni_hosts=["nginx.example.com"], source="default/nginx", destinations=[
        WeightedDestination(host="my-nginx.default.svc.cluster.local", port=443)])]


def test_egress_gateway_task_splits_the_vs_between_sidecars_and_the_gateway():
    s = state(task("egress-gateway-http.yaml"))
    clusters, routes, gateways = compile_with_gateways(s)
    # sidecars: the mesh match only, to the egress gateway's subset `cnn`
    [sidecar_rule] = routes["edition.cnn.com"].rules
    assert sidecar_rule.destinations[0].host == "istio-egressgateway.istio-system.svc.cluster.local"
    assert sidecar_rule.destinations[0].subset == "cnn" and not sidecar_rule.destinations[0].undefined
    # the egress gateway: the istio-egressgateway match only, out to edition.cnn.com
    port = only_port(gateways["egress-1"], 80)
    [vh] = port.virtual_hosts
    assert vh.domains == ["edition.cnn.com"]
    [rule] = vh.route.rules
    assert rule.matches == [RouteMatch(port=80)]
    assert rule.destinations == [WeightedDestination(host="edition.cnn.com", port=80, weight=100)]
    # the gateway's endpoint: its listen port, no sidecar, no auto mTLS
    [ep] = clusters["istio-egressgateway.istio-system.svc.cluster.local"].endpoints
    assert ep.ports == {80: 8080} and not ep.sidecar and ep.auto_mtls == [] and ep.identity == ""
    assert gateways["ingress-1"].ports == []


def test_a_match_for_another_port_or_gateway_is_left_out_and_server_namespaces_restrict_binding():
    text = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["prod/*.example.com", "./own.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: prod}
spec:
  hosts: [a.example.com, "*"]
  gateways: [istio-system/gw]
  http:
  - match: [{port: 81}]
    route: [{destination: {host: x}}]
  - match: [{gateways: [other/gw]}]
    route: [{destination: {host: y}}]
  - route: [{destination: {host: z}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: dev}
spec:
  hosts: [b.example.com]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: w}}]
"""
    port = only_port(build_gateways(state(text))["ingress-1"], 80)
    routes = {vh.domains[0]: vh.route for vh in port.virtual_hosts}
    # `*` of prod's VS meets the server's `*.example.com` (the more specific), never `own.example.com` (istio-system)
    assert set(routes) == {"a.example.com", "*.example.com"}
    assert [r.destinations[0].host for r in routes["a.example.com"].rules] == ["z.prod.svc.cluster.local"]


def test_virtual_services_for_one_host_merge_oldest_first_at_a_gateway():
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [httpbin.example.com]
  gateways: [httpbin-gateway]
  http:
  - match: [{{uri: {{prefix: /{name}}}}}]
    route: [{{destination: {{host: {name}}}}}]
"""
    port = only_port(build_gateways(state(task("httpbin-gateway.yaml").split("---")[0], vs.format(name="older"),
                                          vs.format(name="newer")))["ingress-1"], 80)
    [vh] = port.virtual_hosts
    assert [r.destinations[0].host.split(".")[0] for r in vh.route.rules] == ["older", "newer"]
    assert vh.route.source == "default/older"


def test_servers_on_one_port_merge_across_gateways_and_conflicts_keep_the_older():
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: {proto}, protocol: {proto}}}
    hosts: [{host}]
    tls: {{mode: PASSTHROUGH}}
"""
    s = state(gw.format(name="a", proto="TLS", host="a.example.com"), gw.format(name="b", proto="TLS", host="a.example.com"),
              gw.format(name="c", proto="HTTPS", host="c.example.com"))
    port = only_port(build_gateways(s)["ingress-1"], 443)
    assert [(x.gateway, x.hosts) for x in port.servers] == [("default/a", ["a.example.com"]),
                                                           ("default/c", ["c.example.com"])]


def test_tcp_and_terminated_tls_servers_take_tcp_routes():
    text = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {credentialName: c}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db.example.com]
  gateways: [gw]
  tcp:
  - route: [{destination: {host: db}}]
"""
    g = build_gateways(state(text))["ingress-1"]
    for number in (80, 443):
        port = only_port(g, number)
        assert port.tcp_routes == [TcpRule(destinations=[WeightedDestination(host="db.default.svc.cluster.local")])]
    assert only_port(g, 443).servers[0].tls.mode == "SIMPLE"  # unset mode with a certificate


def test_an_empty_selector_selects_every_gateway_workload():
    selector = "  selector:\n    istio: ingressgateway # use Istio default gateway implementation\n"
    assert selector in task("httpbin-gateway.yaml")
    text = task("httpbin-gateway.yaml").replace(selector, "")
    g = build_gateways(state(text))
    assert g["ingress-1"].gateways == g["egress-1"].gateways == ["default/httpbin-gateway"]


def test_sidecars_never_get_gateway_only_virtual_services():
    _, routes = compile_mesh(state(task("httpbin-gateway.yaml")))
    assert "httpbin.example.com" not in routes


def test_pusher_carries_gateways_as_deltas_and_in_snapshots_and_removes_them():
    pusher = Pusher()
    first = pusher.recompile(state(task("httpbin-gateway.yaml")), 20)
    assert first is not None and {g.workload for g in first.gateways} == {"ingress-1", "egress-1"}
    assert [g.workload for g in pusher.snapshot().gateways] == ["egress-1", "ingress-1"]
    changed = task("httpbin-gateway.yaml").replace("prefix: /delay", "prefix: /headers")
    resources_ = resources(changed, start=30)
    delta = pusher.recompile(MeshState.build(resources_, {w.id: (w, 5) for w in (INGRESS, EGRESS)}, revision=40), 40)
    assert delta is not None and [g.workload for g in delta.gateways] == ["ingress-1"]  # egress-1 did not change
    assert delta.gateways[0].version > first.gateways[1].version
    assert pusher.recompile(MeshState.build(resources_, {w.id: (w, 5) for w in (INGRESS, EGRESS)}, revision=41), 41) is None
    gone = pusher.recompile(MeshState.build(resources_, {"ingress-1": (INGRESS, 5)}, revision=42), 42)
    assert gone is not None and gone.removed_gateways == ["egress-1"] and gone.gateways == []
    assert msgspec.json.decode(msgspec.json.encode(pusher.snapshot())) is not None


def test_a_gateway_endpoint_has_no_sidecar_even_with_a_tls_mode_label_and_serves_service_entry_ports():
    labelled = msgspec.structs.replace(EGRESS, labels={"istio": "egressgateway", "security.istio.io/tlsMode": "istio"})
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: egress, namespace: istio-system}
spec:
  hosts: [egress.example.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {istio: egressgateway}}
"""
    clusters, _, _ = compile_with_gateways(state(se, workloads=(labelled,)))
    [ep] = clusters["istio-egressgateway.istio-system.svc.cluster.local"].endpoints
    assert (ep.sidecar, ep.identity, ep.auto_mtls, ep.ports) == (False, "", [], {80: 8080})
    [selected] = clusters["egress.example.internal"].endpoints
    assert (selected.sidecar, selected.ports) == (False, {80: 8080})


def test_a_gateway_route_to_a_subset_no_destination_rule_defines_is_marked_undefined():
    text = task("httpbin-gateway.yaml").replace("        host: httpbin\n", "        host: httpbin\n        subset: v9\n")
    _, _, gateways = compile_with_gateways(state(text))
    [dest] = only_port(gateways["ingress-1"], 80).virtual_hosts[0].route.rules[0].destinations
    assert dest.subset == "v9" and dest.undefined
