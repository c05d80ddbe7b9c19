"""A tiny JWT issuer for trying RequestAuthentication (docs/security.md, "Authorization"): it keeps an RSA key
in DIR (created on first use, 0600), writes the public half as DIR/public/jwks.json for any static web server
to serve as the `jwksUri` (serve DIR/public, never DIR: DIR holds the private key), and prints a signed RS256
token. `--rotate` makes a new key; jwks.json then holds
the new key (and, with `--keep-old`, the old one too, as an issuer publishes both while tokens move over).

    python -m examples.jwt.issuer --dir /tmp/issuer --issuer https://issuer.example --sub alice \\
        [--aud bookstore] [--claim groups=group1,group2] [--ttl 3600] [--rotate [--keep-old]]

Not a real identity provider: a demo and test aid. The private key never leaves DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _load_keys(directory: Path) -> list[tuple[str, rsa.RSAPrivateKey]]:
    """(kid, key) for every key-<kid>.pem in DIR, newest last."""
    keys = []
    for path in sorted(directory.glob("key-*.pem"), key=lambda p: p.stat().st_mtime_ns):
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        keys.append((path.stem.removeprefix("key-"), key))
    return keys


def _new_key(directory: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = f"k{int(time.time() * 1000)}"
    path = directory / f"key-{kid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))


def _write_jwks(directory: Path, keys: list[tuple[str, rsa.RSAPrivateKey]]) -> None:
    """DIR/public/jwks.json: a directory of its own, so serving it never serves the private key beside it."""
    entries = [{**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256",
                "use": "sig"} for kid, key in keys]
    public = directory / "public"
    public.mkdir(mode=0o755, exist_ok=True)
    tmp = public / "jwks.json.tmp"
    tmp.write_text(json.dumps({"keys": entries}))
    tmp.replace(public / "jwks.json")  # a server never serves half a file


def _claim(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    return name, value.split(",") if "," in value else value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, type=Path, help="where the key lives; DIR/public/jwks.json is what to serve")
    parser.add_argument("--issuer", required=True, help="the `iss` claim (RequestAuthentication jwtRules[].issuer)")
    parser.add_argument("--sub", default="alice", help="the `sub` claim (request principal: <iss>/<sub>)")
    parser.add_argument("--aud", action="append", default=[], help="an `aud` value (repeatable)")
    parser.add_argument("--claim", action="append", default=[], metavar="NAME=VALUE[,VALUE...]",
                        help="another claim; a comma makes a list")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until `exp`")
    parser.add_argument("--rotate", action="store_true", help="make a new signing key first")
    parser.add_argument("--keep-old", action="store_true", help="with --rotate: keep publishing the old keys")
    args = parser.parse_args(argv)
    args.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if args.rotate or not _load_keys(args.dir):
        if args.rotate and not args.keep_old:
            for path in args.dir.glob("key-*.pem"):
                path.unlink()
        _new_key(args.dir)
    keys = _load_keys(args.dir)
    _write_jwks(args.dir, keys)
    kid, key = keys[-1]
    now = int(time.time())
    claims: dict[str, Any] = {"iss": args.issuer, "sub": args.sub, "iat": now, "exp": now + args.ttl,
                              **dict(_claim(c) for c in args.claim)}
    if args.aud:
        claims["aud"] = args.aud if len(args.aud) > 1 else args.aud[0]
    print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid}))


if __name__ == "__main__":
    main()
