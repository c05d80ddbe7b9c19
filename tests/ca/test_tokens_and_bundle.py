"""Pure logic of bootstrap tokens (format, hashing, each refusal, bounds) and of the trust bundle (rotation,
recording what a root signed, retirement with an injected clock), without sockets."""

from __future__ import annotations

import hashlib

import pytest

from proto.ca import CaRoot, CaState
from services.ca import bundle, tokens
from services.ca.config import parse_duration

NOW = 1_800_000_000.0


def test_a_token_is_id_dot_256_bit_secret_and_only_its_hash_is_kept() -> None:
    text, record = tokens.new_token("a", "web", 3600, 2, NOW)
    token_id, secret = tokens.split(text)
    assert token_id == record.id and len(token_id) == 16 and len(secret) == 43  # 43 base64url chars = 256 bits
    assert record.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest() and secret not in repr(record)
    assert (record.uses, record.max_uses, record.expires) == (2, 2, NOW + 3600)
    others = {tokens.new_token("a", "web", 3600, 1, NOW)[0] for _ in range(50)}
    assert len(others) == 50


def test_each_refusal_has_its_own_reason() -> None:
    text, record = tokens.new_token("a", "web", 3600, 1, NOW)
    _, secret = tokens.split(text)
    tokens.check(record, secret, NOW)  # good
    reasons = {}
    for name, rec, sec, now in (
        ("unknown", None, secret, NOW),
        ("wrong secret", record, "x" * 43, NOW),
        ("revoked", tokens._spent(record, revoked=True), secret, NOW),
        ("expired", record, secret, NOW + 3600),
        ("used up", tokens._spent(record, uses=0), secret, NOW),
    ):
        with pytest.raises(tokens.TokenRefused) as refused:
            tokens.check(rec, sec, now)
        reasons[name] = str(refused.value)
    assert reasons["unknown"] == reasons["wrong secret"] and reasons["unknown"].startswith("unknown token")
    assert "revoked" in reasons["revoked"] and "expired" in reasons["expired"] and "used up" in reasons["used up"]
    assert len({reasons[k] for k in ("unknown", "revoked", "expired", "used up")}) == 4
    assert all(secret not in r for r in reasons.values())
    tokens.check(record, secret, NOW + 3599.9)  # one tick before expiry it still pays


@pytest.mark.parametrize("text", ["", "abc", "0123456789abcdef", "0123456789ABCDEF." + "a" * 43,
                                  "0123456789abcdef." + "a" * 42, "0123456789abcdef." + "a" * 44,
                                  "0123456789abcdef." + "a" * 42 + "="])
def test_a_malformed_token_is_refused_as_malformed(text: str) -> None:
    with pytest.raises(tokens.TokenRefused, match="malformed"):
        tokens.split(text)
    assert tokens.token_id_of(text) == ""


def test_token_bounds_at_and_one_over() -> None:
    tokens.new_token("a", "b", tokens.MIN_TTL, 1, NOW)
    tokens.new_token("a", "b", tokens.MAX_TTL, tokens.MAX_USES, NOW)
    for ttl, uses in ((tokens.MIN_TTL - 1, 1), (tokens.MAX_TTL + 1, 1), (3600, 0), (3600, tokens.MAX_USES + 1)):
        with pytest.raises(tokens.TokenRefused):
            tokens.new_token("a", "b", ttl, uses, NOW)


def _state() -> CaState:
    return CaState(trust_domain="cluster.local", roots=[CaRoot(fingerprint="old", cert_pem="OLD")], signer="old")


def test_rotation_keeps_the_old_root_until_its_last_certificate_expired() -> None:
    state = bundle.signed(_state(), "old", NOW + 100, slack=0)
    assert state is not None and state.version == 1  # recording is not a change of the bundle
    assert bundle.signed(state, "old", NOW + 50, slack=0) is None  # already covered: no write
    rotated = bundle.rotated(state, "NEW", "new", NOW)
    assert rotated.signer == "new" and rotated.version == 2
    assert bundle.bundle_of(rotated).roots_pem == ["OLD", "NEW"]
    assert bundle.signing_root(rotated).fingerprint == "new"
    late = bundle.signed(rotated, "old", NOW + 150, slack=0)  # a replica that had not yet followed signed once more
    assert late is not None
    assert bundle.retire(late, NOW + 149.9) is None  # injected clock: one tick before, the old root stays
    retired = bundle.retire(late, NOW + 150)
    assert retired is not None and [r.fingerprint for r in retired.roots] == ["new"] and retired.version == 3
    assert bundle.retire(retired, NOW + 10**9) is None  # the signing root never retires


def test_a_root_that_signed_nothing_retires_at_the_first_check() -> None:
    rotated = bundle.rotated(_state(), "NEW", "new", NOW)
    assert bundle.retires_at(rotated.roots[0], NOW) == NOW
    assert bundle.retire(rotated, NOW) is not None


def test_slack_bounds_etcd_writes() -> None:
    state = bundle.signed(_state(), "old", NOW + 100, slack=60)
    assert state is not None and state.roots[0].latest_not_after == NOW + 160
    assert bundle.signed(state, "old", NOW + 159, slack=60) is None
    assert bundle.signed(state, "gone", NOW, slack=60) is None


def test_rotation_is_refused_with_a_plugin_ca_and_beyond_three_roots() -> None:
    plugin = CaState(trust_domain="cluster.local", roots=[CaRoot(fingerprint="op", cert_pem="OP")], signer="x",
                     plugin=True)
    with pytest.raises(bundle.RotateRefused, match="plug-in CA"):
        bundle.rotated(plugin, "NEW", "new", NOW)
    state = bundle.rotated(bundle.rotated(_state(), "B", "b", NOW), "C", "c", NOW)
    assert len(state.roots) == bundle.MAX_ROOTS
    with pytest.raises(bundle.RotateRefused, match="already trusted") as refused:
        bundle.rotated(state, "D", "d", NOW)
    # roots that signed nothing retire at the next check, not at Unix time 0
    assert f"(Unix time {NOW:.0f})" in str(refused.value)


@pytest.mark.parametrize("text,seconds", [("24h", 86400), ("90s", 90), ("1.5h", 5400), ("60", 60), ("2d", 172800)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration("X", text) == seconds


@pytest.mark.parametrize("text", ["59s", "1x", "", "nan", "inf"])
def test_bad_durations_name_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match="X is"):
        parse_duration("X", text)
