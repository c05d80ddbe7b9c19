"""Rule.from.source fields, each against a caller that should and one that should not match (leaves.py)."""

from __future__ import annotations

import pytest

from tests.proxy.authz.helpers import PLAINTEXT, SLEEP, allows, caller, jwt, request


def src(**fields) -> dict:
    return {"from": [{"source": fields}]}


def test_principals_exact_prefix_suffix_and_any():
    assert allows(src(principals=[SLEEP]), request())
    assert not allows(src(principals=["cluster.local/ns/foo/sa/other"]), request())
    assert allows(src(principals=["cluster.local/ns/foo/*"]), request())
    assert allows(src(principals=["*/sa/sleep"]), request())
    assert allows(src(principals=["*"]), request())


def test_not_principals():
    assert not allows(src(notPrincipals=[SLEEP]), request())
    assert allows(src(notPrincipals=["cluster.local/ns/bar/*"]), request())


def test_namespaces_exact_and_wildcards():
    assert allows(src(namespaces=["foo"]), request())
    assert not allows(src(namespaces=["fo"]), request())
    assert allows(src(namespaces=["f*"]), request()) and allows(src(namespaces=["*"]), request())
    assert not allows(src(namespaces=["bar*"]), request())
    assert not allows(src(notNamespaces=["foo"]), request())
    assert allows(src(notNamespaces=["bar"]), request())


@pytest.mark.parametrize("fields", [dict(principals=["*"]), dict(principals=[SLEEP]), dict(namespaces=["*"]),
                                    dict(namespaces=["foo"])])
def test_principals_and_namespaces_never_match_a_plaintext_caller(fields):
    # istio/istio#21259: without mTLS there is no peer identity, even for `*`
    assert not allows(src(**fields), request(ds=PLAINTEXT))


@pytest.mark.parametrize("fields", [dict(notPrincipals=["*"]), dict(notPrincipals=[SLEEP]),
                                    dict(notNamespaces=["*"]), dict(notNamespaces=["foo"])])
def test_their_not_forms_always_match_a_plaintext_caller(fields):
    # Envoy's Not(authenticated): true without TLS (Istio advisory ISTIO-SECURITY-2021-003: `not *` = no identity)
    assert allows(src(**fields), request(ds=PLAINTEXT))
    assert not allows(src(notPrincipals=["*"]), request())  # and a caller with an identity is not "not *"


def test_ip_blocks_and_remote_ip_blocks_are_the_peer_address():
    for field, not_field in (("ipBlocks", "notIpBlocks"), ("remoteIpBlocks", "notRemoteIpBlocks")):
        assert allows(src(**{field: ["10.0.0.1"]}), request())
        assert allows(src(**{field: ["10.0.0.0/24"]}), request())
        assert not allows(src(**{field: ["10.0.1.0/24"]}), request())
        assert not allows(src(**{not_field: ["10.0.0.0/8"]}), request())
        assert allows(src(**{field: ["10.0.0.0/24"]}), request(ds=caller(ip="::ffff:10.0.0.7")))
        assert not allows(src(**{field: ["10.0.0.0/8"]}), request(ds=caller(ip="")))


def test_request_principals_need_a_verified_token():
    token = jwt("https://issuer.example", "alice")
    assert allows(src(requestPrincipals=["https://issuer.example/alice"]), request(auth=token))
    assert not allows(src(requestPrincipals=["https://issuer.example/bob"]), request(auth=token))
    assert not allows(src(requestPrincipals=["*"]), request())  # no token: no request principal
    assert allows(src(requestPrincipals=["*"]), request(auth=token))  # `*`: any authenticated request


@pytest.mark.parametrize("value, matches", [
    ("https://issuer.example/*", True), ("https://issuer.example/al*", True), ("https://issuer.example/b*", False),
    ("*/alice", True), ("*.example/alice", True), ("*.other/alice", False), ("*ice", True),
    ("https://issuer*", False),  # has a "/": the issuer must be "https:/" exactly (as istio splits it)
])
def test_request_principal_wildcards_split_at_the_last_slash(value, matches):
    assert allows(src(requestPrincipals=[value]), request(auth=jwt())) is matches


def test_a_request_principal_without_slash_and_a_trailing_star_is_an_issuer_prefix():
    assert allows(src(requestPrincipals=["issuer.ex*"]), request(auth=jwt("issuer.example", "bob")))
    assert not allows(src(requestPrincipals=["other*"]), request(auth=jwt("issuer.example", "bob")))


def test_not_request_principals():
    assert allows(src(notRequestPrincipals=["*"]), request())  # no token
    assert not allows(src(notRequestPrincipals=["*"]), request(auth=jwt()))


def test_source_fields_are_anded_and_from_entries_ored():
    both = src(principals=[SLEEP], ipBlocks=["192.168.0.0/16"])
    assert not allows(both, request())
    either = {"from": [{"source": {"principals": ["x/ns/y/sa/z"]}}, {"source": {"ipBlocks": ["10.0.0.1"]}}]}
    assert allows(either, request())
