"""The troubleshooting commands' formatting, without a bus: proxy-config tables, proxy-status per kind, the
diff of pilot's snapshot against a proxy's dump, and which proxy a name means."""

from __future__ import annotations

import json

import pytest

from isthmus.config_view import cluster_rows, endpoint_rows, listener_rows, route_rows, secret_rows
from isthmus.errors import CliError
from isthmus.proxy_debug import resolve, subject_of
from isthmus.proxy_diff import diff, pilot_view, proxy_view
from isthmus.proxy_status import as_records, kind_state, wide_rows
from isthmus.tables import render
from proto.xds import ProxyStatus, ProxyStatusReply

HOST = "reviews.default.svc.cluster.local"
CLUSTER = {"host": HOST, "version": 9, "ports": [9080], "lb": "LEAST_REQUEST", "source": "default/reviews",
           "subsets": [{"name": "v1"}, {"name": "v2"}],
           "endpoints": [{"address": "10.0.0.1", "ports": {"9080": 19080}, "labels": {"version": "v1"},
                          "workload": "reviews-1", "auto_mtls": [9080]},
                         {"address": "10.0.0.2", "ports": {"9080": 19080}, "healthy": False}]}
ROUTE = {"host": HOST, "version": 9, "source": "default/reviews",
         "rules": [{"matches": [{"uri": {"prefix": "/api"}, "headers": {"end-user": {"exact": "jason"}}}],
                    "destinations": [{"host": HOST, "subset": "v2", "weight": 80},
                                     {"host": HOST, "subset": "v1", "weight": 20}]},
                   {"destinations": [{"host": HOST, "subset": "v1"}]}]}


def test_cluster_and_endpoint_rows_show_subsets_policy_and_health() -> None:
    _, rows = cluster_rows({"clusters": [CLUSTER]})
    assert rows == [[HOST, "9080", "v1,v2", "LEAST_REQUEST", "AUTO", "default/reviews", "2", "9"]]
    _, rows = endpoint_rows({"clusters": [CLUSTER]})
    assert rows[0] == ["10.0.0.1:19080", "HEALTHY", HOST, "reviews-1", "version=v1", "9080"]
    assert rows[1][1] == "UNHEALTHY"


def test_route_rows_show_matches_and_weighted_destinations() -> None:
    _, rows = route_rows({"routes": [ROUTE], "pending": [{"host": "x", "missing": ["x|v9"], "version": 3}]})
    assert rows[0] == [HOST, "/api* [end-user]", f"{HOST}|v2 80%, {HOST}|v1 20%", "default/reviews", "9"]
    assert rows[1][1:3] == ["/*", f"{HOST}|v1"]
    assert rows[2][1:3] == ["(pending)", "waits for x|v9"]


def test_listener_rows_show_the_inbound_mode_and_policies() -> None:
    section = {"proxy": {"outbound": "127.0.0.1:15001", "inbound": "0.0.0.0:15006", "app": "127.0.0.1:9080",
                         "tcp_inbound": {"3306": 15306}},
               "security": {"mtls_mode": "STRICT", "port_mtls": {"3306": "PERMISSIVE"},
                            "authorization": [{"name": "default/deny-all", "action": "DENY"}]}}
    _, rows = listener_rows(section)
    assert rows[1] == ["inbound", "0.0.0.0:15006", "mTLS STRICT -> app 127.0.0.1:9080; authz default/deny-all(DENY)"]
    assert rows[2] == ["tcp inbound 3306", ":15306", "opaque TCP, mTLS PERMISSIVE"]


def test_listener_rows_say_a_sidecar_without_its_security_entry_admits_nothing() -> None:
    from proxy.control.security_state import security_dump
    section = {"proxy": {"inbound": "0.0.0.0:15006", "app": "127.0.0.1:9080"}, "security": security_dump(None)}
    _, rows = listener_rows(section)
    assert rows[0][0] == "inbound" and rows[0][2].startswith("admits nothing: no security entry from pilot")


def test_secret_rows_name_each_certificate() -> None:
    cert = {"subject": "O=isthmus", "sans": ["URI:spiffe://cluster.local/ns/a/sa/web"], "serial": "ab",
            "not_after": "2026-12-01T00:00:00+00:00", "expires_in_s": 7200}
    _, rows = secret_rows({"workload": {"chain": [cert]}, "roots": [{**cert, "expires_in_s": -1}],
                           "credentials": [{"name": "edge", "chain": [cert], "ca": []}]})
    assert rows[0] == ["default", "Cert Chain", "O=isthmus", "URI:spiffe://cluster.local/ns/a/sa/web", "ab",
                       "2026-12-01T00:00:00+00:00", "2h"]
    assert rows[1][:2] == ["ROOTCA", "CA"] and rows[1][-1] == "EXPIRED"
    assert rows[2][0] == "kubernetes://edge"


def status(proxy_id: str, version: int, ok: bool = True, **kw: object) -> ProxyStatus:
    return ProxyStatus(proxy_id=proxy_id, version=version, ok=ok, updated_at=100.0, **kw)  # type: ignore[arg-type]


def test_each_kind_is_synced_stale_not_sent_or_rejected() -> None:
    assert kind_state(status("p", 10), 0) == "NOT SENT"
    assert kind_state(status("p", 10), 10) == "SYNCED"
    assert kind_state(status("p", 10), 12) == "STALE"
    assert kind_state(status("p", 12, ok=False), 12) == "REJECTED"
    assert kind_state(status("p", 12, ok=False), 8) == "SYNCED"  # an earlier change of it was applied
    reply = ProxyStatusReply(ok=True, version=12, kinds={"clusters": 12, "routes": 8},
                             workload_kinds={"p1": {"security": 11}},
                             proxies=[status("p1", 12, service="s", namespace="n", proxy_version="0.1.0")])
    assert wide_rows(reply, now=105.0)[0] == ["p1", "n", "s", "SYNCED", "SYNCED", "SYNCED", "SYNCED", "NOT SENT",
                                              "12", "12", "0.1.0", "5s ago"]
    record = as_records(reply, now=105.0)[0]
    assert record["kinds"]["security"] == {"state": "SYNCED", "pilot_version": 11}  # type: ignore[index]


def test_the_wide_table_splits_into_the_same_cells_as_its_rows() -> None:
    text = render(["NAME", "STATUS"], [["p1.default", "SYNCED"], ["p2", "STALE"]])
    assert [line.split() for line in text.splitlines()] == [["NAME", "STATUS"], ["p1.default", "SYNCED"],
                                                             ["p2", "STALE"]]


def test_the_diff_says_match_per_kind_and_shows_what_differs() -> None:
    from proxy.control.security_state import security_dump
    snapshot = json.dumps({"version": 9, "clusters": [CLUSTER], "routes": [ROUTE], "security": None, "gateway": None})
    held = {"clusters": [{**CLUSTER, "retained": []}], "routes": [ROUTE],
            "security": security_dump(None)}  # neither holds an entry for it (both say pending)
    same, lines = diff(pilot_view(snapshot), proxy_view(held), "p1")
    assert same and lines[:2] == ["Clusters Match", "Routes Match"]
    stale = {**held, "routes": [{**ROUTE, "version": 8}]}
    same, lines = diff(pilot_view(snapshot), proxy_view(stale), "p1")
    assert not same and "Routes Don't Match" in lines
    assert '-    "version": 9' in lines and '+    "version": 8' in lines and "+++ p1" in lines


def test_a_proxy_is_named_by_id_service_namespace_or_unique_prefix() -> None:
    proxies = [status("reviews-vm1-15006.default", 1, service="reviews", namespace="default", bus_user="proxy.ab12"),
               status("reviews-vm2-15006.default", 1, service="reviews", namespace="default"),
               status("ratings-vm1-15006.prod", 1, service="ratings", namespace="prod")]
    assert resolve(proxies, "reviews-vm2-15006.default").proxy_id == "reviews-vm2-15006.default"
    assert resolve(proxies, "ratings.prod").proxy_id == "ratings-vm1-15006.prod"
    assert resolve(proxies, "reviews-vm1").proxy_id == "reviews-vm1-15006.default"
    with pytest.raises(CliError, match="names 2 proxies"):
        resolve(proxies, "reviews")
    with pytest.raises(CliError, match=r"no proxy .details.*admin port .*config_dump"):
        resolve(proxies, "details")
    assert subject_of(proxies[0]) == "isthmus.proxy.debug.ab12"
    with pytest.raises(CliError, match="no bus credential it could verify"):
        subject_of(proxies[1])
    with pytest.raises(CliError):
        subject_of(status("x", 1, bus_user="proxy.a.>"))  # never a wildcard or a second token


def test_a_gateways_listeners_name_each_port_with_its_servers() -> None:
    section = {"proxy": {"gateway": True, "ports": {"80": "0.0.0.0:8080", "443": "0.0.0.0:8443"}},
               "gateway": {"ports": [{"port": 443, "servers": [
                   {"gateway": "default/edge", "protocol": "HTTPS", "hosts": ["a.example"], "tls": {"mode": "SIMPLE"}}]}]}}
    _, rows = listener_rows(section)
    assert rows == [["gateway 80", "0.0.0.0:8080", "no Gateway server on this port"],
                    ["gateway 443", "0.0.0.0:8443", "HTTPS a.example (default/edge) tls SIMPLE"]]
