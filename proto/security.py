"""Istio security.istio.io resources: PeerAuthentication (v1 and v1beta1).

Reference: https://istio.io/latest/docs/reference/config/security/peer_authentication/
Fields not declared here are rejected at decode time with their path (IstioStruct forbids unknown
fields). Modes are plain strings checked by the validator (services/pilot/validate/peer_authentication.py),
so its message can list the values Istio knows.
"""

from __future__ import annotations

from typing import Any

from proto.base import IstioStruct

# PeerAuthentication.MutualTLS.Mode, as Istio spells them. UNSET inherits the parent scope's mode.
UNSET = "UNSET"
DISABLE = "DISABLE"
PERMISSIVE = "PERMISSIVE"
STRICT = "STRICT"
MTLS_MODES = (UNSET, DISABLE, PERMISSIVE, STRICT)


class PeerMutualTLS(IstioStruct):
    """PeerAuthentication.MutualTLS; an unset mode is UNSET."""

    mode: str | None = None


class PeerSelector(IstioStruct):
    """istio.type.v1beta1.WorkloadSelector: the workloads of the policy's namespace whose labels include these."""

    match_labels: dict[str, str] | None = None


class PeerAuthenticationSpec(IstioStruct):
    """Istio's PeerAuthentication has no targetRef: it is declared here only so the validator can refuse it
    with a reason (a selector picks workloads) instead of calling it misspelled."""

    selector: PeerSelector | None = None
    mtls: PeerMutualTLS | None = None
    # the workload port (the port the app listens on, not the service port) -> its mode, as Istio
    port_level_mtls: dict[int, PeerMutualTLS] | None = None
    target_ref: Any = None  # refused by the validator
    target_refs: Any = None  # refused by the validator
