"""proxy/identity/agent.py: what the sidecar does with the ca's answers, driven through a stand-in for the
bus that answers with a CA made in the test (the real ca and bus: tests/integration/test_proxy_identity.py).
The agent's X.509 work runs in real worker children (proxy/identity/x509_worker.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proto.ca import SignReply, SignRequest, TokenCreateRequest, TrustBundle
from proxy.identity.agent import IdentityAgent, IdentityConfig, IdentityFatal
from proxy.identity.ca_client import CaRefused
from proxy.identity.certs import certs_dump
from proxy.identity.schedule import Backoff
from runtime.bus import NoResponders
from tests.proxy.identity.testca import TestCa

ID = "spiffe://cluster.local/ns/shop/sa/cart"


class CaStandIn:
    """Answers CA_* like the ca would, from a TestCa; `refuse_sign` / `refuse_mint` / `down` change that."""

    def __init__(self, ca: TestCa) -> None:
        self.ca = ca
        self.roots = [ca.pem]
        self.version = 1
        self.ttl = 3600.0
        self.tokens = {"good": ID}
        self.refuse_sign = ""
        self.refuse_mint = ""
        self.down = False
        self.signs: list[SignRequest] = []
        self.mints: list[TokenCreateRequest] = []
        self.listeners: dict[str, Callable[[bytes], Any]] = {}

    async def mint(self) -> str:
        """What proxy/sidecar/control_plane.py gives the agent with the operator's client config: a token for
        shop/cart."""
        message = TokenCreateRequest(namespace="shop", service_account="cart", ttl_seconds=600, uses=1)
        self.mints.append(message)
        if self.refuse_mint:
            raise CaRefused(self.refuse_mint)
        self.tokens["minted"] = f"spiffe://cluster.local/ns/{message.namespace}/sa/{message.service_account}"
        return "minted"

    async def call(self, subject: str, message: Any, reply_type: type, timeout: float = 5.0) -> Any:
        if self.down:
            raise NoResponders(f"nothing answers on {subject}: is the service running?")
        assert subject == "isthmus.ca.sign"
        self.signs.append(message)
        if self.refuse_sign:
            return SignReply(ok=False, error=self.refuse_sign)
        if message.token:
            identity = self.tokens.pop(message.token, "")
            if not identity:
                return SignReply(ok=False, error="the token is not known, used up, or revoked")
        else:
            proof = x509.load_pem_x509_certificate(message.proof_chain_pem[0].encode())
            der = x509.load_pem_x509_csr(message.csr_pem.encode()).public_bytes(serialization.Encoding.DER)
            proof.public_key().verify(message.proof_signature, der, ec.ECDSA(hashes.SHA256()))
            if proof.not_valid_after_utc.timestamp() <= time.time():
                return SignReply(ok=False, error="the proof certificate expired")
            identity = proof.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                .get_values_for_type(x509.UniformResourceIdentifier)[0]
        return SignReply(ok=True, cert_chain_pem=[self.ca.sign_csr(message.csr_pem, identity, self.ttl)],
                         roots_pem=self.roots)

    async def request(self, subject: str, payload: bytes, timeout: float = 5.0) -> bytes:
        if self.down:
            raise NoResponders(f"nothing answers on {subject}: is the service running?")
        assert subject == "isthmus.ca.bundle"
        return msgspec.json.encode(TrustBundle(trust_domain="cluster.local", roots_pem=self.roots, version=self.version))

    async def listen(self, subject: str, listener: Callable[[bytes], Any]) -> None:
        self.listeners[subject] = listener


def agent(token: str = "good", **config: Any) -> IdentityAgent:
    return IdentityAgent(IdentityConfig("cluster.local", "shop", "cart", token=token, **config),
                         backoff=Backoff(first=0.01, cap=0.05))


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


async def running(a: IdentityAgent, bus: CaStandIn) -> asyncio.Task[None]:
    return asyncio.create_task(a.run(bus))  # type: ignore[arg-type]


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_token_buys_the_first_certificate_and_contexts_are_built_once() -> None:
    bus, a = CaStandIn(TestCa()), agent()
    task = await running(a, bus)
    material = await until(lambda: a.material)
    await stop(task)
    assert material.spiffe_id == ID and bus.signs[0].token == "good" and not bus.signs[0].proof_chain_pem
    assert a.provider.current is not None and a.provider.current.serial == material.serial
    assert a.provider.builds == 1  # one certificate, one bundle: built once
    assert time.time() + 3600 * 0.48 < a.due < time.time() + 3600 * 0.52  # about half life


async def test_a_refused_token_is_fatal_with_the_cas_reason() -> None:
    bus, a = CaStandIn(TestCa()), agent(token="spent")
    with pytest.raises(IdentityFatal, match="^the ca refused the token: the token is not known, used up, or revoked$"):
        await asyncio.wait_for(a.run(bus), 5)  # type: ignore[arg-type]


async def test_without_a_token_it_mints_one_for_its_own_identity() -> None:
    bus = CaStandIn(TestCa())
    a = agent(token="", mint=bus.mint)
    task = await running(a, bus)
    await until(lambda: a.material)
    await stop(task)
    assert [(m.namespace, m.service_account, m.uses) for m in bus.mints] == [("shop", "cart", 1)]


async def test_a_refused_mint_is_fatal_with_how_to_get_a_token() -> None:
    bus = CaStandIn(TestCa())
    a = agent(token="", mint=bus.mint)
    bus.refuse_mint = "only the operator may create tokens"
    with pytest.raises(IdentityFatal) as caught:
        await asyncio.wait_for(a.run(bus), 5)  # type: ignore[arg-type]
    assert str(caught.value) == ("this proxy has no token and may not create one (only the operator may create "
                                 "tokens): get one with `isthmus token create --namespace shop --service-account cart` "
                                 "and pass it with --token (or --token-file, env ISTHMUS_TOKEN)")


async def test_without_a_token_or_the_operators_config_it_is_fatal_with_how_to_get_a_token() -> None:
    bus, a = CaStandIn(TestCa()), agent(token="")  # no mint: this sidecar holds only its own bus credentials
    with pytest.raises(IdentityFatal, match=r"^this proxy has no token and may not create one \(no operator client "
                                            r"config to create one with\): get one with `isthmus token create"):
        await asyncio.wait_for(a.run(bus), 5)  # type: ignore[arg-type]
    assert bus.signs == []


async def test_a_token_for_another_identity_is_fatal_naming_both() -> None:
    bus, a = CaStandIn(TestCa()), agent(token="other")
    bus.tokens["other"] = "spiffe://cluster.local/ns/b/sa/cart"
    with pytest.raises(IdentityFatal, match="is for spiffe://cluster.local/ns/b/sa/cart, this workload is " + ID):
        await asyncio.wait_for(a.run(bus), 5)  # type: ignore[arg-type]


async def test_a_ca_that_does_not_answer_is_not_fatal_and_is_tried_again() -> None:
    bus, a = CaStandIn(TestCa()), agent()
    bus.down = True
    task = await running(a, bus)
    await until(lambda: a.error)
    assert "nothing answers" in a.error and not task.done()
    bus.down = False
    await until(lambda: a.material)
    assert a.error == ""
    await stop(task)


async def test_a_token_file_is_read_at_each_try(tmp_path: Path) -> None:
    bus, a = CaStandIn(TestCa()), agent(token="", token_file=str(tmp_path / "token"))
    (tmp_path / "token").write_text("good\n")
    task = await running(a, bus)
    await until(lambda: a.material)
    await stop(task)
    assert bus.signs[0].token == "good" and bus.mints == []


async def test_a_missing_token_file_is_fatal_naming_it(tmp_path: Path) -> None:
    bus, a = CaStandIn(TestCa()), agent(token="", token_file=str(tmp_path / "nope"))
    with pytest.raises(IdentityFatal, match=f"--token-file {tmp_path / 'nope'}: No such file"):
        await asyncio.wait_for(a.run(bus), 5)  # type: ignore[arg-type]


async def test_renewal_proves_with_the_current_certificate_never_the_token_and_uses_a_new_key() -> None:
    bus, a = CaStandIn(TestCa()), agent()
    task = await running(a, bus)
    first = await until(lambda: a.material)
    a.renew_soon()  # drive the timer
    second = await until(lambda: a.material if a.material is not first else None)
    await stop(task)
    renewal = bus.signs[1]
    assert renewal.token == "" and renewal.proof_chain_pem == first.chain_pem  # the stand-in verified the proof
    assert second.spiffe_id == ID and second.serial != first.serial and a.renewals == 1
    assert second.key_pem != first.key_pem
    assert a.provider.builds == 2 and a.provider.current.serial == second.serial  # type: ignore[union-attr]


async def test_a_refused_renewal_retries_with_backoff_and_keeps_the_certificate() -> None:
    bus, a = CaStandIn(TestCa()), agent()
    task = await running(a, bus)
    first = await until(lambda: a.material)
    bus.refuse_sign = "the ca is rotating"
    a.renew_soon()
    await until(lambda: len(bus.signs) >= 4, timeout=20)  # kept trying (each try starts two X.509 workers)
    assert a.material is first and a.error == "the ca is rotating" and not task.done()
    bus.refuse_sign = ""
    await until(lambda: a.material is not first)
    await stop(task)


async def test_an_expired_certificate_is_logged_kept_trying_and_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    import proxy.identity.agent as agent_module
    from tests.proxy.http_helpers import _Recorder

    entries: list[dict] = []
    monkeypatch.setattr(agent_module, "log", _Recorder(entries))
    ca = TestCa()
    bus, a = CaStandIn(ca), agent(token="spent")
    a._adopt(ca.checked(ID, ttl=60, start=time.time() - 120), [ca.pem], fresh=False)  # held, then expired
    bus.refuse_sign = "the proof certificate expired"
    task = await running(a, bus)

    def expired() -> list[dict]:
        return [e for e in entries
                if e["log_level"] == "error" and e["event"].startswith("workload certificate expired")]

    # waited for by its log lines: a try's line follows its sign by the closing of its X.509 worker
    await until(lambda: len(expired()) >= 3, timeout=20)
    assert not task.done()  # never fatal once a certificate was held
    await stop(task)
    assert certs_dump(a)["workload"]["state"] == "expired"
    lines = expired()  # one line per try
    assert len(bus.signs) >= len(lines) >= 3 and lines[0]["error"] == "the proof certificate expired"


async def test_a_restart_with_a_stored_certificate_needs_no_token(tmp_path: Path) -> None:
    bus = CaStandIn(TestCa())
    first = agent(state_dir=str(tmp_path))
    task = await running(first, bus)
    issued = await until(lambda: first.material)
    await stop(task)
    again = agent(token="", state_dir=str(tmp_path))
    await again.load_stored()
    assert again.material is not None and again.material.serial == issued.serial
    assert again.provider.current is not None  # TLS ready before the bus is reached
    task = await running(again, bus)
    await asyncio.sleep(0.1)
    await stop(task)
    assert bus.mints == [] and len(bus.signs) == 1  # nothing asked of the ca


async def test_an_older_bundle_is_ignored_and_a_newer_one_rebuilds_the_contexts() -> None:
    bus, a = CaStandIn(TestCa()), agent()
    bus.version = 5
    task = await running(a, bus)
    await until(lambda: a.material)
    builds = a.provider.builds
    update = bus.listeners["isthmus.ca.bundle.updates"]
    await update(msgspec.json.encode(TrustBundle(trust_domain="cluster.local", roots_pem=[TestCa().pem], version=4)))
    assert a.bundle.version == 5 and a.provider.builds == builds
    await update(msgspec.json.encode(TrustBundle(trust_domain="cluster.local", roots_pem=bus.roots, version=6)))
    assert a.bundle.version == 6 and a.provider.builds == builds + 1
    await update(b"not json")  # logged and ignored
    await stop(task)


async def test_a_rotation_renews_soon_onto_the_new_root() -> None:
    old = TestCa("old root", not_before=time.time() - 3600)
    bus, a = CaStandIn(old), agent(rotation_spread=0.05)
    task = await running(a, bus)
    first = await until(lambda: a.material)
    new = TestCa("new root")
    bus.ca, bus.roots, bus.version = new, [old.pem, new.pem], 2  # the ca signs with the new root from now
    update = bus.listeners["isthmus.ca.bundle.updates"]
    await update(msgspec.json.encode(TrustBundle(trust_domain="cluster.local", roots_pem=bus.roots, version=2)))
    second = await until(lambda: a.material if a.material is not first else None)
    assert second.leaf.issuer == new.subject and a.issuer == new.fingerprint
    renewals = a.renewals
    await update(msgspec.json.encode(TrustBundle(trust_domain="cluster.local", roots_pem=bus.roots, version=3)))
    await asyncio.sleep(0.2)
    assert a.renewals == renewals  # signed by the newest root already: no renewal
    await stop(task)


def test_certs_shows_envoys_shape_with_the_identity_serial_validity_and_roots() -> None:
    ca = TestCa()
    a = agent()
    checked = ca.checked(ID, ttl=86400 * 3)
    material = checked.material
    a._adopt(checked, [ca.pem], fresh=False)
    dump = certs_dump(a)
    (entry,) = dump["certificates"]
    (leaf,) = entry["cert_chain"]
    assert leaf == {"path": "<inline>", "serial_number": material.serial, "subject_alt_names": [{"uri": ID}],
                    "days_until_expiration": "2", "valid_from": leaf["valid_from"],
                    "expiration_time": leaf["expiration_time"]}
    assert leaf["valid_from"].endswith("Z") and leaf["valid_from"] < leaf["expiration_time"]
    assert [root["serial_number"] for root in entry["ca_cert"]] == [format(ca.cert.serial_number, "x")]
    assert dump["workload"]["spiffe_id"] == ID and dump["workload"]["state"] == "valid"


def test_certs_before_any_certificate_is_empty_with_the_state() -> None:
    dump = certs_dump(agent())
    assert dump["certificates"] == [] and dump["workload"]["state"] == "none"


def test_the_admin_port_serves_certs_as_json_and_only_on_get() -> None:
    from proxy.admin import AdminServer

    a = agent()
    server = AdminServer("127.0.0.1", 0, lambda: True, dict, dict, certs=lambda: certs_dump(a))
    status, ctype, body = server.respond("GET", "/certs")
    assert (status, ctype) == (200, "application/json")
    assert msgspec.json.decode(body)["workload"]["spiffe_id"] == ID
    assert server.respond("POST", "/certs")[0] == 405


async def test_a_stored_certificate_no_root_in_the_bundle_signed_is_replaced_with_the_token(tmp_path: Path) -> None:
    """Found by an attack: a --state-dir certificate from another CA (the control plane was made anew, or moved
    to a plug-in CA) was loaded, its renewals refused ("does not chain to a root in the current trust bundle")
    until it expired - up to 24 h of peers refusing this workload - though a good token was at hand."""
    old_mesh = TestCa("old mesh")
    before = agent(state_dir=str(tmp_path))
    task = await running(before, CaStandIn(old_mesh))
    await until(lambda: before.material)
    await stop(task)

    bus = CaStandIn(TestCa("new mesh"))
    signs_with_proof = bus.call

    async def refusing_old_proofs(subject: str, message: Any, reply_type: type, timeout: float = 5.0) -> Any:
        if not message.token:  # as the real ca: the proof's chain must lead to a root in the bundle
            bus.signs.append(message)
            return SignReply(ok=False, error="the proof's certificate does not chain to a root in the current "
                                             "trust bundle")
        return await signs_with_proof(subject, message, reply_type, timeout)

    bus.call = refusing_old_proofs  # type: ignore[method-assign]
    again = agent(state_dir=str(tmp_path), rotation_spread=0.05)
    await again.load_stored()
    assert again.material is not None and again.material.leaf.issuer == old_mesh.subject
    task = await running(again, bus)
    fresh = await until(lambda: again.material if again.material.leaf.issuer == bus.ca.subject else None)
    await stop(task)
    assert fresh.spiffe_id == ID and bus.signs[-1].token == "good"
    assert not [s for s in bus.signs if not s.token]  # not even one renewal asked with the untrusted proof


async def test_a_first_certificate_takes_two_children_both_started_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing stored: load_stored starts two X.509 workers at once (the sidecar reaches the bus meanwhile); the
    first makes the key and reads the first bundle, the second checks the certificate; none is left after."""
    from proxy.identity import x509_client

    started: list[x509_client.Worker] = []
    start = x509_client.Worker.start

    async def counted() -> x509_client.Worker:
        started.append(await start())
        return started[-1]

    monkeypatch.setattr(x509_client.Worker, "start", counted)
    bus, a = CaStandIn(TestCa()), agent()
    await a.load_stored()
    assert len(started) == 2 and a._ahead.workers == started
    task = await running(a, bus)
    material = await until(lambda: a.material)
    await stop(task)
    assert len(started) == 2 and a._ahead.workers == [] and all(w.process.returncode is not None for w in started)
    assert a.bundle.held and [root.subject for root in a.bundle.roots] == [bus.ca.subject]
    assert a.issuer == bus.ca.fingerprint and material.spiffe_id == ID and a.provider.builds == 1


async def test_an_x509_worker_that_fails_is_not_fatal_and_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.identity import x509_client

    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.no_such_worker")
    bus, a = CaStandIn(TestCa()), agent()
    task = await running(a, bus)
    await until(lambda: a.error)
    assert "X.509 worker failed" in a.error and "No module named" in a.error and not task.done()
    assert bus.signs == []  # no CSR, nothing asked of the ca (nor the token spent)
    monkeypatch.setattr(x509_client, "MODULE", "proxy.identity.x509_worker")
    await until(lambda: a.material, timeout=10)
    await stop(task)
    assert a.error == ""


async def test_a_bundle_with_an_unreadable_root_is_refused_and_the_held_one_kept() -> None:
    ca = TestCa()
    bus, a = CaStandIn(ca), agent()
    task = await running(a, bus)
    await until(lambda: a.material and a.bundle.held)
    update = bus.listeners["isthmus.ca.bundle.updates"]
    garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    await update(msgspec.json.encode(TrustBundle(trust_domain="cluster.local", roots_pem=[ca.pem, garbage], version=9)))
    await update(msgspec.json.encode(TrustBundle(trust_domain="elsewhere", roots_pem=[ca.pem], version=9)))
    await stop(task)
    assert a.bundle.version == 1 and a.bundle.roots_pem == [ca.pem] and a.issuer == ca.fingerprint


async def test_a_bundle_the_worker_failed_to_read_is_fetched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that fails is not the bundle's fault: the update is not lost, the bundle in force is fetched again."""
    from proxy.identity import bundle_follow, x509_client

    monkeypatch.setattr(bundle_follow, "BUNDLE_RETRY", 0.1)
    ca = TestCa()
    bus, a = CaStandIn(ca), agent()
    task = await running(a, bus)
    await until(lambda: a.material and a.bundle.held)
    new = TestCa("new root")
    bus.roots, bus.version = [ca.pem, new.pem], 2
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.no_such_worker")
    assert not await a.take_bundle(TrustBundle(trust_domain="cluster.local", roots_pem=bus.roots, version=2))
    assert a.bundle.version == 1 and a._bundle_stale
    monkeypatch.setattr(x509_client, "MODULE", "proxy.identity.x509_worker")
    await until(lambda: a.bundle.version == 2)  # fetched again (CA_BUNDLE), not published again
    await stop(task)
    assert [root.subject for root in a.bundle.roots] == [ca.subject, new.subject] and not a._bundle_stale


async def test_a_bundle_over_the_workers_bounds_is_refused_once_not_fetched_again_forever() -> None:
    """A bundle the X.509 worker can never take (over its bounds, proto/identity_worker.py: here 33 roots, over
    its 32) is refused with that reason, and the trust held is kept; it is not taken for a failing worker, whose
    bundle is fetched again every BUNDLE_RETRY seconds, a child started each time, forever."""
    ca = TestCa()
    a = agent()
    assert await a.take_bundle(TrustBundle(trust_domain="cluster.local", roots_pem=[ca.pem], version=1))
    many = [ca.pem] + [TestCa(f"root {i}").pem for i in range(32)]
    assert not await a.take_bundle(TrustBundle(trust_domain="cluster.local", roots_pem=many, version=2))
    assert a.bundle.version == 1 and a.bundle.roots_pem == [ca.pem] and not a._bundle_stale


async def test_a_bug_in_a_renewal_is_logged_and_tried_again_never_ending_renewals(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception the loop does not expect (a bug of ours; the X.509 worker's uvloop RuntimeError was one) ended
    the identity loop in silence: no renewal again, the certificate left to lapse. It is logged and tried again."""
    bus, a = CaStandIn(TestCa()), agent()
    task = await running(a, bus)
    first = await until(lambda: a.material)
    renew = a._renew
    failures = []

    async def buggy(material: Any) -> None:
        if not failures:
            failures.append(material)
            raise KeyError("a bug")
        await renew(material)

    monkeypatch.setattr(a, "_renew", buggy)
    a.renew_soon()
    await until(lambda: a.error.startswith("internal error: KeyError"))
    assert not task.done()
    await until(lambda: a.material is not first, timeout=20)
    await stop(task)
    assert failures == [first] and a.error == ""
