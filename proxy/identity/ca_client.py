"""The ca's subjects as the proxy uses them (proto/ca.py): sign a CSR with a bootstrap token or with the
current certificate, mint a token for ourselves, fetch the trust bundle.

    runtime.bus.BusError      the ca did not answer (not running, slow, the bus is away): try again later
    CaRefused                 the ca answered no; `reason` is its words (a bad, expired, revoked or used-up
                              token; an expired proof; a token creation the bus or ca does not allow us)
"""

from __future__ import annotations

import msgspec

from proto import subjects
from proto.ca import SignReply, SignRequest, TrustBundle
from proxy.identity.material import Material
from runtime.bus import Bus, decode

SIGN_TIMEOUT = 5.0  # seconds for the ca to sign (it signs in milliseconds; the rest is slack for a busy host)
BUNDLE_TIMEOUT = 2.0


class CaRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _sign(bus: Bus, request: SignRequest, timeout: float) -> SignReply:
    reply = await bus.call(subjects.CA_SIGN, request, SignReply, timeout)
    if not reply.ok:
        raise CaRefused(reply.error or "the ca refused without a reason")
    return reply


async def sign_with_token(bus: Bus, csr_pem: str, token: str, ttl_seconds: int = 0,
                          timeout: float = SIGN_TIMEOUT) -> SignReply:
    """A first certificate for the key of `csr_pem`, paid for by a bootstrap token. CaRefused, BusError."""
    return await _sign(bus, SignRequest(csr_pem=csr_pem, token=token, ttl_seconds=ttl_seconds), timeout)


async def renew(bus: Bus, current: Material, csr_pem: str, proof_signature: bytes, ttl_seconds: int = 0,
                timeout: float = SIGN_TIMEOUT) -> SignReply:
    """A certificate for the new key of `csr_pem`, proven by the current certificate: its chain, and
    `proof_signature`, its key's signature over the CSR's DER (x509_client.make_key). CaRefused, BusError."""
    return await _sign(bus, SignRequest(csr_pem=csr_pem, proof_chain_pem=list(current.chain_pem),
                                        proof_signature=proof_signature, ttl_seconds=ttl_seconds), timeout)


async def fetch_bundle(bus: Bus, timeout: float = BUNDLE_TIMEOUT) -> TrustBundle:
    """The bundle in force. CaRefused when the answer is not a bundle (the ca's error reply), BusError."""
    data = await bus.request(subjects.CA_BUNDLE, b"{}", timeout)
    try:
        return decode(data, TrustBundle)
    except msgspec.DecodeError as exc:
        raise CaRefused(f"the ca's bundle reply cannot be read: {str(exc)[:200]}") from None
