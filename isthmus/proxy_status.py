"""`isthmus proxy-status`: each proxy's sync state as pilot recorded it from ACKs and NACKs.

Istio's `istioctl proxy-status` shape: one row per proxy, SYNCED when it applied the config version
pilot pushes now, STALE when it applied an older one, REJECTED when its last report was a NACK
(the proxy's reason follows the table, one line per rejecting proxy).
"""

from __future__ import annotations

import time

from proto.xds import ProxyStatus, ProxyStatusReply

HEADERS = ("NAME", "NAMESPACE", "SERVICE", "STATUS", "VERSION", "LAST REPORT")


def sync_state(status: ProxyStatus, current: int) -> str:
    if not status.ok:
        return "REJECTED"
    return "SYNCED" if status.version >= current else "STALE"


def status_rows(reply: ProxyStatusReply, now: float | None = None) -> list[list[str]]:
    now = time.time() if now is None else now
    return [[s.proxy_id, s.namespace or "default", s.service or "-", sync_state(s, reply.version), str(s.version),
             f"{max(0, int(now - s.updated_at))}s ago"] for s in reply.proxies]


def rejections(reply: ProxyStatusReply) -> list[str]:
    """`<proxy> rejected version N: <error>` for every proxy whose last report was a NACK; the error is
    cut at MAX_ERROR characters, as pilot stores it (a reply from another pilot may not have cut it)."""
    return [f"{s.proxy_id[:MAX_NAME]} rejected version {s.version}: {_cut(s.error) or 'no error text'}"
            for s in reply.proxies if not s.ok]


MAX_ERROR = 4096
MAX_NAME = 253


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + "..."


# Per kind of config (`isthmus proxy-status`'s wide table and -o yaml|json), as Istio's CDS/LDS/EDS/RDS columns:
# SYNCED (the proxy ACKed a version at least as new as pilot's last change of that kind), STALE (older),
# NOT SENT (pilot sends this proxy nothing of that kind: a sidecar gets no gateway listeners, a proxy whose
# registration pilot has not seen gets no security entry), REJECTED (the proxy NACKed the push that last changed it).
KINDS = ("clusters", "routes", "security", "gateways")
WIDE_HEADERS = ("NAME", "NAMESPACE", "SERVICE", "STATUS", "CLUSTERS", "ROUTES", "SECURITY", "GATEWAYS", "VERSION",
                "PILOT", "PROXY VERSION", "LAST REPORT")


def pilot_versions(reply: ProxyStatusReply, status: ProxyStatus) -> dict[str, int]:
    """Pilot's version per kind for this proxy (0: nothing of that kind is sent to it)."""
    own = reply.workload_kinds.get(status.proxy_id, {})
    return {"clusters": reply.kinds.get("clusters", 0), "routes": reply.kinds.get("routes", 0),
            "security": own.get("security", 0), "gateways": own.get("gateways", 0)}


def kind_state(status: ProxyStatus, pilot_version: int) -> str:
    if pilot_version == 0:
        return "NOT SENT"
    if not status.ok and pilot_version >= status.version:
        return "REJECTED"
    return "SYNCED" if status.version >= pilot_version else "STALE"


def kind_states(reply: ProxyStatusReply, status: ProxyStatus) -> dict[str, str]:
    return {kind: kind_state(status, version) for kind, version in pilot_versions(reply, status).items()}


def wide_rows(reply: ProxyStatusReply, now: float | None = None) -> list[list[str]]:
    now = time.time() if now is None else now
    rows = []
    for s in reply.proxies:
        states = kind_states(reply, s)
        rows.append([s.proxy_id, s.namespace or "default", s.service or "-", sync_state(s, reply.version),
                     *(states[k] for k in KINDS), str(s.version), str(reply.version), s.proxy_version or "-",
                     f"{max(0, int(now - s.updated_at))}s ago"])
    return rows


def as_records(reply: ProxyStatusReply, now: float | None = None) -> list[dict[str, object]]:
    """-o yaml|json: one record per proxy."""
    now = time.time() if now is None else now
    return [{"proxy": s.proxy_id, "namespace": s.namespace or "default", "service": s.service,
             "type": "gateway" if s.gateway else "sidecar", "status": sync_state(s, reply.version),
             "kinds": {k: {"state": state, "pilot_version": pilot_versions(reply, s)[k]}
                       for k, state in kind_states(reply, s).items()},
             "proxy_config_version": s.version, "pilot_version": reply.version, "proxy_version": s.proxy_version,
             "error": _cut(s.error), "last_report_s": round(max(0.0, now - s.updated_at), 1)} for s in reply.proxies]
