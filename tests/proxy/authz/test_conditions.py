"""Rule.when: every condition key Istio documents, with values and notValues (leaves.py)."""

from __future__ import annotations

import pytest

from tests.proxy.authz.helpers import PLAINTEXT, SLEEP, allows, caller, jwt, request


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> dict:
    cond: dict = {"key": key}
    if values is not None:
        cond["values"] = values
    if not_values is not None:
        cond["notValues"] = not_values
    return {"when": [cond]}


def test_request_headers_values_prefix_suffix_presence_and_name_case():
    head = request(headers=[("X-Token", "secret-1")])
    assert allows(when("request.headers[x-token]", ["secret-1"]), head)
    assert allows(when("request.headers[X-TOKEN]", ["secret*"]), head)
    assert allows(when("request.headers[x-token]", ["*-1"]), head)
    assert allows(when("request.headers[x-token]", ["*"]), head)
    assert not allows(when("request.headers[x-token]", ["Secret-1"]), head)  # values are case-sensitive
    assert not allows(when("request.headers[x-other]", ["*"]), head)
    assert allows(when("request.headers[x-other]", not_values=["bad"]), head)  # absent: not "bad"
    assert not allows(when("request.headers[x-token]", not_values=["secret-1"]), head)


def test_a_repeated_header_is_matched_as_its_values_joined_by_commas():
    head = request(headers=[("x-role", "a"), ("x-role", "b")])
    assert allows(when("request.headers[x-role]", ["a,b"]), head)
    assert not allows(when("request.headers[x-role]", ["b"]), head)


def test_source_ip_and_remote_ip():
    for key in ("source.ip", "remote.ip"):
        assert allows(when(key, ["10.0.0.0/24"]), request())
        assert not allows(when(key, ["10.9.0.0/16"]), request())
        assert not allows(when(key, not_values=["10.0.0.1"]), request())


def test_source_namespace_and_principal_need_mtls():
    assert allows(when("source.namespace", ["foo"]), request())
    assert allows(when("source.principal", [SLEEP]), request())
    assert not allows(when("source.namespace", ["foo"]), request(ds=PLAINTEXT))
    assert not allows(when("source.principal", ["*"]), request(ds=PLAINTEXT))
    assert allows(when("source.principal", not_values=["*"]), request(ds=PLAINTEXT))


def test_request_auth_principal_audiences_presenter():
    token = jwt(aud=["web", "mobile"], azp="frontend")
    assert allows(when("request.auth.principal", ["https://issuer.example/alice"]), request(auth=token))
    assert not allows(when("request.auth.principal", ["*"]), request())
    assert allows(when("request.auth.audiences", ["mobile"]), request(auth=token))
    assert not allows(when("request.auth.audiences", ["tv"]), request(auth=token))
    assert allows(when("request.auth.presenter", ["front*"]), request(auth=token))
    assert not allows(when("request.auth.presenter", ["*"]), request(auth=jwt()))  # no azp
    assert allows(when("request.auth.audiences", not_values=["tv"]), request(auth=token))


@pytest.mark.parametrize("key, values, matches", [
    ("request.auth.claims[group]", ["admin"], True),  # a list claim: any element
    ("request.auth.claims[group]", ["root"], False),
    ("request.auth.claims[iss]", ["https://issuer.example"], True),
    ("request.auth.claims[org][team]", ["blue"], True),  # nested
    ("request.auth.claims[org][team]", ["red"], False),
    ("request.auth.claims[org][missing]", ["*"], False),
    ("request.auth.claims[verified]", ["true"], False),  # not a string: Envoy's string matcher does not match
    ("request.auth.claims[dotted.name]", ["x"], True),
])
def test_request_auth_claims(key, values, matches):
    token = jwt(group=["dev", "admin"], org={"team": "blue"}, verified=True, **{"dotted.name": "x"})
    assert allows(when(key, values), request(auth=token)) is matches
    assert not allows(when(key, ["*"]), request())  # no token: no claims


def test_destination_ip_port_and_sni():
    assert allows(when("destination.ip", ["10.0.0.2"]), request())
    assert not allows(when("destination.ip", ["10.0.0.3"]), request())
    assert allows(when("destination.port", ["8080"]), request())
    assert not allows(when("destination.port", not_values=["8080"]), request())
    assert allows(when("connection.sni", ["*.example.com"]), request(ds=caller(sni="app.example.com")))
    assert not allows(when("connection.sni", ["*"]), request())  # no SNI
    assert allows(when("connection.sni", not_values=["app.example.com"]), request())


def test_conditions_are_anded_and_values_ored():
    rule = {"when": [{"key": "request.headers[a]", "values": ["1", "2"]},
                     {"key": "request.headers[b]", "values": ["3"]}]}
    assert allows(rule, request(headers=[("a", "2"), ("b", "3")]))
    assert not allows(rule, request(headers=[("a", "2")]))


def test_an_unknown_key_drops_the_rule():
    assert not allows(when("request.unknown", ["x"]), request())
