"""`isthmus proxy-status PROXY`: pilot's compiled snapshot for one proxy against what the proxy holds (its config
dump over the bus), per kind, as `istioctl proxy-status <pod>` prints a diff. Pure (tests/cli/test_proxy_diff.py)."""

from __future__ import annotations

import difflib
import json
from typing import Any

import msgspec


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def pilot_view(snapshot_text: str) -> dict[str, Any]:
    """Pilot's snapshot for the proxy (services/pilot/proxy_view.py) in the proxy's dump shapes: clusters and
    routes as sent, the security and gateway entries summarized as the proxy's /config_dump shows them."""
    from proto.gateway_xds import GatewayListeners
    from proto.xds import WorkloadSecurity
    from proxy.control.gateway_state import gateway_dump
    from proxy.control.security_state import security_dump

    raw = json.loads(snapshot_text)
    security = msgspec.convert(raw["security"], WorkloadSecurity) if raw.get("security") else None
    gateway = msgspec.convert(raw["gateway"], GatewayListeners, strict=False) if raw.get("gateway") else None
    return _normal({"clusters": raw.get("clusters") or [], "routes": raw.get("routes") or [],
                    "security": security_dump(security), "gateway": gateway_dump(gateway)})


def proxy_view(dump: dict[str, Any]) -> dict[str, Any]:
    clusters = [{k: v for k, v in c.items() if k != "retained"} for c in dump.get("clusters") or []]
    return _normal({"clusters": clusters, "routes": dump.get("routes") or [], "security": dump.get("security"),
                    "gateway": dump.get("gateway")})


LABELS = {"clusters": "Clusters", "routes": "Routes", "security": "Security (inbound policy)",
          "gateway": "Gateway listeners"}


def diff(pilot: dict[str, Any], held: dict[str, Any], proxy_id: str) -> tuple[bool, list[str]]:
    """(every kind matches, the lines to print): `<Kind> Match`, or `<Kind> Don't Match` and a unified diff
    (`--- pilot`, `+++ <proxy>`)."""
    lines: list[str] = []
    same = True
    for kind, label in LABELS.items():
        want = json.dumps(pilot.get(kind), indent=2, sort_keys=True).splitlines()
        have = json.dumps(held.get(kind), indent=2, sort_keys=True).splitlines()
        if want == have:
            lines.append(f"{label} Match")
            continue
        same = False
        lines.append(f"{label} Don't Match")
        lines += list(difflib.unified_diff(want, have, "pilot", proxy_id, lineterm="", n=2))
    return same, lines
