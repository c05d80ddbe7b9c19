"""JWTs for the end-to-end tests: Istio's own public samples (security/tools/jwt/samples in istio/istio: the
JWKS, demo.jwt and groups-scope.jwt, signed by the sample key whose public half is the JWKS), tokens minted
here with PyJWT by a test issuer's own keys, and a small real HTTP server on 127.0.0.1 that serves a
JWKS as a `jwksUri` (its keys can be swapped to test a rotation; it counts the fetches)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

# Istio's samples (https://github.com/istio/istio/tree/master/security/tools/jwt/samples), public test data.
ISTIO_ISSUER = "testing@secure.istio.io"
ISTIO_PRINCIPAL = f"{ISTIO_ISSUER}/{ISTIO_ISSUER}"
ISTIO_JWKS = ('{ "keys":[ {"e":"AQAB","kid":"DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ","kty":"RSA","n":"xAE7eB6qugX'
              'yCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbh'
              'LdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUq'
              'gBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRr'
              'WnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}')
# {"exp":4685989700,"foo":"bar","iat":1532389700,"iss":"testing@secure.istio.io","sub":"testing@secure.istio.io"}
DEMO_JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IkRIRmJwb0lVcXJZOHQyenBBMnFYZkNtcjVWTzVaRXI0UnpIVV8tZW52dlEiLCJ0eXAiOiJKV1Qi"
            "fQ.eyJleHAiOjQ2ODU5ODk3MDAsImZvbyI6ImJhciIsImlhdCI6MTUzMjM4OTcwMCwiaXNzIjoidGVzdGluZ0BzZWN1cmUuaXN0aW8ua"
            "W8iLCJzdWIiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyJ9.CfNnxWP2tcnR9q0vxyxweaF3ovQYHYZl82hAUsn21bwQd9zP7c-LS9q"
            "d_vpdLG4Tn1A15NxfCjp5f7QNBUo-KC9PJqYpgGbaXhaGx7bEdFWjcwv3nZzvc7M__ZpaCERdwU7igUmJqYGBYQ51vr2njU9ZimyKk"
            "fDe3axcyiBZde7G6dabliUosJvvKOPcKIWPccCgefSj_GNfwIip3-SsFdlR7BtbVUcqR-yv-XOxJ3Uc1MI0tz3uMiiZcyPV7sNCU4"
            "KRnemRIMHVOfuvHsU60_GhGbiSFzgPTAa9WTltbnarTbxudb_YEOx12JiwYToeX0DCPb43W1tzIBxgm8NxUg")
# {"exp":3537391104,"groups":["group1","group2"],"iat":1537391104,"iss":"testing@secure.istio.io",
#  "scope":["scope1","scope2"],"sub":"testing@secure.istio.io"}
GROUPS_SCOPE_JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IkRIRmJwb0lVcXJZOHQyenBBMnFYZkNtcjVWTzVaRXI0UnpIVV8tZW52dlEiLCJ0eXAi"
                    "OiJKV1QifQ.eyJleHAiOjM1MzczOTExMDQsImdyb3VwcyI6WyJncm91cDEiLCJncm91cDIiXSwiaWF0IjoxNTM3MzkxMTA0L"
                    "CJpc3MiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyIsInNjb3BlIjpbInNjb3BlMSIsInNjb3BlMiJdLCJzdWIiOiJ0ZXN0a"
                    "W5nQHNlY3VyZS5pc3Rpby5pbyJ9.EdJnEZSH6X8hcyEii7c8H5lnhgjB5dwo07M5oheC8Xz8mOllyg--AHCFWHybM48reunF"
                    "--oGaG6IXVngCEpVF0_P5DwsUoBgpPmK1JOaKN6_pe9sh0ZwTtdgK_RP01PuI7kUdbOTlkuUi2AO-qUyOm7Art2POzo36DLQ"
                    "lUXv8Ad7NBOqfQaKjE9ndaPWT7aexUsBHxmgiGbz1SyLH879f7uHYPbPKlpHU6P9S-DaKnGLaEchnoKnov7ajhrEhGXAQRuk"
                    "hDPKUHO9L30oPIr5IJllEQfHYtt6IZvlNUGeLUcif3wpry1R5tBXRicx2sXMQ7LyuDremDbcNy_iE76Upg")


class Issuer:
    """A token issuer with its own keys (RS256 and ES256), as an identity provider would have."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.keys: dict[str, tuple[str, Any]] = {}  # kid -> (alg, private key)
        self.add_key("rsa-1", "RS256")
        self.add_key("ec-1", "ES256")

    def add_key(self, kid: str, alg: str) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg.startswith("RS") \
            else ec.generate_private_key(ec.SECP256R1())
        self.keys[kid] = (alg, key)

    def jwks(self, *kids: str) -> str:
        """The JWKS text of the public halves of `kids` (default: every key)."""
        entries = []
        for kid in kids or tuple(self.keys):
            alg, key = self.keys[kid]
            algorithm = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
            entry = json.loads(algorithm.to_jwk(key.public_key()))
            entries.append({**entry, "kid": kid, "alg": alg, "use": "sig"})
        return json.dumps({"keys": entries})

    def token(self, sub: str = "alice", kid: str = "rsa-1", **claims: Any) -> str:
        """A token signed with `kid`, valid for a day (minted at import, it must outlive a long suite), with
        `claims` added (aud, azp, groups, nested ...)."""
        alg, key = self.keys[kid]
        now = int(time.time())
        body = {"iss": self.issuer, "sub": sub, "iat": now, "exp": now + 86400, **claims}
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving `jwks` (settable) at /jwks.json; `fetches` counts the GETs."""

    def __init__(self, jwks: str) -> None:
        self.jwks = jwks
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.fetches += 1
                body = server.jwks.encode()
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet: the test reads answers, not the server's log
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
