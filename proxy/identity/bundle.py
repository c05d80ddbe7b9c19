"""The trust bundle this proxy holds: every root it trusts, by version (proto/ca.py TrustBundle).

A bundle arrives as the reply to CA_BUNDLE at start and on CA_BUNDLE_UPDATES after every change; updates can
cross on the bus, so one whose version is not above the held one is ignored (msgspec already bounds
sizes; an unreadable root refuses the whole bundle, so a bad publish cannot empty the trust we hold).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from proto.ca import TrustBundle
from proxy.identity.material import Material, MaterialError, load_chain


class BundleError(ValueError):
    pass


class Bundle:
    def __init__(self, trust_domain: str) -> None:
        self.trust_domain = trust_domain
        self.version = -1  # nothing held yet
        self.roots_pem: list[str] = []
        self.roots: list[x509.Certificate] = []

    @property
    def held(self) -> bool:
        return bool(self.roots)

    def accept(self, bundle: TrustBundle) -> bool:
        """True when `bundle` replaced what was held; False when it is not newer. BundleError when it is for
        another trust domain, has no root, or a root cannot be read."""
        if bundle.version <= self.version:
            return False
        if bundle.trust_domain != self.trust_domain:
            raise BundleError(f"the bundle is for trust domain {bundle.trust_domain!r}, this proxy is in "
                              f"{self.trust_domain!r}")
        try:
            roots = load_chain(bundle.roots_pem)
        except MaterialError as exc:
            raise BundleError(f"bundle version {bundle.version}: {exc}") from None
        self.version, self.roots_pem, self.roots = bundle.version, list(bundle.roots_pem), roots
        return True

    def root_of(self, material: Material) -> x509.Certificate | None:
        """The held root that issued the top of `material`'s chain, or None."""
        top = material.chain[-1]
        for root in self.roots:
            if root.subject != top.issuer:
                continue
            try:
                top.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return root
        return None

    def needs_rotation(self, material: Material) -> bool:
        """True when `material` was not signed by the newest root held (by notBefore): the bundle gained a root
        (a rotation under way) or lost ours (retired), and the workload should move to the new root. Called
        once per bundle change, so a ca that still signs with the old root costs one renewal, not a loop."""
        if not self.roots:
            return False
        ours = self.root_of(material)
        newest = max(self.roots, key=lambda root: root.not_valid_before_utc)
        return ours is None or ours != newest
