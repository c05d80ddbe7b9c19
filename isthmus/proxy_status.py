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
