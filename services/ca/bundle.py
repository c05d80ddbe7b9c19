"""The trust bundle's rules, pure (no I/O, time passed in): what a rotation and a signing change in CaState,
and when a rotated-out root retires.

    bundle_of(state) -> TrustBundle           what proxies trust: every root in force, oldest first
    rotated(state, new_root_pem, fp, now)     the new root signs from now on; the old ones stay trusted
    signed(state, root_fp, not_after, slack)  the state with root_fp's latest_not_after raised, or None
    retire(state, now) -> CaState | None      without every rotated-out root whose certificates all expired

A rotated-out root stays in the bundle while any certificate it signed may still be in use: until its
latest_not_after (the latest expiry it ever signed, recorded durably before the certificate is handed
out). Istio leaves this to the operator (plug-in CA rotation: istio.io/latest/docs/tasks/security/
cert-management/plugin-ca-cert/); here it is automatic because the ca knows what it signed.
"""

from __future__ import annotations

from proto.ca import CaRoot, CaState, TrustBundle

MAX_ROOTS = 3  # roots in force at once: the signing root and at most two rotated-out ones


class RotateRefused(Exception):
    pass


def bundle_of(state: CaState) -> TrustBundle:
    return TrustBundle(trust_domain=state.trust_domain, roots_pem=[r.cert_pem for r in state.roots],
                       version=state.version)


def signing_root(state: CaState) -> CaRoot:
    """The root the signer chains to: the one not retiring (the newest)."""
    for root in reversed(state.roots):
        if not root.retiring_since:
            return root
    return state.roots[-1]


def rotated(state: CaState, root_pem: str, fingerprint: str, now: float) -> CaState:
    """A new root signs from now on; RotateRefused with a plug-in CA or when MAX_ROOTS are already in force."""
    if state.plugin:
        raise RotateRefused("the ca signs with a plug-in CA (--plugin-ca-cert): rotate your own root and restart "
                            "`isthmus up` with the new plug-in files")
    if len(state.roots) >= MAX_ROOTS:
        soonest = min(retires_at(r, now) for r in state.roots if r.retiring_since)  # one that signed nothing: now
        raise RotateRefused(f"{len(state.roots)} roots are already trusted; the oldest retires when the last "
                            f"certificate it signed expires (Unix time {soonest:.0f}): rotate again after that")
    roots = [r if r.retiring_since else _replace(r, retiring_since=now) for r in state.roots]
    roots.append(CaRoot(fingerprint=fingerprint, cert_pem=root_pem))
    return CaState(trust_domain=state.trust_domain, roots=roots, signer=fingerprint, version=state.version + 1,
                   plugin=False)


def signed(state: CaState, root_fingerprint: str, not_after: float, slack: float) -> CaState | None:
    """The state recording that root_fingerprint signed a certificate valid until not_after; None when the
    record already covers it. `slack` (seconds) is added to what is recorded so that a busy ca writes
    etcd at most about once per `slack`, at the price of retiring a root that much later."""
    roots = list(state.roots)
    for i, root in enumerate(roots):
        if root.fingerprint == root_fingerprint:
            if root.latest_not_after >= not_after:
                return None
            roots[i] = _replace(root, latest_not_after=not_after + slack)
            return CaState(trust_domain=state.trust_domain, roots=roots, signer=state.signer,
                           version=state.version, plugin=state.plugin)  # not a change of the bundle
    return None  # the root retired meanwhile: a certificate it signed could not exist


def retire(state: CaState, now: float) -> CaState | None:
    """The state without the rotated-out roots whose every certificate has expired; None if none is due."""
    keep = [r for r in state.roots if not r.retiring_since or now < r.latest_not_after]
    if len(keep) == len(state.roots) or not keep:
        return None
    return CaState(trust_domain=state.trust_domain, roots=keep, signer=state.signer, version=state.version + 1,
                   plugin=state.plugin)


def retires_at(root: CaRoot, now: float) -> float:
    """When a rotated-out root leaves the bundle (at the next check after this time)."""
    return max(root.latest_not_after, now) if root.latest_not_after else now


def _replace(root: CaRoot, **changes: float) -> CaRoot:
    fields = {f: getattr(root, f) for f in root.__struct_fields__}
    fields.update(changes)
    return CaRoot(**fields)
