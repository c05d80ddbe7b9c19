"""services/pilot/compile/clusters.py and endpoints.py: services, endpoints and DestinationRules -> clusters."""

from __future__ import annotations

import textwrap

from proto.registry import Workload
from proto.xds import Endpoint, SubsetPolicy
from services.pilot.compile import MeshState, Stored, compile_mesh, diff
from services.pilot.validate import decode_documents

REVIEWS = "reviews.prod.svc.cluster.local"


def load(text: str):
    resources, errors, _ = decode_documents(textwrap.dedent(text))
    assert errors == [], errors
    return resources


def make_state(resources=(), workloads=(), revision: int = 0) -> MeshState:
    """resources: (yaml, revision[, created]); workloads: (Workload, revision)."""
    stored = {}
    for text, rev, *created in resources:
        for res in load(text):
            stored[(res.kind, res.metadata.namespace, res.metadata.name)] = Stored(res, rev, *created)
    return MeshState.build(stored, {w.id: (w, rev) for w, rev in workloads}, revision=revision)


def reviews(wid: str, address: str, version: str, healthy: bool = True) -> Workload:
    return Workload(id=wid, service="reviews", namespace="prod", address=address, service_port=9080,
                    inbound_port=15006, labels={"app": "reviews", "version": version}, healthy=healthy)


WORKLOADS = [(reviews("r2", "10.0.0.2", "v2"), 5), (reviews("r1", "10.0.0.1", "v1", healthy=False), 4)]

DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
"""


def test_registered_workloads_form_a_cluster_per_service_with_sorted_endpoints():
    clusters, routes = compile_mesh(make_state(workloads=WORKLOADS))
    assert routes == {}
    cluster = clusters[REVIEWS]
    assert (cluster.ports, cluster.lb, cluster.subsets, cluster.source) == ([9080], "LEAST_REQUEST", [], "")
    sidecar = {"sidecar": True, "identity": "spiffe://cluster.local/ns/prod/sa/default", "auto_mtls": [9080]}
    assert cluster.endpoints == [
        Endpoint(address="10.0.0.1", ports={9080: 15006}, labels={"app": "reviews", "version": "v1"},
                 healthy=False, workload="r1", workload_name="reviews-v1", **sidecar),
        Endpoint(address="10.0.0.2", ports={9080: 15006}, labels={"app": "reviews", "version": "v2"},
                 workload="r2", workload_name="reviews-v2", **sidecar),
    ]
    assert cluster.version == 5  # the newest workload


def test_a_destination_rule_sets_lb_and_subsets_and_raises_the_version():
    cluster = compile_mesh(make_state([(DR, 9)], WORKLOADS))[0][REVIEWS]
    assert cluster.lb == "RANDOM"
    assert cluster.subsets == [SubsetPolicy(name="v1", labels={"version": "v1"}),
                               SubsetPolicy(name="v2", labels={"version": "v2"}, lb="ROUND_ROBIN")]
    assert (cluster.source, cluster.version) == ("prod/reviews", 9)


def test_a_short_dr_host_resolves_in_the_drs_own_namespace():
    elsewhere = DR.replace("namespace: prod", "namespace: shop")
    clusters = compile_mesh(make_state([(elsewhere, 9)], WORKLOADS))[0]
    assert clusters[REVIEWS].source == ""
    assert clusters["reviews.shop.svc.cluster.local"].endpoints == []  # a DR names a host: it gets a cluster


def test_when_two_destination_rules_claim_a_host_the_oldest_wins():
    newer = DR.replace("name: reviews,", "name: aaa-newer,").replace("RANDOM", "ROUND_ROBIN")
    cluster = compile_mesh(make_state([(DR, 9), (newer, 11)], WORKLOADS))[0][REVIEWS]
    assert (cluster.source, cluster.lb) == ("prod/reviews", "RANDOM")


SE_STATIC = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: prod}
spec:
  hosts: [payments.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, targetPort: 8080}
  - {number: 443, name: https}
  - {number: 9000, name: admin}
  endpoints:
  - {address: 10.1.0.2, ports: {admin: 9999}, labels: {zone: b}}
  - {address: 10.1.0.1}
"""


def test_service_entry_endpoints_map_ports_by_name_then_target_port_then_number():
    cluster = compile_mesh(make_state([(SE_STATIC, 3)]))[0]["payments.example.com"]
    assert cluster.ports == [80, 443, 9000]
    assert [(e.address, e.ports) for e in cluster.endpoints] == [
        ("10.1.0.1", {80: 8080, 443: 443, 9000: 9000}),
        ("10.1.0.2", {80: 8080, 443: 443, 9000: 9999}),
    ]
    assert cluster.endpoints[1].labels == {"zone": "b"} and cluster.version == 3
    assert cluster.tcp_ports == [443]  # `https` by name: opaque to the mesh, so a CONNECT may tunnel to it


SE_SELECTOR = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: prod}
spec:
  hosts: [ratings.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: prod}
spec: {address: 10.2.0.1, ports: {http: 8080}, labels: {app: ratings, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: other}
spec: {address: 10.2.0.2, labels: {app: ratings}}
"""


def test_a_workload_selector_picks_workload_entries_and_workloads_of_its_namespace_only():
    local = Workload(id="rt-1", service="ratings-vm", namespace="prod", address="10.3.0.1",
                     labels={"app": "ratings"}, inbound_port=15106)
    remote = Workload(id="rt-2", service="ratings-vm", namespace="other", address="10.3.0.2",
                      labels={"app": "ratings"})
    cluster = compile_mesh(make_state([(SE_SELECTOR, 6)], [(local, 8), (remote, 9)]))[0][
        "ratings.prod.svc.cluster.local"]
    assert [(e.address, e.ports, e.workload) for e in cluster.endpoints] == [
        ("10.2.0.1", {9080: 8080}, "WorkloadEntry prod/vm-1"),
        ("10.3.0.1", {9080: 15106}, "rt-1"),
    ]
    assert cluster.version == 8


def test_endpoints_carry_their_workloads_name_and_cluster_for_metrics():
    """The registered name and cluster (`proxy run --workload-name/--cluster`), else <service>-<version>; a
    WorkloadEntry's endpoint is named after the entry (Istio's destination_workload for a VM)."""
    named = Workload(id="rt-1", service="ratings-vm", namespace="prod", address="10.3.0.1",
                     labels={"app": "ratings"}, workload_name="ratings-vm-blue", cluster="east")
    cluster = compile_mesh(make_state([(SE_SELECTOR, 6)], [(named, 8)]))[0]["ratings.prod.svc.cluster.local"]
    assert [(e.workload, e.workload_name, e.cluster) for e in cluster.endpoints] == [
        ("WorkloadEntry prod/vm-1", "vm-1", ""), ("rt-1", "ratings-vm-blue", "east")]


def test_a_dns_service_entry_without_endpoints_uses_its_host_as_the_endpoint():
    text = SE_STATIC.replace("STATIC", "DNS").split("  endpoints:")[0]
    cluster = compile_mesh(make_state([(text, 3)]))[0]["payments.example.com"]
    assert [(e.address, e.ports) for e in cluster.endpoints] == [
        ("payments.example.com", {80: 8080, 443: 443, 9000: 9000})]


def test_a_host_only_a_route_sends_to_gets_an_empty_cluster():
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: r, namespace: prod}
    spec:
      hosts: [reviews]
      http: [{route: [{destination: {host: ghost}}]}]
    """
    clusters = compile_mesh(make_state([(vs, 4)], WORKLOADS))[0]
    assert clusters["ghost.prod.svc.cluster.local"].endpoints == []
    assert clusters["ghost.prod.svc.cluster.local"].version == 4


def test_a_health_change_pushes_only_that_cluster():
    other = Workload(id="d1", service="details", namespace="prod", address="10.9.0.1")
    before = compile_mesh(make_state([(DR, 9)], [*WORKLOADS, (other, 6)]))
    healed = [(reviews("r2", "10.0.0.2", "v2"), 5), (reviews("r1", "10.0.0.1", "v1"), 12), (other, 6)]
    after = compile_mesh(make_state([(DR, 9)], healed), previous=before)
    changed_clusters, changed_routes, removed_clusters, _ = diff(*before, *after)
    assert [c.host for c in changed_clusters] == [REVIEWS]
    assert changed_clusters[0].version == 12 and changed_routes == [] and removed_clusters == []
    assert after[0]["details.prod.svc.cluster.local"] is before[0]["details.prod.svc.cluster.local"]


def test_a_new_revision_with_identical_content_keeps_the_old_version():
    before = compile_mesh(make_state([(DR, 9)], WORKLOADS))
    after = compile_mesh(make_state([(DR, 15)], WORKLOADS), previous=before)
    assert diff(*before, *after) == ([], [], [], [])
    assert after[0][REVIEWS].version == 9


def test_deleting_the_newest_input_still_moves_the_version_forward():
    before = compile_mesh(make_state([(DR, 9)], WORKLOADS))
    after = compile_mesh(make_state([], WORKLOADS, revision=20), previous=before)
    (changed,), _, _, _ = diff(*before, *after)
    assert changed.subsets == [] and changed.version == 20


def test_a_workload_serving_opaque_tcp_maps_that_port_to_its_inbound_tcp_listener():
    """`proxy run --app-tcp 5432=...` registers tcp_ports: the service gains the port, each endpoint maps it."""
    db = Workload(id="db1", service="db", namespace="prod", address="10.0.0.9", service_port=9080,
                  inbound_port=15006, tcp_ports={5432: 40001}, labels={"app": "db"})
    cluster = compile_mesh(make_state(workloads=[(db, 3)]))[0]["db.prod.svc.cluster.local"]
    assert cluster.ports == [5432, 9080]
    assert [e.ports for e in cluster.endpoints] == [{9080: 15006, 5432: 40001}]
    assert cluster.tcp_ports == [5432]  # the one a CONNECT may tunnel to (proxy/outbound/connect_policy.py)
