"""The mesh CA (Istio's Citadel) on the bus: signs workload certificates, serves and publishes the trust
bundle, mints bootstrap tokens, rotates the root. Replicas share queue group `ca`.

    isthmus.ca.sign            SignRequest -> SignReply            proxies
    isthmus.ca.bundle          any -> TrustBundle                  proxies, the operator
    isthmus.ca.bundle.updates  TrustBundle, published on each change of the roots
    isthmus.ca.token.create / .list / .revoke, isthmus.ca.rotate   the operator only (docs/bus.md)
    isthmus.ca.secret.*        gateways' TLS secrets (secret_service.py; docs/secrets.md)

Keys: material.py (disk), sealed.py (etcd, with the KEK only); who signs: authority.py; tokens: tokens.py; the rules
of issuing and of a renewal proof: signer.py; of the bundle and retirement: bundle.py.

Every signing decision writes one audit line (event "ca audit"): who asked (token id or the proof's
SPIFFE ID), what the CSR claimed (its URI SANs), what was granted or why it was refused. A token entitles
exactly its namespace and service account: a CSR asking for another identity still gets the token's
(Istio's CA likewise signs only the caller's own identity), and the audit line shows both.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any, ClassVar

from cryptography.hazmat.primitives import serialization

from proto.ca import (
    CaState, RotateRootReply, SignReply, SignRequest, TokenCreateReply, TokenCreateRequest, TokenListReply,
    TokenRevokeReply, TokenRevokeRequest,
)
from proto.subjects import (
    CA_BUNDLE, CA_BUNDLE_UPDATES, CA_ROTATE, CA_SIGN, CA_TOKEN_CREATE, CA_TOKEN_LIST, CA_TOKEN_REVOKE, QUEUE_CA,
)
from runtime.bus import decode, deadline_passed, encode
from runtime.kek import load_kek
from runtime.metrics import IstioSum
from runtime.service import ServiceProcess
from runtime.store import StoreError
from services.ca import bundle, signer, tokens
from services.ca.authority import AuthorityError, Keeper
from services.ca.config import CaConfig
from services.ca.material import Material
from services.ca.secret_service import SecretService
from services.ca.secret_store import Keyring, SecretStore

HOUSEKEEPING = 30.0  # seconds between sweeps of expired tokens and checks for a root to retire
CONCURRENCY = 16  # requests handled at once per replica (each waits on etcd)


class CaService(ServiceProcess):
    name: ClassVar[str] = "ca"
    flags: ClassVar[dict[str, tuple[str, str]]] = {
        "--ca-kek-file": ("ISTHMUS_CA_KEK_FILE", "the operator's KEK (64 hex digits, mode 0600): keep the signing "
                                                 "key sealed in etcd, or load it from there"),
        "--ca-previous-kek-file": ("ISTHMUS_CA_PREVIOUS_KEK_FILE", "rotating the KEK: the old one; keys in etcd "
                                                                   "it sealed are sealed again with the new one"),
    }

    async def start(self) -> None:
        # istiod's CA metrics (security/pkg/server/ca/monitoring.go), named as istiod exposes them
        self.csr_count = IstioSum("citadel_server_csr_count", "The number of CSRs received by the CA.",
                                  registry=self.metrics)
        self.authn_failures = IstioSum("citadel_server_authentication_failure_count", "CSRs refused: the proof of "
                                       "identity (token or renewal proof) was missing or not valid.", registry=self.metrics)
        self.csr_parsing_errors = IstioSum("citadel_server_csr_parsing_err_count", "CSRs that could not be read.",
                                           registry=self.metrics)
        self.sign_errors = IstioSum("citadel_server_csr_sign_err_count", "CSRs not signed for an error of the CA "
                                    "(its store or keys unavailable).", registry=self.metrics)
        self.issued = IstioSum("citadel_server_success_cert_issuance_count", "Certificates issued.",
                               registry=self.metrics)
        try:
            self.config = CaConfig.from_env()
            self.trust_domain = self.settings.trust_domain
            kek = load_kek(self.config.kek_file) if self.config.kek_file else None
            previous = load_kek(self.config.previous_kek_file) if self.config.previous_kek_file else None
            self.keeper = Keeper(self.store, Material(self.settings.state_dir), self.config, self.trust_domain,
                                 self.log, kek=kek, previous_kek=previous)
            await self.keeper.start()
            keyring = Keyring.for_ca(self.settings.state_dir, kek, previous)
        except (ValueError, AuthorityError, OSError) as exc:  # bad settings or files: one line, not a traceback
            self.log.error("the ca cannot start", error=str(exc)[:500])
            raise SystemExit(1) from None
        self.tokens = tokens.Tokens(self.store, self.config.max_tokens)
        for subject, handler in ((CA_SIGN, self._sign), (CA_BUNDLE, self._bundle), (CA_ROTATE, self._rotate),
                                 (CA_TOKEN_CREATE, self._token_create), (CA_TOKEN_LIST, self._token_list),
                                 (CA_TOKEN_REVOKE, self._token_revoke)):
            await self.bus.serve(subject, handler, queue=QUEUE_CA, concurrency=CONCURRENCY)
        self.secrets = SecretService(self.bus, SecretStore(self.store, keyring, self.config.max_secrets), self.log,
                                     self.metrics)
        await self.secrets.start()
        await self._publish(self.keeper.state)
        self.spawn(self.keeper.follow(self._followed))
        self.spawn(self._housekeeping())

    # the bundle

    async def _publish(self, state: CaState) -> None:
        await self.bus.publish(CA_BUNDLE_UPDATES, encode(bundle.bundle_of(state)))

    async def _followed(self, state: CaState) -> None:
        self.log.info("trust bundle changed by another replica", version=state.version, roots=len(state.roots))

    async def _bundle(self, _: bytes) -> bytes:
        return encode(bundle.bundle_of(self.keeper.state))

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            try:
                now = time.time()
                state = await self.keeper.retire_due(now)
                if state is not None:
                    self.log.info("retired a rotated-out root: every certificate it signed has expired",
                                  version=state.version, roots=len(state.roots))
                    await self._publish(state)
                await self.tokens.records(now)  # sweeps expired records
            except (StoreError, AuthorityError) as exc:
                self.log.warning("housekeeping failed; retrying later", error=str(exc)[:300])

    async def _rotate(self, _: bytes) -> bytes:
        if deadline_passed():
            return encode(RotateRootReply(ok=False, error="the request's deadline passed; nothing was rotated"))
        now = time.time()
        try:
            state, old = await self.keeper.rotate(now)
        except bundle.RotateRefused as exc:
            self.log.warning("ca audit", action="rotate-root", outcome="refused", reason=str(exc))
            return encode(RotateRootReply(ok=False, error=str(exc)))
        await self._publish(state)
        retires = bundle.retires_at(old, now)
        self.log.info("ca audit", action="rotate-root", outcome="rotated", new_root=state.signer,
                      old_root=old.fingerprint, old_retires_at=retires, version=state.version)
        return encode(RotateRootReply(ok=True, bundle=bundle.bundle_of(state), old_retires_at=retires))

    # signing

    async def _sign(self, data: bytes) -> bytes:
        self.csr_count.inc()
        request = decode(data, SignRequest)  # malformed: runtime/bus_core.py logs it and answers the reason
        who, claimed = "", ""
        parsed = False
        try:
            try:
                csr = signer.load_csr(request.csr_pem)
            except signer.SignRefused:
                self.csr_parsing_errors.inc()
                raise
            parsed = True
            claimed = ",".join(_claimed(csr))
            if request.token and (request.proof_chain_pem or request.proof_signature):
                who = f"token:{tokens.token_id_of(request.token)}"
                raise signer.SignRefused("give one proof: a token or a renewal proof (proof_chain_pem and "
                                         "proof_signature), not both")
            if deadline_passed():
                raise signer.SignRefused("the request's deadline passed before the ca reached it; ask again")
            now = time.time()
            if request.token:
                who = f"token:{tokens.token_id_of(request.token) or '<malformed>'}"
                record = await self.tokens.redeem(request.token, now)
                identity = signer.spiffe_id(self.trust_domain, record.namespace, record.service_account)
            elif request.proof_chain_pem or request.proof_signature:
                who = f"proof:{_proof_claim(request.proof_chain_pem)} (unverified)"
                identity = signer.verify_proof(
                    request.proof_chain_pem, request.proof_signature,
                    csr.public_bytes(serialization.Encoding.DER), self.keeper.roots, self.trust_domain,
                    datetime.datetime.fromtimestamp(now, datetime.timezone.utc))
                who = identity
            else:
                raise signer.SignRefused("no proof of identity: give a bootstrap token (isthmus token create) or, "
                                         "to renew, the current certificate chain and a signature over the CSR")
            reply = await self._issue(csr, identity, request.ttl_seconds, who, claimed, now)
            self.issued.inc()
            return reply
        except (signer.SignRefused, tokens.TokenRefused) as exc:
            if parsed:  # refused for its proof of identity (or a deadline the ca could not meet)
                self.authn_failures.inc()
            self.log.warning("ca audit", action="sign", outcome="refused", who=who or "<unknown>",
                             claimed=claimed, reason=str(exc))
            return encode(SignReply(ok=False, error=str(exc)))
        except (StoreError, AuthorityError) as exc:
            self.sign_errors.inc()
            self.log.error("ca audit", action="sign", outcome="failed", who=who or "<unknown>", claimed=claimed,
                           reason=str(exc)[:300])
            return encode(SignReply(ok=False, error="the ca cannot reach its store right now; try again"))

    async def _issue(self, csr: Any, identity: str, asked_ttl: int, who: str, claimed: str, now: float) -> bytes:
        ttl = signer.clamp_ttl(asked_ttl, self.config.workload_cert_ttl, self.config.max_workload_cert_ttl)
        authority = self.keeper.authority
        when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        cert = signer.issue(authority, csr, identity, ttl, when)
        not_after = cert.not_valid_after_utc.timestamp()
        await self.keeper.record(authority, not_after, ttl)  # durable before the certificate exists for anyone
        serial = format(cert.serial_number, "x")
        self.log.info("ca audit", action="sign", outcome="signed", who=who, claimed=claimed, identity=identity,
                      serial=serial, not_after=not_after, ttl=ttl)
        state = self.keeper.state
        return encode(SignReply(
            ok=True, cert_chain_pem=[signer.pem(c) for c in [cert, *authority.chain]],
            roots_pem=[r.cert_pem for r in state.roots], spiffe_id=identity, serial=serial,
            not_before=cert.not_valid_before_utc.timestamp(), not_after=not_after))

    # tokens (operator)

    async def _token_create(self, data: bytes) -> bytes:
        request = decode(data, TokenCreateRequest)
        try:
            signer.check_identity(request.namespace, request.service_account)
            if deadline_passed():
                raise tokens.TokenRefused("the request's deadline passed; no token was made")
            text, record = await self.tokens.create(request.namespace, request.service_account,
                                                    request.ttl_seconds, request.uses, time.time())
        except (signer.SignRefused, tokens.TokenRefused) as exc:
            return encode(TokenCreateReply(ok=False, error=str(exc)))
        self.log.info("ca audit", action="token-create", token=record.id, namespace=record.namespace,
                      service_account=record.service_account, expires=record.expires, uses=record.max_uses)
        return encode(TokenCreateReply(ok=True, id=record.id, token=text, expires=record.expires))

    async def _token_list(self, _: bytes) -> bytes:
        records = await self.tokens.records(time.time())
        records.sort(key=lambda r: (r.created, r.id))
        return encode(TokenListReply(tokens=[tokens.info(r) for r in records]))

    async def _token_revoke(self, data: bytes) -> bytes:
        request = decode(data, TokenRevokeRequest)
        try:
            record = await self.tokens.revoke(request.id)
        except tokens.TokenRefused as exc:
            return encode(TokenRevokeReply(ok=False, error=str(exc)))
        self.log.info("ca audit", action="token-revoke", token=record.id, namespace=record.namespace,
                      service_account=record.service_account)
        return encode(TokenRevokeReply(ok=True))


def _claimed(csr: Any) -> list[str]:
    from cryptography import x509

    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(v)[:300] for v in san.get_values_for_type(x509.UniformResourceIdentifier)][:4]
    except Exception:  # no SAN, or one cryptography cannot parse: nothing claimed
        return []


def _proof_claim(chain_pem: list[str]) -> str:
    """The identity a renewal proof's leaf names, before it is checked: for the audit line of a refusal."""
    from cryptography import x509

    try:
        return ",".join(signer.uri_sans(x509.load_pem_x509_certificate(chain_pem[0].encode())))[:300] or "<none>"
    except Exception:  # unreadable: the refusal says why
        return "<unreadable>"
