"""Rule.to.operation fields (leaves.py), paths as Istio normalizes them, and the path bypasses Istio users met."""

from __future__ import annotations

import pytest

from tests.proxy.authz.helpers import allows, caller, decide, policy, request


def op(**fields) -> dict:
    return {"to": [{"operation": fields}]}


def test_hosts_are_case_insensitive_and_carry_the_port_as_sent():
    assert allows(op(hosts=["APP.foo.svc.cluster.local"]), request())
    assert not allows(op(hosts=["app.foo.svc.cluster.local"]), request(host="app.foo.svc.cluster.local:8080"))
    assert allows(op(hosts=["app.foo.svc.cluster.local:*"]), request(host="app.foo.svc.cluster.local:8080"))
    assert allows(op(hosts=["*.cluster.local"]), request()) and allows(op(hosts=["*"]), request())
    assert not allows(op(notHosts=["app.*"]), request())


def test_ports_are_the_workload_port_strings_or_numbers():
    assert allows(op(ports=["8080"]), request()) and allows(op(ports=[8080]), request())
    assert not allows(op(ports=["15006"]), request())
    assert not allows(op(notPorts=["8080"]), request())
    assert allows(op(notPorts=["9090"]), request(ds=caller(port=8080)))


def test_methods_are_case_sensitive():
    assert allows(op(methods=["GET", "HEAD"]), request())
    assert not allows(op(methods=["get"]), request())
    assert not allows(op(notMethods=["GET"]), request())
    assert allows(op(notMethods=["POST"]), request())


def test_paths_and_not_paths():
    assert allows(op(paths=["/api/*"]), request("/api/v1?x=1"))
    assert not allows(op(paths=["/api/*"]), request("/apx"))
    assert allows(op(notPaths=["/admin*"]), request("/public"))
    assert not allows(op(notPaths=["/admin*"]), request("/admin/x"))


def test_operation_fields_are_anded_and_to_entries_ored():
    assert not allows(op(methods=["GET"], paths=["/x"]), request("/y"))
    two = {"to": [{"operation": {"methods": ["POST"]}}, {"operation": {"paths": ["/y"]}}]}
    assert allows(two, request("/y"))


DENY_ADMIN = policy("foo/deny-admin", "DENY", op(paths=["/admin", "/admin/*"]))


@pytest.mark.parametrize("path", ["/admin", "/a/../admin", "//admin", "/admin;x=1", "/%2e%2e/admin", "/%61dmin",
                                  "/admin/%2e", "/x%2F..%2Fadmin", "/admin?x=1", "/admin#f", "/public/..;/admin",
                                  "\\admin", "/admin//x", "/admin;jsessionid=1/x"])
def test_a_deny_on_a_path_cannot_be_slipped_past(path):
    assert decide([DENY_ADMIN], request(path)) == "ns[foo]-policy[deny-admin]-rule[0]"


def test_path_matching_is_case_sensitive_even_where_a_virtual_service_ignores_case():
    # istio/istio#38139: ignoreUriCase routes /ADMIN like /admin, but `paths` still does not match it
    assert decide([DENY_ADMIN], request("/ADMIN")) is None


ALLOW_PUBLIC = policy("foo/public", "ALLOW", op(paths=["/public/*"]))


@pytest.mark.parametrize("path", ["/public/../admin", "/public/..;/admin", "/public%2F..%2Fadmin",
                                  "/public//../admin", "/public/%2e%2e/admin"])
def test_an_allow_on_a_path_admits_no_other_path(path):
    assert decide([ALLOW_PUBLIC], request(path)) == "none"


def test_an_allowed_path_stays_allowed_under_both_readings():
    assert decide([ALLOW_PUBLIC], request("/public/a;v=1")) is None
    assert decide([ALLOW_PUBLIC], request("/public//a")) is None
