"""proxy/inbound/authz/engine.py: actions and their order, which policy a denial names, the details the
access log gets, and the TCP rules (HTTP-only fields, as istio's model.go checkError)."""

from __future__ import annotations

import pytest

from tests.proxy.authz.helpers import PLAINTEXT, SLEEP, caller, decide, policy, request
from proxy.core.errors import AccessDenied
from proxy.inbound.authz.engine import Authorization, policy_id

GET_ONLY = {"to": [{"operation": {"methods": ["GET"]}}]}
ADMIN = {"to": [{"operation": {"paths": ["/admin*"]}}]}


def test_no_policy_no_check():
    authz = Authorization([])
    assert authz.http is None and authz.tcp is None


def test_no_allow_policy_allows_and_an_allow_policy_denies_what_it_does_not_match():
    assert decide([policy("foo/d", "DENY", ADMIN)], request("/x")) is None
    assert decide([policy("foo/a", "ALLOW", GET_ONLY)], request(method="GET")) is None
    assert decide([policy("foo/a", "ALLOW", GET_ONLY)], request(method="POST")) == "none"


def test_an_allow_policy_without_rules_denies_everything_and_an_empty_rule_allows_everything():
    assert decide([policy("foo/deny-all", "ALLOW", no_rules=True)], request()) == "none"
    assert decide([policy("foo/allow-all", "ALLOW", {})], request(ds=PLAINTEXT)) is None
    assert decide([policy("foo/d", "DENY", no_rules=True)], request()) is None  # matches nothing: denies nothing
    assert decide([policy("foo/d", "DENY", {})], request()) == "ns[foo]-policy[d]-rule[0]"


def test_deny_comes_before_allow():
    assert decide([policy("foo/allow-all", "ALLOW", {}), policy("foo/no-admin", "DENY", ADMIN)],
                  request("/admin")) == "ns[foo]-policy[no-admin]-rule[0]"


def test_allow_policies_and_rules_are_ored():
    policies = [policy("foo/a", "ALLOW", GET_ONLY), policy("foo/b", "ALLOW", {"to": [{"operation": {"paths": ["/p"]}}]})]
    assert decide(policies, request("/p", method="POST")) is None
    assert decide(policies, request("/q", method="POST")) == "none"


def test_from_and_to_written_as_two_rules_are_ored():
    # istio/istio#24665: two rules (one `from`, one `to`) allow either, not both together
    two_rules = policy("foo/p", "ALLOW", {"from": [{"source": {"principals": ["x/ns/y/sa/z"]}}]}, GET_ONLY)
    assert decide([two_rules], request(method="GET")) is None
    one_rule = policy("foo/p", "ALLOW", {"from": [{"source": {"principals": ["x/ns/y/sa/z"]}}], **GET_ONLY})
    assert decide([one_rule], request(method="GET")) == "none"


def test_a_denial_names_the_first_matching_rule_in_envoys_name_order():
    rules = [{"to": [{"operation": {"paths": [f"/r{i}"]}}]} for i in range(11)] + [{}]
    # rule[11] ({}: everything) and rule[2] both match /r2; Envoy's std::map puts "rule[11]" before "rule[2]"
    assert decide([policy("foo/d", "DENY", *rules)], request("/r2")) == "ns[foo]-policy[d]-rule[11]"
    assert decide([policy("foo/b", "DENY", {}), policy("foo/a", "DENY", {})], request()) == "ns[foo]-policy[a]-rule[0]"


def test_a_denial_and_an_audit_leave_envoys_details_on_the_request():
    head = request("/admin")
    check = Authorization([policy("foo/audit", "AUDIT", {}), policy("foo/deny", "DENY", ADMIN)]).http
    with pytest.raises(AccessDenied) as denied:
        check(head)  # type: ignore[misc]
    assert denied.value.policy == "ns[foo]-policy[deny]-rule[0]"
    assert head.details == ("rbac_audit_matched_policy[ns[foo]-policy[audit]-rule[0]],"
                            "rbac_access_denied_matched_policy[ns[foo]-policy[deny]-rule[0]]")
    head = request("/x")
    check(head)  # type: ignore[misc]
    assert head.details == "rbac_audit_matched_policy[ns[foo]-policy[audit]-rule[0]]"
    head = request("/x", method="POST")
    with pytest.raises(AccessDenied):
        Authorization([policy("foo/a", "ALLOW", GET_ONLY)]).http(head)  # type: ignore[misc]
    assert head.details == "rbac_access_denied_matched_policy[none]"


def test_audit_never_blocks_and_a_request_it_does_not_match_has_no_details():
    head = request("/x")
    Authorization([policy("foo/audit", "AUDIT", ADMIN)]).http(head)  # type: ignore[misc]
    assert head.details == ""
    assert decide([policy("foo/audit", "AUDIT", {})], request("/admin")) is None


def test_policy_ids_are_envoys_with_whitespace_sanitized():
    assert policy_id("foo/deny admin", 3) == "ns[foo]-policy[deny_admin]-rule[3]"


# --- TCP --------------------------------------------------------------------------------------------------
def tcp(policies, ds=None):
    check = Authorization(policies).tcp
    assert check is not None
    return check(ds or caller())


def test_tcp_rules_on_principals_namespaces_ports_and_addresses():
    allow_foo = policy("foo/a", "ALLOW", {"from": [{"source": {"namespaces": ["foo"]}}],
                                          "to": [{"operation": {"ports": ["8080"]}}]})
    assert tcp([allow_foo]) == (True, "")
    assert tcp([allow_foo], caller(port=5432)) == (False, "rbac_access_denied_matched_policy[none]")
    assert tcp([allow_foo], PLAINTEXT)[0] is False
    deny_bar = policy("foo/d", "DENY", {"from": [{"source": {"notNamespaces": ["foo"]}}]})
    assert tcp([deny_bar]) == (True, "")
    assert tcp([deny_bar], caller("cluster.local/ns/bar/sa/x")) == (
        False, "rbac_access_denied_matched_policy[ns[foo]-policy[d]-rule[0]]")


@pytest.mark.parametrize("http_only", [
    {"to": [{"operation": {"methods": ["GET"]}}]},
    {"to": [{"operation": {"paths": ["/x"]}}]},
    {"to": [{"operation": {"hosts": ["app"]}}]},
    {"from": [{"source": {"requestPrincipals": ["*"]}}]},
    {"when": [{"key": "request.headers[x]", "values": ["1"]}]},
    {"when": [{"key": "request.auth.claims[iss]", "values": ["x"]}]},
])
def test_an_allow_rule_with_an_http_only_field_never_matches_tcp(http_only):
    # model.go checkError: for ALLOW the whole rule is dropped ("a smaller allow policy")
    rule = {"from": [{"source": {"principals": [SLEEP]}}], **http_only}
    assert tcp([policy("foo/a", "ALLOW", rule)]) == (False, "rbac_access_denied_matched_policy[none]")
    # ... even when another `to` entry of the rule would match TCP
    with_ports = {"to": [{"operation": {"ports": ["8080"]}}, {"operation": {"methods": ["GET"]}}]}
    assert tcp([policy("foo/a", "ALLOW", with_ports)])[0] is False
    assert tcp([policy("foo/a", "ALLOW", rule), policy("foo/b", "ALLOW", {"to": [{"operation": {"ports": [8080]}}]})]) \
        == (True, "")


def test_a_deny_rule_with_an_http_only_field_drops_just_that_field_on_tcp():
    # model.go checkError: for DENY and AUDIT the field is ignored ("a wider deny or audit policy")
    deny_get = policy("foo/d", "DENY", {"to": [{"operation": {"methods": ["GET"]}}]})
    assert tcp([deny_get]) == (False, "rbac_access_denied_matched_policy[ns[foo]-policy[d]-rule[0]]")
    scoped = policy("foo/d", "DENY", {"from": [{"source": {"namespaces": ["bar"]}}],
                                      "to": [{"operation": {"methods": ["GET"]}}]})
    assert tcp([scoped]) == (True, "")  # the rest of the rule (namespace bar) still has to match
    audit = policy("foo/au", "AUDIT", {"when": [{"key": "request.headers[x]", "values": ["1"]}]})
    assert tcp([audit]) == (True, "rbac_audit_matched_policy[ns[foo]-policy[au]-rule[0]]")


def test_the_http_check_keeps_the_http_only_fields():
    deny_get = policy("foo/d", "DENY", {"to": [{"operation": {"methods": ["GET"]}}]})
    assert decide([deny_get], request(method="POST")) is None


def test_rule_count_for_the_config_dump():
    assert Authorization([policy("foo/a", "ALLOW", {}, {}), policy("foo/b", "DENY", no_rules=True)]).rules == 2
