"""RequestAuthentication (JWT) end to end on real sidecars, the real bus and etcd: Istio's "JWT token" task
with its YAML unchanged but for the jwksUri (istio.io's page points at raw.githubusercontent.com; here a
real HTTP server on 127.0.0.1 serves the same JWKS, Istio's public sample, and Istio's sample tokens are
sent), then what the task does not show: the issuer's key rotated behind its jwksUri, tokens that fail each
way (401), where a token may be read from, and what reaches the app.
(istio.io/latest/docs/tasks/security/authorization/authz-jwt/, .../authentication/jwt-route/ is not in scope)"""

from __future__ import annotations

import json
import os

import pytest
import pytest_asyncio

from tests.integration.authz_mesh import AuthzMesh, denied_by_no_allow
from tests.integration.authz_tokens import DEMO_JWT, GROUPS_SCOPE_JWT, ISTIO_JWKS, Issuer, JwksServer
from tests.integration.conftest import ControlPlane, apply, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADERS = "http://httpbin.foo:8000/headers"


@pytest.fixture(scope="module", autouse=True)
def short_jwks_refresh():  # type: ignore[no-untyped-def]
    """Before the module's plane starts: its pilot fetches each jwksUri again every second (Istio: 20 min,
    PILOT_JWT_PUB_KEY_REFRESH_INTERVAL; ours ISTHMUS_JWKS_REFRESH_INTERVAL, docs/security.md)."""
    saved = os.environ.get("ISTHMUS_JWKS_REFRESH_INTERVAL")
    os.environ["ISTHMUS_JWKS_REFRESH_INTERVAL"] = "1"
    yield
    if saved is None:
        os.environ.pop("ISTHMUS_JWKS_REFRESH_INTERVAL", None)
    else:
        os.environ["ISTHMUS_JWKS_REFRESH_INTERVAL"] = saved


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(plane: ControlPlane):  # type: ignore[no-untyped-def]
    mesh = await AuthzMesh(plane).start()
    yield mesh
    await mesh.stop()


@pytest.fixture(scope="module")
def istio_jwks():  # type: ignore[no-untyped-def]
    """Istio's sample JWKS (security/tools/jwt/samples/jwks.json) served on loopback."""
    server = JwksServer(ISTIO_JWKS)
    yield server
    server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def authz(world: AuthzMesh):  # type: ignore[no-untyped-def]
    yield world
    await world.clean()


def jwt_example(jwks_uri: str) -> str:
    """Istio's jwt-example RequestAuthentication; only jwksUri differs (loopback instead of GitHub)."""
    return f"""
apiVersion: "security.istio.io/v1beta1"
kind: "RequestAuthentication"
metadata:
  name: "jwt-example"
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwksUri: "{jwks_uri}"
"""


REQUIRE_JWT = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - from:
    - source:
       requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
"""

REQUIRE_JWT_GROUP1 = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - from:
    - source:
       requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
    when:
    - key: request.auth.claims[groups]
      values: ["group1"]
"""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_jwt_task_invalid_401_missing_allowed_until_required_then_403(authz: AuthzMesh,
                                                                          istio_jwks: JwksServer) -> None:
    sleep, httpbin = authz.sleep, authz.httpbin
    assert await authz.status(sleep, "http://httpbin.foo:8000/ip") == 200

    await authz.apply(jwt_example(istio_jwks.url))
    provider = await httpbin.jwt_keys("testing@secure.istio.io")  # fetched by pilot, pushed inline
    assert (provider["jwks_uri"], provider["jwks_error"]) == (istio_jwks.url, "") and istio_jwks.fetches >= 1
    assert await authz.status(sleep, HEADERS, headers=bearer("invalidToken")) == 401
    assert await authz.status(sleep, HEADERS) == 200  # no token: anonymous, allowed
    assert await authz.status(sleep, HEADERS, headers=bearer(DEMO_JWT)) == 200

    await authz.apply(REQUIRE_JWT)
    assert await authz.status(sleep, HEADERS, headers=bearer(DEMO_JWT)) == 200
    before = len(httpbin.lines())
    response = await authz.call(sleep, HEADERS)
    assert (response.status, response.text) == (403, "RBAC: access denied")  # as Envoy: no newline
    await denied_by_no_allow(httpbin, after=before)  # an ALLOW missed: Envoy names no policy
    assert await authz.status(sleep, HEADERS, headers=bearer("invalidToken")) == 401  # authentication first

    await authz.apply(REQUIRE_JWT_GROUP1)
    assert await authz.status(sleep, HEADERS, headers=bearer(GROUPS_SCOPE_JWT)) == 200
    assert await authz.status(sleep, HEADERS, headers=bearer(DEMO_JWT)) == 403  # no groups claim

    # deleting the RequestAuthentication stops its 401s at once (the sibling of istio/istio#53071): tokens are
    # no longer read, so nothing has a request principal and require-jwt denies every request
    await authz.delete([("RequestAuthentication", "foo", "jwt-example")])
    assert httpbin.jwt() == []
    assert await authz.status(sleep, HEADERS, headers=bearer("invalidToken")) == 403
    await authz.delete([("AuthorizationPolicy", "foo", "require-jwt")])
    assert await authz.status(sleep, HEADERS, headers=bearer("invalidToken")) == 200


async def test_tokens_that_fail_get_401_or_403_and_never_reach_the_app(authz: AuthzMesh) -> None:
    issuer, other = Issuer("https://issuer.isthmus.test"), Issuer("https://elsewhere.test")
    await authz.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: test-issuer, namespace: foo}}
spec:
  selector:
    matchLabels: {{app: httpbin}}
  jwtRules:
  - issuer: "{issuer.issuer}"
    audiences: [bookstore]
    jwks: '{issuer.jwks()}'
""")
    app = authz.httpbin.app
    seen = len(app.requests)
    forged = issuer.token(aud="bookstore").rsplit(".", 1)[0] + "." + other.token().rsplit(".", 1)[1]
    failing = {
        "expired": issuer.token(aud="bookstore", exp=1_000_000_000),
        "not yet valid": issuer.token(aud="bookstore", nbf=4_000_000_000),
        "bad signature": forged,
        "unknown issuer": other.token(aud="bookstore"),
        "signed by an unknown key": other.token(aud="bookstore", iss=issuer.issuer),
        "not a JWT": "invalidToken",
    }
    for why, token in failing.items():
        response = await authz.call(authz.sleep, HEADERS, headers=bearer(token))
        assert response.status == 401, why
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), why
    # a token that verifies but names another audience: 403, as Envoy's jwt_authn (JwtAudienceNotAllowed)
    response = await authz.call(authz.sleep, HEADERS, headers=bearer(issuer.token(aud="elsewhere")))
    assert response.status == 403 and "audience" in response.text.lower(), response.text
    assert len(app.requests) == seen
    # the ones that verify: RS256 and ES256, and from the `access_token` query parameter too (Istio's default)
    for token in (issuer.token(aud="bookstore"), issuer.token(aud=["x", "bookstore"], kid="ec-1")):
        assert await authz.status(authz.sleep, HEADERS, headers=bearer(token)) == 200
    assert await authz.status(authz.sleep, f"{HEADERS}?access_token={issuer.token(aud='bookstore')}") == 200
    assert len(app.requests) == seen + 3


async def test_a_key_rotated_behind_the_jwks_uri_is_fetched_again_and_used(authz: AuthzMesh) -> None:
    issuer = Issuer("https://rotating.isthmus.test")
    issuer.add_key("rsa-2", "RS256")
    server = JwksServer(issuer.jwks("rsa-1"))
    try:
        await authz.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: rotating, namespace: foo}}
spec:
  selector:
    matchLabels: {{app: httpbin}}
  jwtRules:
  - issuer: "{issuer.issuer}"
    jwksUri: "{server.url}"
""")
        await authz.httpbin.jwt_keys(issuer.issuer)
        old, new = issuer.token(kid="rsa-1"), issuer.token(kid="rsa-2")
        assert await authz.status(authz.sleep, HEADERS, headers=bearer(old)) == 200
        assert await authz.status(authz.sleep, HEADERS, headers=bearer(new)) == 401
        fetches = server.fetches
        # the issuer rotates: its jwksUri now serves only the new key; pilot's refresh pushes it
        server.jwks = issuer.jwks("rsa-2")
        await eventually(lambda: server.fetches > fetches, 30)

        async def rotated() -> bool:
            return await authz.status(authz.sleep, HEADERS, headers=bearer(new)) == 200
        await eventually(rotated, 30)
        assert await authz.status(authz.sleep, HEADERS, headers=bearer(old)) == 401
    finally:
        server.stop()


async def test_a_jwks_uri_that_cannot_be_fetched_fails_its_tokens_not_the_others(authz: AuthzMesh) -> None:
    """As Istio when istiod cannot fetch a jwksUri: tokens of that issuer get 401, requests without one pass."""
    issuer = Issuer("https://unreachable.isthmus.test")
    server = JwksServer(issuer.jwks())
    url = server.url
    server.stop()  # nothing listens there any more
    reply = await apply(authz.mesh, f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: unreachable, namespace: foo}}
spec:
  selector:
    matchLabels: {{app: httpbin}}
  jwtRules:
  - issuer: "{issuer.issuer}"
    jwksUri: "{url}"
""")
    assert reply["ok"], reply
    authz.applied[("RequestAuthentication", "foo", "unreachable")] = [authz.httpbin]
    await authz.converged(reply["revision"], authz.httpbin)
    # past "no answer yet": the fetch itself failed (connection refused), and the push says so
    failed = await eventually(lambda: next((j for j in authz.httpbin.jwt() if j["issuer"] == issuer.issuer
                                            and j["jwks_error"] and "no answer yet" not in j["jwks_error"]), None))
    assert not failed["keys"] and url in failed["jwks_error"], json.dumps(failed)
    assert await authz.status(authz.sleep, HEADERS, headers=bearer(issuer.token())) == 401
    assert await authz.status(authz.sleep, HEADERS) == 200


async def test_where_the_token_is_read_from_and_what_the_app_receives(authz: AuthzMesh) -> None:
    issuer = Issuer("https://headers.isthmus.test")
    await authz.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: from-header, namespace: foo}}
spec:
  selector:
    matchLabels: {{app: httpbin}}
  jwtRules:
  - issuer: "{issuer.issuer}"
    jwks: '{issuer.jwks()}'
    fromHeaders:
    - name: x-jwt-assertion
      prefix: "Token "
    fromParams: [jwt]
    fromCookies: [session]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {{header: x-jwt-sub, claim: sub}}
    forwardOriginalToken: false
""")
    token = issuer.token("carol", team="blue")
    app = authz.httpbin.app
    assert await authz.status(authz.sleep, HEADERS, headers={"x-jwt-assertion": f"Token {token}"}) == 200
    _, _, headers = app.requests[-1]
    assert headers.get("x-jwt-sub") == "carol"
    assert "x-jwt-payload" in headers and "x-jwt-assertion" not in headers  # the token itself is not forwarded
    assert await authz.status(authz.sleep, f"{HEADERS}?jwt={token}") == 200
    assert await authz.status(authz.sleep, HEADERS, headers={"cookie": f"session={token}"}) == 200
    assert await authz.status(authz.sleep, HEADERS, headers={"x-jwt-assertion": "Token invalidToken"}) == 401
    # the default places are not read when fromHeaders/fromParams are given: a bearer token there is ignored
    assert await authz.status(authz.sleep, HEADERS, headers=bearer("invalidToken")) == 200
