"""The trust bundle this proxy holds: every root it trusts, by version (proto/ca.py TrustBundle), as PEM texts and
the fields the X.509 worker read of them (the agent has them read before it holds a bundle).

A bundle arrives as the reply to CA_BUNDLE at start and on CA_BUNDLE_UPDATES after every change; updates can
cross on the bus, so one whose version is not above the held one is ignored (msgspec already bounds
sizes; an unreadable root refuses the whole bundle, so a bad publish cannot empty the trust we hold).
Roots are named by fingerprint (SHA-256 of the DER, hex).
"""

from __future__ import annotations

from proto.ca import TrustBundle
from proto.identity_worker import CertFields


class BundleError(ValueError):
    pass


class Bundle:
    def __init__(self, trust_domain: str) -> None:
        self.trust_domain = trust_domain
        self.version = -1  # nothing held yet
        self.roots_pem: list[str] = []
        self.roots: list[CertFields] = []

    @property
    def held(self) -> bool:
        return bool(self.roots)

    def wanted(self, bundle: TrustBundle) -> bool:
        """True when `bundle` is newer than what is held (then read its roots and hold() it); False when not.
        BundleError when it is for another trust domain."""
        if bundle.version <= self.version:
            return False
        if bundle.trust_domain != self.trust_domain:
            raise BundleError(f"the bundle is for trust domain {bundle.trust_domain!r}, this proxy is in "
                              f"{self.trust_domain!r}")
        return True

    def hold(self, bundle: TrustBundle, roots: list[CertFields]) -> None:
        """Hold `bundle`, whose roots the worker read as `roots` (BundleError when it has none)."""
        if not roots:
            raise BundleError(f"bundle version {bundle.version}: no certificate")
        self.version, self.roots_pem, self.roots = bundle.version, list(bundle.roots_pem), list(roots)

    def holds(self, fingerprint: str) -> bool:
        """True when the root of that fingerprint is in the bundle ("" is never held)."""
        return any(root.fingerprint == fingerprint for root in self.roots) if fingerprint else False

    def needs_rotation(self, issuer: str) -> bool:
        """True when the root that issued our certificate (`issuer`, a fingerprint; "" none of these) is not the
        newest root held (by notBefore): the bundle gained a root (a rotation under way) or lost ours (retired),
        and the workload should move to the new root. Called once per bundle change, so a ca that still signs
        with the old root costs one renewal, not a loop."""
        if not self.roots:
            return False
        newest = max(self.roots, key=lambda root: root.not_before)
        return not self.holds(issuer) or issuer != newest.fingerprint
