"""The JWT authentication stage's cost per request, without sockets: `python -m bench.dataplane.jwt`.

Times the compiled check (proxy/inbound/jwt/authn.py) on a request head built per request, minus the cost
of building that head, for: a request without a token (the stage still runs: header sanitizing, location
scan), a valid RS256 and ES256 token verified every time (cache off: parse, checks, PyJWT signature), the
same tokens from the verified-token cache (the usual case: a client sends its token again), and an invalid
token (refused: the 401 error built). CPU time (time.process_time), the fastest of `--chunks` chunks.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from proto.security import JwtRule
from proto.xds import JwtProvider
from proxy.core.errors import Unauthenticated
from proxy.core.request import RequestHead
from proxy.inbound.jwt.authn import Authenticator

ISSUER = "https://issuer.example"
BASE_HEADERS = [(b"host", b"app:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*"), (b"x-request-id", b"1")]


def _setup() -> tuple[Authenticator, Authenticator, dict[str, bytes]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = [dict(json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), kid="r1"),
            dict(json.loads(ECAlgorithm.to_jwk(ec_key.public_key())), kid="e1")]
    rule = JwtRule(issuer=ISSUER, jwks=json.dumps({"keys": keys}), audiences=["svc"])
    provider = JwtProvider(source="default/bench", rule=rule)
    cached = Authenticator([provider])
    uncached = Authenticator([provider])
    for p in uncached.providers:
        p.cache.size = 0  # verify every time
    claims = {"iss": ISSUER, "sub": "alice", "aud": "svc", "exp": int(time.time()) + 3600, "scope": "read write"}
    tokens = {"RS256": jwt.encode(claims, rsa_key, "RS256", headers={"kid": "r1"}).encode(),
              "ES256": jwt.encode(claims, ec_key, "ES256", headers={"kid": "e1"}).encode(),
              "bad": jwt.encode(dict(claims, aud="other"), rsa_key, "RS256", headers={"kid": "r1"}).encode()}
    return cached, uncached, tokens


def _time(check: Callable[[RequestHead], None] | None, token: bytes | None, requests: int, chunks: int) -> float:
    """Best µs per request of building a head and running `check` on it (check None: building only)."""
    headers = BASE_HEADERS + ([(b"authorization", b"Bearer " + token)] if token is not None else [])
    per_chunk = max(1, requests // chunks)
    best = float("inf")
    for _ in range(chunks):
        t0 = time.process_time()
        for _ in range(per_chunk):
            head = RequestHead("GET", "app", 8000, "/get", list(headers))
            if check is not None:
                try:
                    check(head)
                except Unauthenticated:  # the refusal case: its cost is what is timed
                    pass
        best = min(best, time.process_time() - t0)
    return best / per_chunk * 1e6


def run(requests: int = 20_000, chunks: int = 5) -> dict[str, float]:
    """µs of CPU per request spent in the stage, per case (the head's construction subtracted)."""
    cached, uncached, tokens = _setup()
    for token in tokens.values():  # fill the cache
        try:
            cached(RequestHead("GET", "app", 8000, "/get", BASE_HEADERS + [(b"authorization", b"Bearer " + token)]))
        except Unauthenticated:  # a refused token is not cached: nothing to fill
            pass
    slow = max(1, requests // 20)  # a signature check costs ~100x a cache hit: fewer of them
    cases = {
        "no token": (cached, None, requests),
        "RS256, verified each time": (uncached, tokens["RS256"], slow),
        "ES256, verified each time": (uncached, tokens["ES256"], slow),
        "RS256, cached": (cached, tokens["RS256"], requests),
        "ES256, cached": (cached, tokens["ES256"], requests),
        "refused (wrong audience, 403)": (uncached, tokens["bad"], slow),
    }
    out = {}
    for name, (check, token, n) in cases.items():
        base = _time(None, token, n, chunks)
        out[name] = max(0.0, _time(check, token, n, chunks) - base)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--chunks", type=int, default=5)
    args = parser.parse_args()
    for name, us in run(args.requests, args.chunks).items():
        print(f"{name:32s} {us:8.2f} us of CPU per request in the JWT stage")


if __name__ == "__main__":
    main()
