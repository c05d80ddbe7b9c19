"""This sidecar's own WorkloadSecurity entry, kept from pushes (ConfigState holds it; the inbound data path
reads it: `mode_for(app_port)`).

    own_security(push, workload_id, current, owner) -> WorkloadSecurity | None    ValueError for an unknown mode
    not_own(entry, owner) -> str                                            why an entry is another registration's
    security_dump(security) -> dict                                         for /config_dump

Pilot pushes one entry per registered workload (proto.xds.WorkloadSecurity), the default one when no policy
applies; a sidecar keeps only its own. None means pilot has sent none yet: it has not compiled this workload's
registration (it is on its way, or the registry is unreachable), so its policies are unknown and the inbound
listener admits nothing (proxy/inbound/local_app.py). Once held, an entry is only ever replaced by a newer
one: a removal or a snapshot without it (the workload's lease lapsed while the registry was away, pilot
restarted before it saw the registration) means pilot no longer knows the workload, not that no policy
applies, so the last entry stays in force until the registration is back and pilot sends the next.
An entry compiled from another registration under the same id (the registry keys a workload by
namespace/service/id, so a workload of another namespace or service account may register this id too, and
pilot keys workloads by id) is not this workload's: its policies are another's, and taking it would drop
those that select this one. So is an entry compiled from a previous run of this sidecar whose registration
outlived it (it crashed, or could not deregister while no registry answered: pilot then holds its lease) with
other labels: each run registers its own `instance`, which pilot copies into the entry. Either is ignored as
an absent entry is (`owner`: the registration this sidecar makes).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from proto.gateway_xds import GatewayListeners
from proto.telemetry import MODE_CLIENT, MODE_CLIENT_AND_SERVER, MODE_SERVER
from proto.xds import INBOUND_MTLS_MODES, MTLS_PERMISSIVE, Push, WorkloadSecurity
from runtime.log import get_logger

log = get_logger("proxy.security")

ACCESS_LOG_PROVIDERS = ("envoy", "isthmus")  # Telemetry accessLogging providers (docs/access-logs.md)
TELEMETRY_MODES = (MODE_CLIENT_AND_SERVER, MODE_CLIENT, MODE_SERVER)
# /config_dump's `pending` before this workload's entry arrives: nothing reads the defaults beside it as in force
PENDING = "no security entry from pilot for this workload yet (its registration not seen): inbound admits nothing"
PROBE_KINDS = ("http", "tcp", "exec")  # a WorkloadGroup's probe methods (proxy/control/probe.py)


class Owner(NamedTuple):
    """The registration this sidecar makes (proto.registry.Workload): its entry must be compiled from it."""

    namespace: str
    service: str
    service_account: str
    instance: str = ""  # Workload.instance, drawn at start


def not_own(entry: WorkloadSecurity | GatewayListeners, owner: Owner) -> str:
    """Why `entry` (a gateway's listeners too) was not compiled from `owner`'s registration ("" when it was, or
    when pilot or the registry is too old to say: no service, no instance)."""
    if entry.service and (entry.namespace, entry.service, entry.service_account) != owner[:3]:
        return (f"compiled from a workload of {entry.namespace}/{entry.service} (service account "
                f"{entry.service_account}) registered under this id")
    if entry.instance and owner.instance and entry.instance != owner.instance:
        return "compiled from an earlier run's registration, which outlived it (pilot has not seen this run's yet)"
    return ""


def own_security(push: Push, workload_id: str, current: WorkloadSecurity | None,
                 owner: Owner | None = None) -> WorkloadSecurity | None:
    """The entry in force after `push`: the push's entry for `workload_id` compiled from `owner`'s registration
    (None: any), else `current` (module docstring: a removal never drops it). ValueError for an entry this
    sidecar cannot enforce."""
    own = next((s for s in push.security if s.workload == workload_id), None)
    why = not_own(own, owner) if own is not None and owner is not None else ""
    if why:
        log.warning("pilot's security entry for this workload id is not this sidecar's: not taken",
                    workload=workload_id, reason=why, version=own.version)  # type: ignore[union-attr]
        return current
    if own is not None:
        for mode in (own.mtls_mode, *own.port_mtls.values()):
            if mode not in INBOUND_MTLS_MODES:
                raise ValueError(f"security of {own.workload}: mTLS mode {mode!r} is not one of "
                                 f"{', '.join(INBOUND_MTLS_MODES)}")
        for entry in own.telemetry.access_logs if own.telemetry is not None else ():
            if entry.provider not in ACCESS_LOG_PROVIDERS or entry.mode not in TELEMETRY_MODES:
                raise ValueError(f"telemetry of {own.workload}: access log provider {entry.provider!r} / mode "
                                 f"{entry.mode!r} is not one this sidecar has ({', '.join(ACCESS_LOG_PROVIDERS)} / "
                                 f"{', '.join(TELEMETRY_MODES)})")
        if own.probe is not None and own.probe.kind not in PROBE_KINDS:
            raise ValueError(f"probe of {own.workload}: kind {own.probe.kind!r} is not one this sidecar runs "
                             f"({', '.join(PROBE_KINDS)})")
        return own
    if current is not None and (push.full or workload_id in push.removed_security):
        log.warning("pilot no longer has this workload's security entry: the last one stays in force until the "
                    "registration is back", workload=workload_id, version=current.version)
    return current


def security_dump(security: WorkloadSecurity | None) -> dict[str, Any]:
    """The sidecar's inbound policy as /config_dump shows it, defaults spelled out: authorization policies by
    name, action and rule count; JWT providers by source and issuer, whether keys are present (never the keys
    themselves, nor the rules' values) and why a jwksUri fetch failed."""
    if security is None:  # none received: the inbound side admits nothing (`pending` says so; the rest as before)
        return {"mtls_mode": MTLS_PERMISSIVE, "port_mtls": {}, "peer_authentications": [], "authorization": [],
                "jwt": [], "telemetry": [], "version": 0, "pending": PENDING}
    # a WorkloadGroup's probe only when one is pushed (the key is absent otherwise, so dumps of sidecars that
    # predate it compare equal: `isthmus proxy-status PROXY`)
    probe = ({"probe": {"source": security.probe.source, "kind": security.probe.kind}}
             if security.probe is not None else {})
    return {"mtls_mode": security.mtls_mode, "port_mtls": dict(security.port_mtls),
            "peer_authentications": list(security.peer_authentications),
            "authorization": [{"name": p.name, "action": p.action, "rules": len(p.rules)}
                              for p in security.authorization],
            "jwt": [{"source": j.source, "issuer": j.rule.issuer, "jwks_uri": j.rule.jwks_uri,
                     "keys": j.rule.jwks is not None, "jwks_error": j.jwks_error} for j in security.jwt],
            "telemetry": list(security.telemetry.sources) if security.telemetry is not None else [],
            **probe, "version": security.version}
