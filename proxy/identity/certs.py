"""The admin port's /certs, in Envoy's shape (envoy/admin/v3/certs.proto: Certificates):

    {"certificates": [{"ca_cert": [CertificateDetails...],      # every root of the trust bundle
                       "cert_chain": [CertificateDetails...]}],  # the workload chain, leaf first
     "workload": {...}}                                          # ours: the identity's state

    CertificateDetails: {"path", "serial_number" (hex), "subject_alt_names": [{"uri": ...}],
                         "days_until_expiration" (a string, as proto3 JSON writes uint64),
                         "valid_from", "expiration_time" (RFC 3339, UTC)}

`path` is the file in --state-dir the certificate is kept in, or "<inline>" (Envoy's word for material that
came over the wire). An expired certificate is still listed (days_until_expiration "0") and
`workload.state` says "expired", so an operator sees why peers refuse the workload. Rendered from the fields the
X.509 worker parsed when the certificates arrived (no `cryptography` in the sidecar).
"""

from __future__ import annotations

import datetime
from typing import Any

from proto.identity_worker import CertFields
from proxy.identity.agent import IdentityAgent
from proxy.identity.spiffe import PREFIX
from proxy.identity.state_dir import CHAIN_FILE, ROOTS_FILE

DAY = 86400.0


def _rfc3339(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def details(cert: CertFields, path: str, now: float) -> dict[str, Any]:
    return {"path": path, "serial_number": cert.serial,
            "subject_alt_names": [{"uri": uri} for uri in cert.uris if uri.startswith(PREFIX)],
            "days_until_expiration": str(max(0, int((cert.not_after - now) // DAY))),
            "valid_from": _rfc3339(cert.not_before), "expiration_time": _rfc3339(cert.not_after)}


def certs_dump(agent: IdentityAgent) -> dict[str, Any]:
    now = agent.clock()
    material = agent.material
    state = agent.state
    chain_path = str(state.path / CHAIN_FILE) if state is not None else "<inline>"
    roots_path = str(state.path / ROOTS_FILE) if state is not None else "<inline>"
    roots = agent.bundle.roots or agent.roots_unversioned_read  # before any bundle: the roots a SignReply named
    certificates = []
    if material is not None or roots:
        certificates.append({"ca_cert": [details(root, roots_path, now) for root in roots],
                             "cert_chain": [details(cert, chain_path, now) for cert in material.chain]
                             if material is not None else []})
    workload: dict[str, Any] = {
        "spiffe_id": agent.identity,
        "state": "none" if material is None else "expired" if material.expired(now) else "valid",
        "bundle_version": agent.bundle.version, "renewals": agent.renewals, "error": agent.error}
    if material is not None:
        workload.update(serial_number=material.serial, not_before=material.not_before, not_after=material.not_after,
                        renew_at=round(agent.due, 3))
    return {"certificates": certificates, "workload": workload}
