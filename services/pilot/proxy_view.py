"""What `isthmus proxy-status` needs of pilot's compiled state besides the ACKs: per kind of config the version
of the last push that changed it, and one proxy's snapshot (what pilot would send it), for the diff against
what the proxy holds (`isthmus proxy-status PROXY`, docs/cli.md); one service's compiled cluster and routes
(`isthmus x describe service`)."""

from __future__ import annotations

import msgspec

from proto.xds import ProxyStatus, ProxyStatusReply
from services.pilot.pusher import Pusher


def status_reply(pusher: Pusher, proxies: list[ProxyStatus], snapshot_for: str = "", host: str = "") -> ProxyStatusReply:
    """The reply to xds.status: `proxies` as stored, pilot's versions per kind, and with `snapshot_for` that
    proxy's snapshot (clusters and routes as every proxy gets them, its own security and gateway entries)."""
    ids = {p.proxy_id for p in proxies}
    workload_kinds = {pid: dict(kinds) for pid, kinds in pusher.changed_for.items() if pid in ids}
    snapshot = ""
    if snapshot_for:
        view = {"version": pusher.version,
                "clusters": [pusher.clusters[h] for h in sorted(pusher.clusters)],
                "routes": [pusher.routes[h] for h in sorted(pusher.routes)],
                "security": pusher.security.get(snapshot_for),
                "gateway": pusher.gateways.get(snapshot_for)}
        snapshot = msgspec.json.encode(view).decode()
    service = msgspec.json.encode({"cluster": pusher.clusters.get(host), "route": pusher.routes.get(host)}).decode() \
        if host else ""
    return ProxyStatusReply(ok=True, version=pusher.pushed_version, proxies=proxies, kinds=dict(pusher.changed),
                            workload_kinds=workload_kinds, snapshot=snapshot, service=service)
