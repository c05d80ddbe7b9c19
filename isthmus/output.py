"""What the CLI prints: kubectl-style tables, ages, -o yaml|json, apply results, config errors, warnings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import click
import yaml

from proto.config_api import ApplyReply
from proto.resources import KINDS


def qualified(kind: str) -> str:
    """VirtualService -> virtualservice.networking.istio.io (what kubectl prints)."""
    info = KINDS.get(kind)
    return f"{kind.lower()}.{info.group}" if info else kind.lower()


def format_config_error(error: Any) -> str:
    """`document 2 (VirtualService default/reviews): spec.http[0].route[1].weight: <message>`; an error
    about the submission as a whole (document 0: its size, its number of resources) has no document."""
    subject = ""
    if error.kind or error.name:
        subject = f" ({error.kind or '?'} {error.namespace or 'default'}/{error.name or '?'})"
    path = f"{error.path}: " if error.path else ""
    where = f"document {error.document}{subject}: " if error.document else (
        f"the submission{subject}: " if subject else "the submission: ")
    return f"{where}{path}{error.message}"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, like kubectl."""
    table = [list(headers), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table
    )


def short_age(created: str, now: datetime | None = None) -> str:
    """RFC 3339 timestamp -> kubectl-style age (42s, 5m, 3h, 12d, 2y); `<unknown>` if unparsable."""
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds // 86400}d"
    return f"{seconds // (365 * 86400)}y"


def _host_column(kind: str) -> tuple[str, Callable[[dict[str, Any]], str]]:
    def joined(field: str) -> Callable[[dict[str, Any]], str]:
        return lambda spec: ",".join(str(h) for h in spec.get(field) or []) or "-"

    if kind == "DestinationRule":
        return "HOST", lambda spec: str(spec.get("host") or "-")
    if kind == "WorkloadEntry":
        return "ADDRESS", lambda spec: str(spec.get("address") or "-")
    if kind == "WorkloadGroup":  # the probe its sidecars run (none: the default TCP check of the app port)
        return "PROBE", _probe_column
    if kind == "RateLimit":  # no hosts: which workloads it selects (none: every workload of its namespace)
        return "SELECTOR", lambda spec: ",".join(
            f"{k}={v}" for k, v in sorted(((spec.get("selector") or {}).get("matchLabels") or {}).items())) or "<all>"
    if kind == "PeerAuthentication":  # Istio's printer column: the mode (unset: UNSET, it inherits)
        return "MODE", lambda spec: str((spec.get("mtls") or {}).get("mode") or "UNSET")
    if kind == "AuthorizationPolicy":  # Istio's printer column: the action (unset: ALLOW)
        return "ACTION", lambda spec: str(spec.get("action") or "ALLOW")
    if kind == "RequestAuthentication":  # the issuers its jwtRules accept
        return "ISSUERS", lambda spec: ",".join(
            str(r.get("issuer")) for r in spec.get("jwtRules") or [] if isinstance(r, dict)) or "-"
    if kind == "Gateway":  # the gateway workloads it selects
        return "SELECTOR", lambda spec: ",".join(
            f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    if kind == "Telemetry":  # which workloads it selects (none: its namespace, or the mesh from the root namespace)
        return "SELECTOR", lambda spec: ",".join(
            f"{k}={v}" for k, v in sorted(((spec.get("selector") or {}).get("matchLabels") or {}).items())) or "<all>"
    return "HOSTS", joined("hosts")


def _probe_column(spec: dict[str, Any]) -> str:
    probe = spec.get("probe") or {}
    if not isinstance(probe, dict) or not probe:
        return "-"
    for method in ("httpGet", "tcpSocket", "exec", "grpc"):
        given = probe.get(method)
        if isinstance(given, dict):
            if method == "httpGet":
                return f"httpGet :{given.get('port')}{given.get('path') or '/'}"
            if method == "exec":
                return "exec " + " ".join(str(a) for a in given.get("command") or [])[:40]
            return f"{method} :{given.get('port')}"
    return "-"


def render_table(kind: str, resources: Sequence[dict[str, Any]], now: datetime | None = None) -> str:
    """NAME NAMESPACE HOSTS/HOST/ADDRESS/SELECTOR/MODE/ACTION/ISSUERS AGE (or REVISION when the resources carry no creationTimestamp)."""
    title, host_of = _host_column(kind)
    metas = [r.get("metadata") or {} for r in resources]
    use_age = any(m.get("creationTimestamp") for m in metas)
    rows = []
    for resource, meta in sorted(zip(resources, metas), key=lambda rm: (_ns(rm[1]), rm[1].get("name", ""))):
        if use_age:
            last = short_age(meta["creationTimestamp"], now) if meta.get("creationTimestamp") else "<unknown>"
        else:
            last = str(meta.get("resourceVersion") or "-")
        rows.append([str(meta.get("name", "")), _ns(meta), host_of(resource.get("spec") or {}), last])
    return format_table(["NAME", "NAMESPACE", title, "AGE" if use_age else "REVISION"], rows)


def _ns(meta: dict[str, Any]) -> str:
    return str(meta.get("namespace") or "default")


def as_list(resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several resources as one document, the way kubectl prints them."""
    return {"apiVersion": "v1", "kind": "List", "items": list(resources), "metadata": {"resourceVersion": ""}}


def render_output(resources: Sequence[dict[str, Any]], output: str, single: bool) -> str:
    """-o yaml|json: one object when a NAME was asked for, else a `kind: List` (possibly empty)."""
    obj: Any = resources[0] if single and resources else as_list(resources)
    if output == "json":
        return json.dumps(obj, indent=4)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")


def not_reconciled(resources: Iterable[dict[str, Any]]) -> list[str]:
    """`virtualservice.networking.istio.io/reviews (default) did not compile: <why>` for every resource
    whose status has a Reconciled condition that is False (set by pilot's get)."""
    lines = []
    for resource in resources:
        conditions = (resource.get("status") or {}).get("conditions") or []
        for condition in conditions:
            if condition.get("type") == "Reconciled" and condition.get("status") == "False":
                meta = resource.get("metadata") or {}
                lines.append(f"{qualified(str(resource.get('kind', '')))}/{meta.get('name', '?')} ({_ns(meta)}) "
                             f"is stored but not in effect: {condition.get('message', '')}")
    return lines


def print_apply_reply(reply: ApplyReply, echo: Callable[..., None] = click.echo) -> bool:
    """kubectl-style result lines on stdout, warnings and errors on stderr; True when ok."""
    for warning in reply.warnings:
        echo(f"Warning: {format_config_error(warning)}", err=True)
    if not reply.ok:
        for error in reply.errors:
            echo(f"error: {format_config_error(error)}", err=True)
        if reply.error or not reply.errors:
            echo(f"error: {reply.error or 'pilot refused the request without saying why'}", err=True)
        return False
    for result in reply.results:
        echo(f"{qualified(result.ref.kind)}/{result.ref.name} {result.action}")
    return True


# What the `token`, `ca` and `proxy credentials` commands share: `-o yaml|json` prints the whole reply.
OUTPUT = click.option("-o", "--output", type=click.Choice(["yaml", "json"]), help="Print the whole reply.")


def dump_reply(value: Any, output: str) -> str:
    """A msgspec reply as YAML or JSON (`output`), fields in their declared order."""
    import msgspec

    plain = msgspec.to_builtins(value)
    if output == "json":
        return json.dumps(plain, indent=4)
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=False).rstrip("\n")


def utc_when(epoch: float) -> str:
    """Unix seconds as an RFC 3339 UTC time, to the second."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

