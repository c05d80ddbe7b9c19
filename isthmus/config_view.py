"""Rows of `isthmus proxy-config` tables from a section of a proxy's config dump (proxy/control/debug.py
section_of), in istioctl's columns where ours match: clusters, endpoints, routes, listeners, secret.
Pure functions of JSON-decoded dicts (tested without a bus: tests/cli/test_proxy_config_view.py)."""

from __future__ import annotations

from typing import Any

Rows = tuple[tuple[str, ...], list[list[str]]]


def _join(items: Any, empty: str = "-") -> str:
    text = ",".join(str(i) for i in items or [])
    return text or empty


def _string_match(match: dict[str, Any] | None) -> str:
    if not match:
        return "*"
    if match.get("exact") is not None:
        return str(match["exact"])
    if match.get("prefix") is not None:
        return f"{match['prefix']}*"
    if match.get("regex") is not None:
        return f"~{match['regex']}"
    return "*"


def _match(matches: list[dict[str, Any]]) -> str:
    if not matches:
        return "/*"
    parts = []
    for m in matches:
        text = _string_match(m.get("uri")) if m.get("uri") else "/*"
        extra = [f"{h}" for h in sorted(m.get("headers") or {})]
        if m.get("method"):
            extra.append(f"method={_string_match(m['method'])}")
        if m.get("port"):
            extra.append(f"port={m['port']}")
        parts.append(text + (f" [{','.join(extra)}]" if extra else ""))
    return " | ".join(parts)


def _destinations(destinations: list[dict[str, Any]]) -> str:
    out = []
    for d in destinations or []:
        text = str(d.get("host", "?"))
        if d.get("subset"):
            text += f"|{d['subset']}"
        if d.get("port"):
            text += f":{d['port']}"
        if len(destinations) > 1:
            text += f" {d.get('weight', 100)}%"
        out.append(text)
    return ", ".join(out) or "-"


def cluster_rows(section: dict[str, Any]) -> Rows:
    headers = ("SERVICE FQDN", "PORT", "SUBSETS", "LB", "TLS", "DESTINATION RULE", "ENDPOINTS", "VERSION")
    rows = []
    for c in section.get("clusters") or []:
        tls = (c.get("tls") or {}).get("mode") or "AUTO"
        rows.append([str(c.get("host", "")), _join(c.get("ports")), _join(s.get("name") for s in c.get("subsets") or []),
                     str(c.get("lb") or "ROUND_ROBIN"), tls, str(c.get("source") or "-"),
                     str(c.get("endpoint_count", len(c.get("endpoints") or []))), str(c.get("version", ""))])
    return headers, rows


def endpoint_rows(section: dict[str, Any]) -> Rows:
    headers = ("ENDPOINT", "STATUS", "CLUSTER", "WORKLOAD", "LABELS", "MTLS PORTS")
    rows = []
    for c in section.get("clusters") or []:
        for e in c.get("endpoints") or []:
            ports = e.get("ports") or {}
            addresses = ",".join(f"{e.get('address')}:{p}" for p in sorted(ports.values(), key=int)) or str(e.get("address"))
            labels = ",".join(f"{k}={v}" for k, v in sorted((e.get("labels") or {}).items()))
            rows.append([addresses, "HEALTHY" if e.get("healthy", True) else "UNHEALTHY", str(c.get("host", "")),
                         str(e.get("workload") or "-"), labels or "-", _join(e.get("auto_mtls"))])
    return headers, rows


def route_rows(section: dict[str, Any]) -> Rows:
    headers = ("HOST", "MATCH", "DESTINATION", "VIRTUAL SERVICE", "VERSION")
    rows = []
    for r in section.get("routes") or []:
        source = str(r.get("source") or "-")
        for rule in r.get("rules") or []:
            target = _destinations(rule.get("destinations") or [])
            if rule.get("direct_response"):
                target = f"direct response {rule['direct_response'].get('status', '')}"
            elif rule.get("redirect"):
                target = "redirect"
            rows.append([str(r.get("host", "")), _match(rule.get("matches") or []), target, source,
                         str(r.get("version", ""))])
        for rule in r.get("tcp") or []:
            rows.append([str(r.get("host", "")), "tcp", _destinations(rule.get("destinations") or []), source,
                         str(r.get("version", ""))])
    for p in section.get("pending") or []:
        rows.append([str(p.get("host", "")), "(pending)", f"waits for {_join(p.get('missing'))}",
                     str(p.get("source") or "-"), str(p.get("version", ""))])
    return headers, rows


def listener_rows(section: dict[str, Any]) -> Rows:
    """The sidecar's own listeners (outbound, inbound with its mTLS mode, TCP), or a gateway's ports."""
    headers = ("LISTENER", "ADDRESS", "DETAILS")
    info = section.get("proxy") or {}
    security = section.get("security") or {}
    rows: list[list[str]] = []
    if info.get("outbound"):
        rows.append(["outbound", str(info["outbound"]), "HTTP proxy and per-host routes"])
    if info.get("inbound"):
        authz = ",".join(f"{p.get('name')}({p.get('action')})" for p in security.get("authorization") or [])
        if security.get("pending"):  # no entry from pilot yet: the defaults beside it are not in force
            rows.append(["inbound", str(info["inbound"]), f"admits nothing: {security['pending']}"])
        else:
            rows.append(["inbound", str(info["inbound"]), f"mTLS {security.get('mtls_mode', 'PERMISSIVE')} -> app "
                         f"{info.get('app', '')}" + (f"; authz {authz}" if authz else "")])
    for name, port in (info.get("tcp_outbound") or {}).items():
        rows.append([f"tcp outbound {name}", f"127.0.0.1:{port}", "opaque TCP"])
    for service_port, port in (info.get("tcp_inbound") or {}).items():
        mode = (security.get("port_mtls") or {}).get(str(service_port), security.get("mtls_mode", "PERMISSIVE"))
        rows.append([f"tcp inbound {service_port}", f":{port}", f"opaque TCP, mTLS {mode}"])
    addresses = {str(port): str(address) for port, address in (info.get("ports") or {}).items()}
    servers: dict[str, list[str]] = {port: [] for port in addresses}
    for port in (section.get("gateway") or {}).get("ports") or []:
        for server in port.get("servers") or []:
            mode = (server.get("tls") or {}).get("mode")
            servers.setdefault(str(port.get("port")), []).append(
                f"{server.get('protocol', '')} {_join(server.get('hosts'))} ({server.get('gateway', '')})"
                + (f" tls {mode}" if mode else ""))
    for port in sorted(servers, key=lambda p: int(p) if p.isdigit() else 0):
        rows.append([f"gateway {port}", addresses.get(port, "-"),
                     "; ".join(servers[port]) or "no Gateway server on this port"])
    return headers, rows


def secret_rows(section: dict[str, Any]) -> Rows:
    headers = ("RESOURCE NAME", "TYPE", "SUBJECT", "SANS", "SERIAL", "NOT AFTER", "EXPIRES IN")
    rows = []

    def add(name: str, kind: str, certs: list[dict[str, Any]]) -> None:
        for cert in certs:
            rows.append([name, kind, str(cert.get("subject") or "-"), _join(cert.get("sans")),
                         str(cert.get("serial", "")), str(cert.get("not_after", "")),
                         _duration(int(cert.get("expires_in_s", 0)))])

    workload = section.get("workload") or {}
    add("default", "Cert Chain", workload.get("chain") or [])
    add("ROOTCA", "CA", section.get("roots") or [])
    for cred in section.get("credentials") or []:
        add(f"kubernetes://{cred.get('name')}", "Cert Chain", cred.get("chain") or [])
        add(f"kubernetes://{cred.get('name')}-cacert", "CA", cred.get("ca") or [])
    return headers, rows


def _duration(seconds: int) -> str:
    if seconds <= 0:
        return "EXPIRED"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


VIEWS = {"clusters": cluster_rows, "endpoints": endpoint_rows, "routes": route_rows, "listeners": listener_rows,
         "secret": secret_rows}
