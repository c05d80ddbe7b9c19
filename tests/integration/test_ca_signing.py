"""The ca against the real nats-server and etcd: signing with a bootstrap token, the identity a token
entitles, every token refusal with its own reason, renewal with a proof, and interop with openssl."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from proto.ca import SignReply, TokenCreateReply, TokenCreateRequest, TokenRecord, TokenRevokeReply, TrustBundle
from runtime import bus as busmod
from tests.ca import pki
from tests.integration.conftest import ControlPlane

pytestmark = pytest.mark.asyncio
TD = "cluster.local"


@pytest.fixture(scope="module")
def ca_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("ca"))
    try:
        cp.start_service("ca")
        yield cp
    finally:
        cp.stop()


async def call(plane: ControlPlane, subject: str, message: object, reply_type: type) -> object:
    bus = await busmod.connect(plane.nats_url, "test-ca")
    try:
        return await bus.call(subject, message, reply_type, timeout=10)
    finally:
        await bus.close()


async def make_token(plane: ControlPlane, ns: str, sa: str = "default", uses: int = 1, ttl: int = 3600) -> str:
    reply = await call(plane, "isthmus.ca.token.create",
                       TokenCreateRequest(namespace=ns, service_account=sa, uses=uses, ttl_seconds=ttl), TokenCreateReply)
    assert reply.ok, reply.error
    return reply.token


async def sign(plane: ControlPlane, **fields: object) -> SignReply:
    return await call(plane, "isthmus.ca.sign", fields, SignReply)


def leaf(reply: SignReply) -> x509.Certificate:
    return x509.load_pem_x509_certificate(reply.cert_chain_pem[0].encode())


def openssl_verify(tmp: Path, roots_pem: list[str], chain_pem: list[str]) -> subprocess.CompletedProcess[str]:
    (tmp / "bundle.pem").write_text("".join(roots_pem))
    (tmp / "leaf.pem").write_text(chain_pem[0])
    (tmp / "untrusted.pem").write_text("".join(chain_pem[1:]) or chain_pem[0])
    args = ["openssl", "verify", "-CAfile", str(tmp / "bundle.pem")]
    if len(chain_pem) > 1:
        args += ["-untrusted", str(tmp / "untrusted.pem")]
    return subprocess.run([*args, str(tmp / "leaf.pem")], capture_output=True, text=True, timeout=30)


async def test_a_token_buys_a_certificate_for_its_identity_that_openssl_accepts(ca_plane: ControlPlane,
                                                                             tmp_path: Path) -> None:
    token = await make_token(ca_plane, "shop", "cart")
    csr_pem, _ = pki.csr()
    reply = await sign(ca_plane, csr_pem=csr_pem, token=token)
    assert reply.ok, reply.error
    assert reply.spiffe_id == f"spiffe://{TD}/ns/shop/sa/cart"
    cert = leaf(reply)
    assert [str(u.value) for u in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value] == [
        reply.spiffe_id]
    ttl = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(hours=24) <= ttl <= datetime.timedelta(hours=24, minutes=2)  # the default, backdated 1 min
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    bundle = await call(ca_plane, "isthmus.ca.bundle", {}, TrustBundle)
    assert reply.roots_pem == bundle.roots_pem and bundle.version >= 1 and bundle.trust_domain == TD
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    verified = openssl_verify(tmp_path, bundle.roots_pem, reply.cert_chain_pem)
    assert verified.returncode == 0 and verified.stdout.strip().endswith("OK"), verified.stdout + verified.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(tmp_path / "leaf.pem")],
                          capture_output=True, text=True, timeout=30).stdout
    assert f"URI:spiffe://{TD}/ns/shop/sa/cart" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    audits = [json.loads(line) for line in (ca_plane.state_dir / "logs" / "ca.log").read_text().splitlines()
              if '"ca audit"' in line]
    signed = [a for a in audits if a.get("outcome") == "signed" and a.get("serial") == reply.serial]
    assert len(signed) == 1 and signed[0]["identity"] == reply.spiffe_id and signed[0]["not_after"] == reply.not_after
    assert signed[0]["who"] == f"token:{token.split('.')[0]}" and token.split(".")[1] not in json.dumps(audits)


async def test_a_token_for_namespace_a_cannot_get_an_identity_in_namespace_b(ca_plane: ControlPlane) -> None:
    token = await make_token(ca_plane, "a", "web")
    csr_pem, _ = pki.csr(uris=(f"spiffe://{TD}/ns/b/sa/web", "spiffe://evil/ns/b/sa/x"), dns=("b.example",))
    reply = await sign(ca_plane, csr_pem=csr_pem, token=token)
    assert reply.ok and reply.spiffe_id == f"spiffe://{TD}/ns/a/sa/web"
    cert = leaf(reply)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(f"spiffe://{TD}/ns/a/sa/web")]  # nothing the CSR asked


async def test_a_used_up_expired_revoked_or_unknown_token_is_refused_with_its_own_reason(ca_plane: ControlPlane) -> None:
    csr_pem, _ = pki.csr()
    used = await make_token(ca_plane, "r", uses=1)
    assert (await sign(ca_plane, csr_pem=csr_pem, token=used)).ok
    reasons = {"used up": (await sign(ca_plane, csr_pem=csr_pem, token=used)).error}

    revoked = await make_token(ca_plane, "r", uses=5)
    revoke = await call(ca_plane, "isthmus.ca.token.revoke", {"id": revoked.split(".")[0]}, TokenRevokeReply)
    assert revoke.ok
    reasons["revoked"] = (await sign(ca_plane, csr_pem=csr_pem, token=revoked)).error

    secret = "A" * 43  # an expired record, written as the ca writes one
    record = TokenRecord(id="00000000000000ee", namespace="r", service_account="default",
                         secret_sha256=hashlib.sha256(secret.encode()).hexdigest(), created=time.time() - 120,
                         expires=time.time() - 60, uses=1, max_uses=1)
    store = await ca_plane.store()
    try:
        await store.put("/isthmus/ca/tokens/00000000000000ee", busmod.encode(record))
    finally:
        await store.close()
    reasons["expired"] = (await sign(ca_plane, csr_pem=csr_pem, token=f"00000000000000ee.{secret}")).error
    reasons["unknown"] = (await sign(ca_plane, csr_pem=csr_pem, token=f"0123456789abcdef.{'B' * 43}")).error
    wrong_secret = used.split(".")[0] + "." + "C" * 43
    reasons["unknown (wrong secret)"] = (await sign(ca_plane, csr_pem=csr_pem, token=wrong_secret)).error
    reasons["malformed"] = (await sign(ca_plane, csr_pem=csr_pem, token="not-a-token")).error
    assert "used up" in reasons["used up"]
    assert "revoked" in reasons["revoked"]
    assert "expired" in reasons["expired"]
    assert reasons["unknown"].startswith("unknown token") and reasons["unknown (wrong secret)"] == reasons["unknown"]
    assert "malformed" in reasons["malformed"]
    assert len(set(reasons.values())) == len(reasons) - 1, reasons  # all distinct but the two unknowns
    assert all(secret not in r and "B" * 43 not in r for r in reasons.values())  # never echo a secret
    log = (ca_plane.state_dir / "logs" / "ca.log").read_text()
    audits = [json.loads(line) for line in log.splitlines() if '"ca audit"' in line]
    refused = [a for a in audits if a.get("outcome") == "refused"]
    assert any(a["who"] == "token:00000000000000ee" and "expired" in a["reason"] for a in refused)
    assert all("B" * 43 not in json.dumps(a) for a in audits)


async def test_two_concurrent_redemptions_of_a_one_use_token_make_exactly_one_certificate(
        ca_plane: ControlPlane) -> None:
    token = await make_token(ca_plane, "race", uses=1)
    csrs = [pki.csr()[0] for _ in range(8)]
    replies = await asyncio.gather(*(sign(ca_plane, csr_pem=c, token=token) for c in csrs))
    assert sum(r.ok for r in replies) == 1, [r.error for r in replies]
    assert all("used up" in r.error for r in replies if not r.ok)


async def test_token_redemption_is_a_compare_and_swap_in_etcd(ca_plane: ControlPlane) -> None:
    """Against etcd directly: twenty racing redemptions of a 3-use token, three win."""
    from services.ca.tokens import TokenRefused, Tokens

    store = await ca_plane.store()
    try:
        tokens = Tokens(store, 1000)
        text, _ = await tokens.create("race", "sa", 600, 3, time.time())
        results = await asyncio.gather(*(tokens.redeem(text, time.time()) for _ in range(20)), return_exceptions=True)
    finally:
        await store.close()
    assert sum(not isinstance(r, Exception) for r in results) == 3
    assert all(isinstance(r, TokenRefused) and "used up" in str(r) for r in results if isinstance(r, Exception))


async def test_a_certificate_renews_itself_and_a_forged_or_expired_proof_is_refused(ca_plane: ControlPlane) -> None:
    token = await make_token(ca_plane, "renew", "api")
    first_csr, first_key = pki.csr()
    first = await sign(ca_plane, csr_pem=first_csr, token=token, ttl_seconds=600)
    assert first.ok
    next_csr, _ = pki.csr(uris=(f"spiffe://{TD}/ns/other/sa/admin",))
    renewed = await sign(ca_plane, csr_pem=next_csr, proof_chain_pem=first.cert_chain_pem,
                         proof_signature=pki.proof_signature(first_key, next_csr))
    assert renewed.ok, renewed.error
    assert renewed.spiffe_id == first.spiffe_id == f"spiffe://{TD}/ns/renew/sa/api"
    assert renewed.serial != first.serial

    forged = await sign(ca_plane, csr_pem=next_csr, proof_chain_pem=first.cert_chain_pem,
                        proof_signature=pki.proof_signature(pki.key(), next_csr))  # not the certificate's key
    assert not forged.ok and "proof_signature does not verify" in forged.error
    log = (ca_plane.state_dir / "logs" / "ca.log").read_text()
    assert any(a.get("outcome") == "refused" and a["who"] == f"proof:{first.spiffe_id} (unverified)"
               and "does not verify" in a["reason"]
               for a in (json.loads(line) for line in log.splitlines() if '"ca audit"' in line))

    other_root_key = pki.key()
    stranger_root = pki.ca_cert("stranger", other_root_key, other_root_key.public_key(),
                                now=datetime.datetime.now(datetime.timezone.utc))
    stranger = await sign(ca_plane, csr_pem=next_csr, proof_chain_pem=[pki.pem(stranger_root).decode()],
                          proof_signature=pki.proof_signature(other_root_key, next_csr))
    assert not stranger.ok and "CA, not a workload certificate" in stranger.error

    expired_cert, expired_key = _expired_leaf(ca_plane)
    expired = await sign(ca_plane, csr_pem=next_csr, proof_chain_pem=[pki.pem(expired_cert).decode()],
                         proof_signature=pki.proof_signature(expired_key, next_csr))
    assert not expired.ok and "expired" in expired.error

    both = await sign(ca_plane, csr_pem=next_csr, token=token, proof_chain_pem=first.cert_chain_pem,
                      proof_signature=pki.proof_signature(first_key, next_csr))
    assert not both.ok and "one proof" in both.error
    neither = await sign(ca_plane, csr_pem=next_csr)
    assert not neither.ok and "no proof" in neither.error


def _expired_leaf(plane: ControlPlane) -> tuple[x509.Certificate, object]:
    """A workload certificate signed by the mesh root that expired an hour ago (made with the root's key
    from disk, as only the ca could)."""
    from services.ca.material import Material
    from services.ca.signer import Authority, issue, load_csr

    material = Material(plane.state_dir)
    fp = next(material.dir.glob("*.key.pem")).name.removesuffix(".key.pem")
    loaded = material.load(fp)
    assert loaded is not None
    root, root_key = loaded
    csr_pem, private_key = pki.csr()
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    cert = issue(Authority(root, root_key, (), root), load_csr(csr_pem), f"spiffe://{TD}/ns/renew/sa/api", 3600, past)
    return cert, private_key


async def test_bad_csrs_and_malformed_messages_get_a_reason_and_the_ca_keeps_serving(ca_plane: ControlPlane) -> None:
    token = await make_token(ca_plane, "bad", uses=3)
    not_pem = await sign(ca_plane, csr_pem="hello", token=token)
    assert not not_pem.ok and "not a PEM certificate request" in not_pem.error
    small_rsa, _ = pki.csr(pki.rsa_key(1024))
    assert "at least 2048" in (await sign(ca_plane, csr_pem=small_rsa, token=token)).error
    tampered_csr, _ = pki.csr()
    der = bytearray(x509.load_pem_x509_csr(tampered_csr.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # break the self-signature
    import base64
    body = base64.encodebytes(bytes(der)).decode()
    tampered = await sign(ca_plane, csr_pem=f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n",
                          token=token)
    assert not tampered.ok and ("signature" in tampered.error or "cannot be read" in tampered.error or
                                "not a PEM" in tampered.error)
    bus = await busmod.connect(ca_plane.nats_url, "test-ca-garbage")
    try:
        for garbage in (b"\xff\x00", b"[]", b'{"csr_pem": 5}', json.dumps({"csr_pem": "x" * 20000}).encode()):
            answer = json.loads(await bus.request("isthmus.ca.sign", garbage, timeout=10))
            assert answer["ok"] is False and "malformed request" in answer["error"]
    finally:
        await bus.close()
    # the token was not spent by CSRs that could not be signed
    csr_pem, _ = pki.csr(pki.rsa_key(2048))
    assert (await sign(ca_plane, csr_pem=csr_pem, token=token)).ok
    assert ca_plane.services["ca"].is_running


async def test_records_expired_more_than_an_hour_ago_are_swept_and_younger_ones_kept(ca_plane: ControlPlane) -> None:
    from services.ca.tokens import PREFIX, RETAIN, Tokens

    now = time.time()
    store = await ca_plane.store()
    try:
        for token_id, expires in (("00000000000000a1", now - RETAIN - 1), ("00000000000000a2", now - RETAIN + 60)):
            record = TokenRecord(id=token_id, namespace="sweep", service_account="default", secret_sha256="0" * 64,
                                 created=expires - 60, expires=expires, uses=1, max_uses=1)
            await store.put(PREFIX + token_id, busmod.encode(record))
        kept = {r.id for r in await Tokens(store, 1000).records(now)}
        assert "00000000000000a2" in kept and "00000000000000a1" not in kept
        assert await store.get(PREFIX + "00000000000000a1") is None
        assert await store.get(PREFIX + "00000000000000a2") is not None
    finally:
        await store.close()
