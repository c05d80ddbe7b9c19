"""services/pilot/validate/request_authentication.py and jwks.py: Istio's rules for RequestAuthentication."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from services.pilot.validate.jwks import jwks_problems
from tests.pilot.validate.documents import by_path, decode

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
EC_PUBLIC = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
ED_PUBLIC = json.loads(OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key()))
JWKS = json.dumps({"keys": [RSA_PUBLIC | {"alg": "RS256", "kid": "r"}, EC_PUBLIC, ED_PUBLIC,
                            RSA_PUBLIC | {"alg": "PS384"}]})


def _ra(rules: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules: {rules}
"""


def test_istios_jwt_task_policy_applies_unchanged():
    resources, errors, warnings = decode("""
    apiVersion: security.istio.io/v1
    kind: RequestAuthentication
    metadata:
      name: "jwt-example"
      namespace: istio-system
    spec:
      selector:
        matchLabels:
          istio: ingressgateway
      jwtRules:
      - issuer: "testing@secure.istio.io"
        jwksUri: "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json"
    """)
    assert errors == [] and warnings == [] and len(resources) == 1


def test_every_field_of_a_rule_is_kept_as_written():
    rules = json.dumps([{"issuer": "https://issuer.example", "audiences": ["a", "b"], "jwks": JWKS,
                         "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}], "fromParams": ["token"],
                         "fromCookies": ["session"], "outputPayloadToHeader": "x-payload",
                         "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
                         "forwardOriginalToken": True, "timeout": "2s"}])
    (resource,), errors, warnings = decode(_ra(rules))
    assert errors == [] and warnings == []
    rule = resource.spec.jwt_rules[0]
    assert rule.jwks == JWKS and rule.from_headers[0].prefix == "Bearer " and rule.timeout == "2s"


@pytest.mark.parametrize("rules, path, message", [
    ('[{issuer: ""}]', "spec.jwtRules[0].issuer", "issuer must be non-empty"),
    ("[{jwksUri: 'https://x/jwks'}]", "spec.jwtRules[0].issuer", "required"),
    ("[{issuer: a, audiences: [x, '']}]", "spec.jwtRules[0].audiences[1]", "audience must be non-empty"),
    ("[{issuer: a, jwksUri: 'https://x/k', jwks: '{}'}]", "spec.jwtRules[0]", "only one of jwks or jwksUri"),
    ("[{issuer: a, jwksUri: 'ftp://x/k'}]", "spec.jwtRules[0].jwksUri", "scheme http:// or https://"),
    ("[{issuer: a, jwksUri: 'https:///k'}]", "spec.jwtRules[0].jwksUri", "has no host"),
    ("[{issuer: a, jwksUri: 'http://x:99999/k'}]", "spec.jwtRules[0].jwksUri", "is not a URL"),
    ("[{issuer: a, jwksUri: 'not a url'}]", "spec.jwtRules[0].jwksUri", "scheme http:// or https://"),
    ("[{issuer: a}]", "spec.jwtRules[0].issuer", "OpenID discovery"),
    ("[{issuer: a, jwks: 'nope'}]", "spec.jwtRules[0].jwks", "jwks parse error: not JSON"),
    ("[{issuer: a, jwks: '{\"keys\": []}'}]", "spec.jwtRules[0].jwks", "holds no keys"),
    ("[{issuer: a, jwks: '{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}'}]", "spec.jwtRules[0].jwks",
     "keys[0]: symmetric `oct` keys"),
    ("[{issuer: a, jwks: '{\"keys\": [{\"kty\": \"RSA\", \"n\": \"x\"}]}'}]", "spec.jwtRules[0].jwks",
     "keys[0]: PyJWT cannot load it"),
    ("[{issuer: a, jwks: '{\"keys\": [{\"kty\": \"XYZ\"}]}'}]", "spec.jwtRules[0].jwks", "`kty` 'XYZ'"),
    ("[{issuer: a, jwksUri: 'https://x/k', fromHeaders: [{name: ''}]}]", "spec.jwtRules[0].fromHeaders[0].name",
     "location header name must be non-empty"),
    ("[{issuer: a, jwksUri: 'https://x/k', fromHeaders: [{prefix: 'Bearer '}]}]",
     "spec.jwtRules[0].fromHeaders[0].name",
     "required"),
    ("[{issuer: a, jwksUri: 'https://x/k', fromHeaders: [{name: 'a b'}]}]", "spec.jwtRules[0].fromHeaders[0].name",
     "not a valid header name"),
    ("[{issuer: a, jwksUri: 'https://x/k', fromParams: ['']}]", "spec.jwtRules[0].fromParams[0]", "non-empty"),
    ("[{issuer: a, jwksUri: 'https://x/k', fromCookies: [ok, '']}]", "spec.jwtRules[0].fromCookies[1]", "non-empty"),
    ("[{issuer: a, jwksUri: 'https://x/k', outputClaimToHeaders: [{header: '', claim: sub}]}]",
     "spec.jwtRules[0].outputClaimToHeaders[0]", "header and claim value must be non-empty"),
    ("[{issuer: a, jwksUri: 'https://x/k', outputClaimToHeaders: [{header: ':path', claim: sub}]}]",
     "spec.jwtRules[0].outputClaimToHeaders[0].header", "not a valid header name"),
    ("[{issuer: a, jwksUri: 'https://x/k', outputClaimToHeaders: [{header: Transfer-Encoding, claim: sub}]}]",
     "spec.jwtRules[0].outputClaimToHeaders[0].header", "frames or forwards per hop"),
    ("[{issuer: a, jwksUri: 'https://x/k', outputPayloadToHeader: connection}]",
     "spec.jwtRules[0].outputPayloadToHeader", "frames or forwards per hop"),
    ("[{issuer: a, jwksUri: 'https://x/k', timeout: 5}]", "spec.jwtRules[0].timeout", ""),
    ("[{issuer: a, jwksUri: 'https://x/k', timeout: 5x}]", "spec.jwtRules[0].timeout", "is not a duration"),
    ("[{issuer: a, jwksUri: 'https://x/k', timeout: 500us}]", "spec.jwtRules[0].timeout", "at least 1ms"),
    ("[{issuer: a, jwksUri: 'https://x/k', presence: REQUIRED}]", "spec.jwtRules[0].presence", "not supported"),
])
def test_istios_refusals_and_ours_name_the_path(rules, path, message):
    resources, errors, _ = decode(_ra(rules))
    assert resources == []
    assert message in by_path(errors, path).message


def test_a_target_ref_is_refused_a_selector_picks_workloads():
    _, errors, _ = decode("""
    apiVersion: security.istio.io/v1
    kind: RequestAuthentication
    metadata: {name: jwt, namespace: foo}
    spec:
      targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
    """)
    assert "not supported by Isthmus" in by_path(errors, "spec.targetRefs").message


def test_a_jwks_uri_is_bounded_at_the_crds_2048_characters():
    base = "https://issuer.example/"
    at = base + "k" * (2048 - len(base))
    assert decode(_ra(json.dumps([{"issuer": "a", "jwksUri": at}])))[1] == []
    _, errors, _ = decode(_ra(json.dumps([{"issuer": "a", "jwksUri": at + "k"}])))
    assert "2049 characters, more than 2048" in by_path(errors, "spec.jwtRules[0].jwksUri").message


def test_jwt_rules_are_bounded_at_the_crds_4096():
    rule = {"issuer": "a", "jwksUri": "https://x/k"}
    assert decode(_ra(json.dumps([rule] * 4096)))[1] == []
    _, errors, _ = decode(_ra(json.dumps([rule] * 4097)))
    assert "4097 jwtRules, more than 4096" in by_path(errors, "spec.jwtRules").message


def test_private_key_material_and_a_repeated_issuer_are_warnings():
    private = json.dumps({"keys": [json.loads(RSAAlgorithm.to_jwk(RSA_KEY))]})
    resources, errors, warnings = decode(_ra(json.dumps([{"issuer": "a", "jwks": private},
                                                         {"issuer": "a", "jwksUri": "https://x/k"}])))
    assert errors == [] and len(resources) == 1
    assert "index 0 contains private key material" in by_path(warnings, "spec.jwtRules[0].jwks").message
    assert "also in jwtRules[0]" in by_path(warnings, "spec.jwtRules[1].issuer").message


def test_a_key_set_of_rsa_ec_okp_and_pss_keys_is_usable():
    assert jwks_problems(JWKS) == ([], [])


def test_an_hmac_algorithm_on_an_rsa_key_is_refused():
    errors, _ = jwks_problems(json.dumps({"keys": [RSA_PUBLIC | {"alg": "HS256"}]}))
    assert errors and "not an asymmetric signature algorithm" in errors[0]
