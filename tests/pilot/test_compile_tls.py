"""DestinationRule tls in compiled clusters (compile/tls.py, proto.xds.dr_tls) and the auto mTLS inputs of each
endpoint (compile/automtls.py), with the client's decision (proto.xds.client_tls)."""

from __future__ import annotations

import pytest

from proto.registry import Workload
from proto.xds import AUTO_MTLS, PLAINTEXT, ClientTls, ClusterConfig, Endpoint, client_tls, dr_tls
from services.pilot.compile import compile_mesh
from tests.pilot.test_compile_clusters import make_state
from tests.pilot.test_peer_authn import pa

DB = "db.prod.svc.cluster.local"
ISTIO = ClientTls(mode="ISTIO_MUTUAL")
FILES = dict(client_certificate="/c.pem", private_key="/k.pem", ca_certificates="/ca.pem")

MERGE_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: prod}
spec:
  host: db
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 5432}
      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, sni: db.example}
    - port: {number: 80}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: plain
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: DISABLE}
      portLevelSettings:
      - port: {number: 443}
        tls: {mode: SIMPLE, insecureSkipVerify: true}
      - port: {number: 81}
        loadBalancer: {simple: RANDOM}
  - name: lb-only
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}
  - name: bare
    labels: {version: v3}
"""


def db_cluster(text: str = MERGE_DR, workloads=()) -> ClusterConfig:
    return compile_mesh(make_state([(text, 4)], workloads))[0][DB]


@pytest.mark.parametrize("subset, port, expected", [
    (None, 9080, ISTIO),  # top level
    (None, 5432, ClientTls(mode="MUTUAL", sni="db.example", **FILES)),  # top level's port entry
    (None, 80, None),  # a port entry without tls replaces the level for that port: auto mTLS decides
    ("plain", 9080, ClientTls(mode="DISABLE")),  # the subset's own tls beats the top level's
    ("plain", 5432, ClientTls(mode="DISABLE")),  # ... and the top level's port entry (Istio's merge)
    ("plain", 443, ClientTls(mode="SIMPLE", insecure_skip_verify=True)),  # the subset's port entry beats all
    ("plain", 81, None),  # the subset's port entry without tls: auto
    ("lb-only", 9080, ISTIO),  # a subset policy without tls inherits the top level's
    ("lb-only", 5432, ClientTls(mode="MUTUAL", sni="db.example", **FILES)),
    ("bare", 80, None),  # a subset without a policy uses the cluster's, port entries included
    ("bare", 9080, ISTIO),
    ("no-such-subset", 9080, ISTIO),
])
def test_dr_tls_merges_levels_as_istios_merge_subset_traffic_policy(subset, port, expected):
    assert dr_tls(db_cluster(), subset, port) == expected


def test_the_cluster_carries_each_levels_tls_as_written():
    cluster = db_cluster()
    assert cluster.tls == ISTIO and set(cluster.port_tls) == {5432, 80} and cluster.port_tls[80] is None
    bare = next(s for s in cluster.subsets if s.name == "bare")
    assert (bare.tls, bare.port_tls) == (None, {})


def test_no_destination_rule_tls_leaves_the_decision_to_auto_mtls():
    plain_dr = MERGE_DR.split("  trafficPolicy:")[0] + "  subsets: [{name: v1, labels: {version: v1}}]\n"
    cluster = db_cluster(plain_dr)
    assert cluster.tls is None and cluster.port_tls == {} and dr_tls(cluster, "v1", 9080) is None


def workload(wid: str, labels: dict[str, str], namespace: str = "prod", **kw) -> Workload:
    return Workload(id=wid, service="db", namespace=namespace, address=f"10.0.0.{len(wid)}", service_port=9080,
                    labels=labels, **kw)


def endpoints(resources=(), workloads=(), host: str = DB) -> dict[str, Endpoint]:
    """By workload id, or by address for a ServiceEntry's (they share its name as `workload`)."""
    cluster = compile_mesh(make_state(resources, workloads))[0][host]
    return {e.address if e.workload.startswith("ServiceEntry") else e.workload: e for e in cluster.endpoints}


def test_a_registered_workload_has_a_sidecar_with_its_spiffe_identity():
    (ep,) = endpoints(workloads=[(workload("d1", {"app": "db"}, service_account="db-sa"), 3)]).values()
    assert (ep.sidecar, ep.identity, ep.auto_mtls) == (True, "spiffe://cluster.local/ns/prod/sa/db-sa", [9080])


def test_the_trust_domain_setting_names_the_identity():
    state = make_state(workloads=[(workload("d1", {"app": "db"}), 3)])
    state.trust_domain = "corp.example"
    (ep,) = compile_mesh(state)[0][DB].endpoints
    assert ep.identity == "spiffe://corp.example/ns/prod/sa/default"


def test_the_tls_mode_label_overrides_what_a_registered_workload_would_have():
    (ep,) = endpoints(workloads=[(workload("d1", {"security.istio.io/tlsMode": "disabled"}), 3)]).values()
    assert (ep.sidecar, ep.identity, ep.auto_mtls) == (False, "", [])


@pytest.mark.parametrize("policy, auto", [
    (pa("default", "istio-system", "{mtls: {mode: STRICT}}"), [9080]),
    (pa("default", "istio-system", "{mtls: {mode: PERMISSIVE}}"), [9080]),
    (pa("default", "prod", "{mtls: {mode: DISABLE}}"), []),
    (pa("db", "prod", "{selector: {matchLabels: {app: db}}, mtls: {mode: DISABLE}}"), []),
    # portLevelMtls names the workload port: the app's 8080, not the service port 9080
    (pa("db", "prod", "{selector: {matchLabels: {app: db}}, portLevelMtls: {8080: {mode: DISABLE}}}"), []),
    (pa("db", "prod", "{selector: {matchLabels: {app: db}}, portLevelMtls: {9080: {mode: DISABLE}}}"), [9080]),
])
def test_auto_mtls_follows_the_endpoints_own_effective_mode_for_its_workload_port(policy, auto):
    registered = workload("d1", {"app": "db"}, app_ports={9080: 8080})
    (ep,) = endpoints([(policy, 5)], [(registered, 3)]).values()
    assert ep.sidecar and ep.auto_mtls == auto


def test_a_strict_workload_in_a_disable_namespace_still_gets_mtls():
    policies = [(pa("default", "prod", "{mtls: {mode: DISABLE}}"), 5),
                (pa("db", "prod", "{selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}"), 6)]
    eps = endpoints(policies, [(workload("d1", {"app": "db"}), 3), (workload("d22", {"app": "other"}), 3)])
    assert (eps["d1"].auto_mtls, eps["d22"].auto_mtls) == ([9080], [])


def test_an_old_proxy_without_app_ports_is_taken_to_listen_on_the_service_port():
    policy = pa("db", "prod", "{selector: {matchLabels: {app: db}}, portLevelMtls: {9080: {mode: DISABLE}}}")
    (ep,) = endpoints([(policy, 5)], [(workload("d1", {"app": "db"}), 3)]).values()
    assert ep.auto_mtls == []


SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pay, namespace: prod}
spec:
  hosts: [pay.example.com]
  location: LOCATION
  resolution: STATIC
  ports: [{number: 443, name: https, protocol: HTTPS, targetPort: 8443}]
  endpoints:
  - {address: 10.1.0.1}
  - {address: 10.1.0.2, labels: {security.istio.io/tlsMode: istio}}
  - {address: 10.1.0.3, serviceAccount: pay}
  - {address: 10.1.0.4, serviceAccount: pay, labels: {security.istio.io/tlsMode: disabled}}
"""


def test_service_entry_endpoints_have_a_sidecar_only_by_label_or_service_account_as_istio():
    eps = endpoints([(SE.replace("LOCATION", "MESH_INTERNAL"), 3)], host="pay.example.com")
    got = [(address, e.sidecar, e.identity, e.auto_mtls) for address, e in sorted(eps.items())]
    assert got == [("10.1.0.1", False, "", []),
                   ("10.1.0.2", True, "", [443]),  # labelled, no account: no identity beyond the bundle
                   ("10.1.0.3", True, "spiffe://cluster.local/ns/prod/sa/pay", [443]),
                   ("10.1.0.4", False, "", [])]  # the label wins over the account


def test_a_mesh_external_service_entry_never_gets_auto_mtls():
    eps = endpoints([(SE.replace("LOCATION", "MESH_EXTERNAL"), 3)], host="pay.example.com").values()
    assert all(e.auto_mtls == [] for e in eps) and any(e.sidecar for e in eps)


def test_a_workload_entrys_port_level_mode_is_read_at_its_target_port():
    text = SE.replace("LOCATION", "MESH_INTERNAL") + """
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pay, namespace: prod}
spec:
  selector: {matchLabels: {app: pay}}
  portLevelMtls: {8443: {mode: DISABLE}}
"""
    text = text.replace("{address: 10.1.0.3, serviceAccount: pay}", "{address: 10.1.0.3, serviceAccount: pay, "
                                                                    "labels: {app: pay}}")
    eps = endpoints([(text, 3)], host="pay.example.com")
    assert eps["10.1.0.3"].auto_mtls == [] and eps["10.1.0.2"].auto_mtls == [443]


@pytest.mark.parametrize("subset, port, sidecar_ep, plain_ep", [
    (None, 9080, ISTIO, ISTIO),  # DR tls set: that, whatever the endpoint
    ("plain", 9080, ClientTls(mode="DISABLE"), ClientTls(mode="DISABLE")),
    (None, 80, AUTO_MTLS, PLAINTEXT),  # no DR tls for port 80: auto mTLS by endpoint
])
def test_the_clients_decision_is_the_destination_rules_tls_else_auto_mtls(subset, port, sidecar_ep, plain_ep):
    cluster = db_cluster()
    with_sidecar = Endpoint(address="a", ports={port: 1}, sidecar=True, auto_mtls=[port])
    without = Endpoint(address="b", ports={port: 1})
    assert client_tls(cluster, subset, port, with_sidecar) == sidecar_ep
    assert client_tls(cluster, subset, port, without) == plain_ep


def test_a_peer_authentication_change_changes_the_endpoints_of_clusters_that_reach_the_workload():
    w = [(workload("d1", {"app": "db"}), 3)]
    before = compile_mesh(make_state([], w))
    after = compile_mesh(make_state([(pa("db", "prod", "{selector: {matchLabels: {app: db}}, mtls: {mode: DISABLE}}"),
                                      9)], w), previous=before)
    assert before[0][DB].endpoints[0].auto_mtls == [9080] and after[0][DB].endpoints[0].auto_mtls == []
    assert after[0][DB].version > before[0][DB].version


def test_workload_entries_a_service_entry_selects_follow_the_same_rules():
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: prod}
spec:
  hosts: [vm.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: with-account, namespace: prod}
spec: {address: 10.2.0.1, labels: {app: vm}, serviceAccount: vm-sa, ports: {http: 8080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bare, namespace: prod}
spec: {address: 10.2.0.2, labels: {app: vm}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: vm, namespace: prod}
spec: {selector: {matchLabels: {app: vm}}, mtls: {mode: STRICT}, portLevelMtls: {80: {mode: DISABLE}}}
"""
    cluster = compile_mesh(make_state([(text, 3)]))[0]["vm.example.com"]
    eps = {e.workload: e for e in cluster.endpoints}
    account, bare = eps["WorkloadEntry prod/with-account"], eps["WorkloadEntry prod/bare"]
    # port 80 of the service reaches the VM's 8080, which portLevelMtls leaves STRICT
    assert (account.sidecar, account.identity, account.auto_mtls) == (True, "spiffe://cluster.local/ns/prod/sa/vm-sa",
                                                                      [80])
    assert (bare.sidecar, bare.auto_mtls) == (False, [])
