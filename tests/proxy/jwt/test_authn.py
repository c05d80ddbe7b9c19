"""proxy/inbound/jwt/authn.py: the authentication stage as Istio configures Envoy's jwt_authn."""

from __future__ import annotations

import base64
import json

import pytest

from proto.xds import WorkloadSecurity
from proxy.core.errors import AudienceNotAllowed, Unauthenticated
from proxy.core.request import RequestHead
from proxy.inbound.jwt import signature, status
from proxy.inbound.jwt.authn import Authenticator, JwtStage, final_status
from tests.proxy.jwt.issuers import (
    ISSUER, NOW, OTHER, claims, clock, ec_key, head, jwk, jwks, provider, rsa_key, rule, sign, unsigned,
)


def authn(*providers, now: float = NOW) -> Authenticator:  # type: ignore[no-untyped-def]
    return Authenticator(list(providers) or [provider()], clock(now))


def refused(check: Authenticator, h: RequestHead) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        check(h)
    return caught.value


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA"])
def test_a_valid_token_authenticates_the_request_and_is_removed_before_forwarding(alg):
    h = head(sign(claims(aud=["svc", "web"]), alg=alg))
    authn()(h)
    assert h.auth is not None and h.auth.principal == f"{ISSUER}/alice" and h.auth.audiences == ["svc", "web"]
    assert h.header(b"authorization") is None and h.edited  # forwardOriginalToken defaults to false


def test_a_request_without_a_token_passes_anonymous_and_unchanged():
    h = head(headers=[(b"authorization", b"Basic dXNlcjpwdw==")])
    before = list(h.headers)
    authn()(h)
    assert h.auth is None and h.headers == before and not h.edited


def test_expiry_and_not_before_allow_envoys_60_second_clock_skew():
    check = authn()
    check(head(sign(claims(exp=NOW - 60))))  # at the skew: still valid
    assert refused(check, head(sign(claims(exp=NOW - 61)))).detail == status.EXPIRED
    check(head(sign(claims(nbf=NOW + 60))))
    assert refused(check, head(sign(claims(nbf=NOW + 61)))).detail == status.NOT_YET_VALID
    check(head(sign(claims(exp=None))))  # no exp: no expiry (Istio sets no require_expiration)


def test_an_invalid_token_is_401_with_envoys_body_www_authenticate_and_details():
    error = refused(authn(), head(sign(key=rsa_key(2))))
    assert type(error) is Unauthenticated and error.status == 401 and error.detail == status.VERIFICATION_FAILS
    assert error.headers == b'www-authenticate: Bearer realm="http://app:8000/get", error="invalid_token"\r\n'
    assert error.details == "jwt_authn_access_denied{Jwt_verification_fails}"


@pytest.mark.parametrize("token, expected", [
    (sign(claims(iss=OTHER)), status.UNKNOWN_ISSUER),
    (sign(kid="nope"), status.KID_ALG_MISMATCH),
    (unsigned({"alg": "none"}, claims()), status.HEADER_ALG_NOT_IMPLEMENTED),
    ("not-a-jwt", status.BAD_FORMAT),
    (sign()[:-4] + "AAAA", status.VERIFICATION_FAILS),
])
def test_each_kind_of_bad_token_is_refused_with_its_status(token, expected):
    assert refused(authn(), head(token)).detail == expected


def test_hs256_signed_with_the_rsa_public_key_is_refused():
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization
    pem = rsa_key().public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing = unsigned({"alg": "HS256", "kid": "r1"}, claims()).rsplit(".", 1)[0]
    mac = base64.urlsafe_b64encode(hmac.new(pem, signing.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    assert refused(authn(), head(f"{signing}.{mac}")).detail == status.VERIFICATION_FAILS


def test_audiences_when_set_must_include_one_of_the_tokens_and_a_mismatch_is_403():
    check = authn(provider(rule(audiences=["https://svc.example/", "web"])))
    check(head(sign(claims(aud="svc.example"))))  # scheme and trailing slash do not count (Envoy CheckAudience)
    check(head(sign(claims(aud=["other", "web"]))))
    error = refused(check, head(sign(claims(aud="other"))))
    assert isinstance(error, AudienceNotAllowed) and error.status == 403
    assert error.detail == status.AUDIENCE_NOT_ALLOWED
    assert refused(check, head(sign(claims()))).detail == status.AUDIENCE_NOT_ALLOWED  # no aud at all
    authn()(head(sign(claims(aud="anything"))))  # a rule without audiences checks none


def test_a_token_of_an_issuer_without_keys_from_pilot_fails_verification_after_its_time_checks():
    check = authn(provider(jwks_error="GET https://issuer.example/jwks: connection refused"))
    assert refused(check, head(sign())).detail == status.VERIFICATION_FAILS
    assert refused(check, head(sign(claims(exp=NOW - 3600)))).detail == status.EXPIRED
    check(head())  # no token: still anonymous


def test_several_rules_any_configured_issuer_passes_and_an_unknown_one_is_refused():
    other_keys = jwks(jwk(rsa_key(3), "o1"))
    check = authn(provider(rule(ISSUER)), provider(rule(OTHER, other_keys), source="default/other"))
    h = head(sign(claims(iss=OTHER), key=rsa_key(3), kid="o1"))
    check(h)
    assert h.auth is not None and h.auth.principal == f"{OTHER}/alice"
    check(head(sign()))
    assert refused(check, head(sign(claims(iss="https://nobody")))).detail == status.UNKNOWN_ISSUER
    # a real failure of the token's own issuer wins over "not configured" from the other rule
    assert refused(check, head(sign(claims(exp=NOW - 3600)))).detail == status.EXPIRED
    assert refused(check, head(sign(claims(iss=OTHER), key=rsa_key(3), kid="nope"))).detail == \
        status.KID_ALG_MISMATCH


def test_every_token_a_rule_finds_must_verify():
    check = authn()
    h = head(sign(), path=f"/get?access_token={sign()}")
    check(h)
    assert h.path == "/get" and h.header(b"authorization") is None
    assert refused(check, head(sign(), path="/get?access_token=junk")).detail == status.BAD_FORMAT
    # two valid tokens of two issuers in the locations both rules share: each rule sees a foreign token
    both = authn(provider(rule(ISSUER)), provider(rule(OTHER, jwks(jwk(rsa_key(3), "o1")))))
    mixed = head(sign(), path="/get?access_token=" + sign(claims(iss=OTHER), key=rsa_key(3), kid="o1"))
    assert refused(both, mixed).detail == status.UNKNOWN_ISSUER


def test_rules_with_their_own_locations_each_read_only_theirs():
    check = authn(provider(rule(ISSUER, from_headers=[("x-a", "")])),
                  provider(rule(OTHER, jwks(jwk(rsa_key(3), "o1")), from_params=["b"])))
    h = head(headers=[(b"x-a", sign().encode())])
    check(h)
    assert h.auth is not None and h.header(b"x-a") is None
    h = head(path="/p?b=" + sign(claims(iss=OTHER), key=rsa_key(3), kid="o1"))
    check(h)
    assert h.auth is not None and h.auth.principal == f"{OTHER}/alice" and h.path == "/p"
    anonymous = head(sign())  # Authorization is no location of either rule
    check(anonymous)
    assert anonymous.auth is None and anonymous.header(b"authorization") is not None


def test_outputs_add_the_payload_and_claims_and_replace_what_the_client_sent():
    check = authn(provider(rule(output_payload_to_header="X-Jwt-Payload",
                                output_claim_to_headers=[("x-jwt-sub", "sub"), ("x-jwt-level", "org.level"),
                                                         ("x-jwt-none", "missing")])))
    token = sign(claims(org={"level": 3}))
    spoof = [(b"x-jwt-payload", b"forged"), (b"x-jwt-sub", b"admin"), (b"x-jwt-none", b"forged")]
    h = head(token, headers=spoof)
    check(h)
    payload = token.split(".")[1]
    assert [(n, v) for n, v in h.headers if n.startswith(b"x-jwt")] == [
        (b"x-jwt-payload", payload.encode()), (b"x-jwt-sub", b"alice"), (b"x-jwt-level", b"3")]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert decoded["sub"] == "alice"
    anonymous = head(headers=spoof)  # no token: the forged headers are still removed
    check(anonymous)
    assert anonymous.auth is None and not [n for n, _ in anonymous.headers if n.startswith(b"x-jwt")]


def test_forward_original_token_keeps_the_token_for_the_app():
    h = head(sign(), path=f"/get?x=1")
    authn(provider(rule(forward_original_token=True)))(h)
    assert h.auth is not None and h.header(b"authorization") is not None and not h.edited


def test_a_cors_preflight_passes_without_checks():
    h = head("garbage", method="OPTIONS", headers=[(b"origin", b"https://site"),
                                                    (b"access-control-request-method", b"POST")])
    authn()(h)
    assert h.auth is None
    assert refused(authn(), head("garbage", method="OPTIONS")).detail == status.BAD_FORMAT


def test_forged_output_headers_are_removed_from_a_cors_preflight_and_in_their_underscore_spelling():
    check = authn(provider(rule(output_payload_to_header="x-jwt-payload", output_claim_to_headers=[("x_sub", "sub")])))
    forged = [(b"x-jwt-payload", b"forged"), (b"x_jwt_payload", b"forged"), (b"x-sub", b"root"), (b"x_sub", b"root")]
    preflight = head(method="OPTIONS", headers=[(b"origin", b"https://site"),
                                                (b"access-control-request-method", b"POST"), *forged])
    check(preflight)  # passes unchecked, but what the client forged does not reach the app (docs/security.md)
    assert preflight.auth is None and preflight.edited
    assert [n for n, _ in preflight.headers] == [b"host", b"user-agent", b"origin", b"access-control-request-method"]
    anonymous = head(headers=forged)
    check(anonymous)
    assert [n for n, _ in anonymous.headers] == [b"host", b"user-agent"]


def test_the_realm_is_the_uri_with_at_most_256_bytes_of_path_and_no_control_characters():
    error = refused(authn(), head("bad", path="/" + "p" * 400))
    value = error.headers.decode()
    assert value.startswith('www-authenticate: Bearer realm="http://app:8000/' + "p" * 255 + '", ')
    odd = refused(authn(), head("bad", path='/a"b\x01c'))
    assert odd.headers.startswith(b'www-authenticate: Bearer realm="http://app:8000/a%22bc", ')


def test_a_verified_token_is_kept_until_it_expires(monkeypatch):
    calls = []
    real = signature.check_signature

    def counting(jwt, keys):  # type: ignore[no-untyped-def]
        calls.append(1)
        real(jwt, keys)

    monkeypatch.setattr("proxy.inbound.jwt.provider.check_signature", counting)
    now = [NOW]
    check = Authenticator([provider()], lambda: now[0])
    token = sign(claims(exp=NOW + 10))
    for _ in range(3):
        h = head(token)
        check(h)
        assert h.auth is not None and h.header(b"authorization") is None
    assert len(calls) == 1
    now[0] = NOW + 71
    assert refused(check, head(token)).detail == status.EXPIRED


def test_final_status_is_envoys_any_verifier_aggregate():
    m, u, e, s = status.MISSING, status.UNKNOWN_ISSUER, status.EXPIRED, status.VERIFICATION_FAILS
    assert final_status([u]) == u and final_status([e]) == e
    assert final_status([u, u]) == u
    assert final_status([e, u]) == e and final_status([u, e]) == e
    assert final_status([m, e]) == e and final_status([e, s]) == e  # the requires_all branch: first real failure


def test_the_stage_exists_only_with_rules_and_is_recompiled_only_when_they_change():
    stage = JwtStage()
    assert stage.update(None) is None
    assert stage.update(WorkloadSecurity(workload="w", version=1)) is None
    first = stage.update(WorkloadSecurity(workload="w", version=1, jwt=[provider()]))
    assert first is not None
    assert stage.update(WorkloadSecurity(workload="w", version=2, jwt=[provider()])) is first
    second = stage.update(WorkloadSecurity(workload="w", version=3, jwt=[provider(rule(audiences=["a"]))]))
    assert second is not None and second is not first
    assert stage.update(WorkloadSecurity(workload="w", version=4)) is None


def test_an_ec_token_of_another_rules_key_is_not_accepted_for_this_issuer():
    check = authn(provider(rule(ISSUER, jwks(jwk(ec_key(2), "e1")))))
    assert refused(check, head(sign(alg="ES256"))).detail == status.VERIFICATION_FAILS


def test_a_token_in_a_cookie_authenticates_and_the_cookie_stays_as_in_envoy():
    check = authn(provider(rule(from_cookies=["session"])))
    cookie = b"theme=dark; session=" + sign().encode()
    h = head(headers=[(b"cookie", cookie)])
    check(h)
    assert h.auth is not None and h.header(b"cookie") == cookie
    assert refused(check, head(headers=[(b"cookie", b"session=expired.or.bad")])).detail == status.HEADER_BAD_JSON
    assert refused(check, head(headers=[(b"cookie", b"session=" + sign(claims(exp=NOW - 3600)).encode())])
                   ).detail == status.EXPIRED


@pytest.mark.parametrize("extra", [0, 1])
def test_the_realm_keeps_a_path_of_max_realm_path_bytes_whole_and_cuts_one_over(extra):
    from proxy.inbound.jwt.authn import MAX_REALM_PATH
    path = "/" + "p" * (MAX_REALM_PATH - 1 + extra)
    value = refused(authn(), head("bad", path=path)).headers.decode()
    assert value.startswith('www-authenticate: Bearer realm="http://app:8000/' + "p" * (MAX_REALM_PATH - 1) + '", ')
