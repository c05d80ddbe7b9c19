"""examples/jwt/issuer.py, the demo issuer docs/security.md ("Authorization") uses: the token it prints verifies
against the jwks.json it writes, its key stays private, and a rotation publishes the new key (and the old one
only with --keep-old)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jwt
import pytest

from examples.jwt.issuer import main


def issue(capsys: pytest.CaptureFixture[str], directory: Path, *args: str) -> str:
    main(["--dir", str(directory), "--issuer", "https://issuer.example", *args])
    return capsys.readouterr().out.strip()


def verify(directory: Path, token: str) -> dict:
    keys = jwt.PyJWKSet.from_json((directory / "public" / "jwks.json").read_text())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience="bookstore")


def test_the_token_verifies_against_the_published_key_set(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    token = issue(capsys, tmp_path, "--sub", "alice", "--aud", "bookstore", "--claim", "groups=admins,dev",
                  "--claim", "team=blue")
    claims = verify(tmp_path, token)
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("https://issuer.example", "alice", "bookstore")
    assert (claims["groups"], claims["team"]) == (["admins", "dev"], "blue")
    [pem] = tmp_path.glob("key-*.pem")
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert all("d" not in key for key in json.loads((tmp_path / "public" / "jwks.json").read_text())["keys"])  # public only
    assert verify(tmp_path, issue(capsys, tmp_path, "--aud", "bookstore"))["sub"] == "alice"  # same key again
    assert len(list(tmp_path.glob("key-*.pem"))) == 1
    # the directory to serve holds the key set and nothing else: never the private key (it did: docs served DIR)
    assert [p.name for p in (tmp_path / "public").iterdir()] == ["jwks.json"]


def test_rotation_publishes_the_new_key_and_the_old_only_when_kept(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    old = issue(capsys, tmp_path, "--aud", "bookstore")
    kept = issue(capsys, tmp_path, "--aud", "bookstore", "--rotate", "--keep-old")
    assert jwt.get_unverified_header(kept)["kid"] != jwt.get_unverified_header(old)["kid"]
    verify(tmp_path, old)  # both published
    verify(tmp_path, kept)
    new = issue(capsys, tmp_path, "--aud", "bookstore", "--rotate")
    verify(tmp_path, new)
    with pytest.raises(StopIteration):
        verify(tmp_path, old)  # no longer published
    assert len(json.loads((tmp_path / "public" / "jwks.json").read_text())["keys"]) == 1
