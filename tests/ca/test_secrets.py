"""The secret store's pure parts: checking a put, sealing with the KEK, sealing to a gateway's reply key and
opening it (runtime/secret_seal.py), and the gateway's SecretClient keeping the last good credential."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proto.secrets import SECRET_TYPE_OPAQUE, SealedTlsSecret, SecretFetchReply, TlsSecretPut
from proxy.gateway.secret_client import SecretClient
from runtime import kek as keks
from runtime.secret_seal import SealBroken, open_sealed, raw_public, seal_to
from services.ca.secret_check import SecretRefused, check
from services.ca.secret_store import Keyring, record_key
from tests.ca.tlspki import key_body, server


def put(**fields: object) -> TlsSecretPut:
    chain, key, _ = server()
    base: dict[str, object] = {"namespace": "istio-system", "name": "httpbin-credential", "cert_chain_pem": chain,
                               "key_pem": key}
    return TlsSecretPut(**{**base, **fields})  # type: ignore[arg-type]


def test_a_valid_secret_gives_its_hosts_expiry_and_key_type() -> None:
    chain, key, ca = server(("httpbin.example.com", "*.example.org"), rsa_bits=2048)
    info, warnings = check(put(cert_chain_pem=chain, key_pem=key, ca_cert_pem=ca), time.time())
    assert info.hosts == ["httpbin.example.com", "*.example.org"] and info.key_type == "RSA 2048"
    assert info.has_ca_cert and info.not_after > time.time() + 80 * 86400 and warnings == []


def test_a_key_of_another_certificate_is_refused_without_echoing_it() -> None:
    _, other_key, _ = server()
    with pytest.raises(SecretRefused, match="does not match the certificate") as refused:
        check(put(key_pem=other_key), time.time())
    assert key_body(other_key)[:20] not in str(refused.value)


@pytest.mark.parametrize("fields, reason", [
    ({"key_pem": "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n"}, "not a valid PEM private key"),
    ({"key_pem": "garbage"}, "no PEM private key"),
    ({"cert_chain_pem": "garbage"}, "no PEM certificate"),
    ({"cert_chain_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "not valid PEM certificates"),
    ({"ca_cert_pem": "garbage"}, "ca cert: no PEM certificate"),
    ({"name": "Bad_Name"}, "not a DNS-1123 subdomain"),
    ({"name": "a/b"}, "not a DNS-1123 subdomain"),
    ({"namespace": "a.b"}, "not a DNS-1123 label"),
    ({"key_pem": ""}, "key: missing"),
])
def test_garbage_and_bad_names_are_refused_with_a_reason(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(SecretRefused, match=reason) as refused:
        check(put(**fields), time.time())
    assert "\n" not in str(refused.value)


def test_an_encrypted_key_is_refused_saying_how_to_decrypt_it() -> None:
    with pytest.raises(SecretRefused, match="encrypted"):
        check(put(key_pem="-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0)


def test_an_expired_leaf_is_stored_with_a_warning_as_kubectl_and_envoy_accept_it() -> None:
    chain, key, _ = server(days=1, start_days=-10)
    info, warnings = check(put(cert_chain_pem=chain, key_pem=key), time.time())
    assert info.not_after < time.time() and len(warnings) == 1 and "expired" in warnings[0]


def test_a_cacert_companion_holds_only_a_ca_and_must_be_named_so() -> None:
    _, _, ca = server()
    info, _ = check(put(name="httpbin-credential-cacert", cert_chain_pem="", key_pem="", ca_cert_pem=ca), 0)
    assert info.type == SECRET_TYPE_OPAQUE and info.has_ca_cert
    with pytest.raises(SecretRefused, match="-cacert"):
        check(put(name="httpbin-credential", cert_chain_pem="", key_pem="", ca_cert_pem=ca), 0)


def test_the_contract_bounds_sizes_one_byte_over_and_at() -> None:
    from runtime.bus import decode, encode

    at = put(key_pem="k" * 16 * 1024)
    assert decode(encode(at), TlsSecretPut).key_pem == at.key_pem
    with pytest.raises(msgspec.ValidationError, match="key_pem"):
        decode(encode(put(key_pem="k" * (16 * 1024 + 1))), TlsSecretPut)


def test_the_keyring_seals_with_the_kek_and_opens_what_the_local_key_sealed(tmp_path: Path) -> None:
    local_ring = Keyring.for_ca(str(tmp_path), None, None)
    where = record_key("ns", "cred")
    kid, nonce, sealed = local_ring.seal(where, b"KEY")
    assert (tmp_path / "ca" / "secrets.kek").stat().st_mode & 0o077 == 0
    kek = os.urandom(32)
    ring = Keyring.for_ca(str(tmp_path), kek, None)
    assert ring.seal(where, b"x")[0] == keks.kek_id(kek)
    assert ring.open(where, kid, nonce, sealed) == b"KEY"
    with pytest.raises(keks.Unsealable):
        ring.open(record_key("other", "cred"), kid, nonce, sealed)  # moved to another namespace's key path
    with pytest.raises(keks.Unsealable, match="does not hold"):
        Keyring(os.urandom(32)).open(where, kid, nonce, sealed)


def test_sealing_to_a_reply_key_opens_only_with_its_private_half_and_for_its_name() -> None:
    private = X25519PrivateKey.generate()
    ephemeral, nonce, sealed = seal_to(raw_public(private), "ns", "cred", 7, b"PEM")
    assert open_sealed(private, ephemeral, nonce, sealed, "ns", "cred", 7) == b"PEM"
    for args in (("ns", "cred", 8), ("ns", "other", 7), ("other", "cred", 7)):
        with pytest.raises(SealBroken):
            open_sealed(private, ephemeral, nonce, sealed, *args)
    with pytest.raises(SealBroken):
        open_sealed(X25519PrivateKey.generate(), ephemeral, nonce, sealed, "ns", "cred", 7)


class FakeBus:
    """A stand-in that answers fetches as the ca would (pure logic: the real bus is in the integration tests)."""

    def __init__(self, secrets: dict[str, tuple[str, str, str, int]], tamper: bool = False) -> None:
        self.secrets, self.tamper, self.asked = secrets, tamper, []  # type: ignore[var-annotated]

    async def call(self, subject: str, request: object, reply_type: type, timeout: float) -> SecretFetchReply:
        self.asked.append(list(request.names))  # type: ignore[attr-defined]
        out, missing = [], []
        for name in request.names:  # type: ignore[attr-defined]
            if name not in self.secrets:
                missing.append(name)
                continue
            chain, key, ca, version = self.secrets[name]
            sealed = SealedTlsSecret(namespace="ns", name=name, version=version, cert_chain_pem=chain, ca_cert_pem=ca)
            if key:
                e, n, c = seal_to(request.reply_key, "ns", name, version, key.encode())  # type: ignore[attr-defined]
                sealed.ephemeral_key, sealed.nonce, sealed.sealed_key = e, n, (c[:-1] + b"x" if self.tamper else c)
            out.append(sealed)
        return SecretFetchReply(ok=True, secrets=out, missing=missing)


async def test_the_client_opens_sealed_keys_joins_companions_and_keeps_the_last_good_on_a_bad_reply() -> None:
    chain, key, ca = server()
    bus = FakeBus({"cred": (chain, key, "", 5), "cred-cacert": ("", "", ca, 6)})
    client = SecretClient("ns", "gw")
    changes: list[int] = []
    client.listeners.append(lambda: changes.append(1))
    client.want({"cred", "gone"})
    assert await client._fetch_due(bus)  # type: ignore[arg-type]
    cred = client.current["cred"]
    assert cred.key_pem == key and cred.ca_cert_pem == ca and cred.version == 5 and client.missing == {"gone"}
    assert changes and "BEGIN" not in str(client.dump()) and client.dump()["missing"] == ["gone"]
    bus.secrets["cred"] = (chain, key, "", 9)
    bus.tamper = True
    client._due.add("cred")
    assert await client._fetch_due(bus)  # type: ignore[arg-type]
    assert client.current["cred"].version == 5  # the damaged reply was dropped
    _, other_key, _ = server()
    bus.tamper, bus.secrets["cred"] = False, (chain, other_key, "", 10)
    client._due.add("cred")
    await client._fetch_due(bus)  # type: ignore[arg-type]
    assert client.current["cred"].version == 5  # a key that does not match its chain: dropped
    client.want({"gone"})
    assert client.current == {} and "cred" not in client._held and "cred-cacert" not in client._held


@pytest.mark.parametrize("value, ok", [("1", True), ("10000", True), ("0", False), ("x", False), ("-1", False)])
def test_max_secrets_setting(monkeypatch: pytest.MonkeyPatch, value: str, ok: bool) -> None:
    from services.ca.config import CaConfig

    monkeypatch.setenv("ISTHMUS_CA_MAX_SECRETS", value)
    if ok:
        assert CaConfig.from_env().max_secrets == int(value)
    else:
        with pytest.raises(ValueError, match="ISTHMUS_CA_MAX_SECRETS"):
            CaConfig.from_env()
