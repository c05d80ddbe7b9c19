"""The features a real mesh has on, as every Isthmus row runs them (issue 15), and the checks that they are.

    authz_policy(namespace, mtls, tcp_port) -> str    Istio YAML: one AuthorizationPolicy of RULES ALLOW rules
                                                      for the server sidecar (`app: bench-backend`)
    check_sidecar(sidecar, rules) -> dict             the running sidecar's state (/config_dump, /proc): tracing
                                                      at the mesh default 1%, access log off, `rules` rules in force;
                                                      RuntimeError naming what is not so
    requests_total(sidecar) -> float                  istio_requests_total summed, from /stats/prometheus
    check_counted(name, before, after, requests)      every measured request counted by the sidecar's metrics

The policy is written like a real one: rules on methods, paths and hosts (for the mTLS pair also on the caller's
principal and namespace; the plaintext pair has no peer identity, so its rules use request attributes only),
and the benchmark's own request (GET / or /handshake, Host bench-backend:9080) is allowed by the LAST rule:
every rule is evaluated before it (rules are checked in order, the first match allows), the worst case for an
ALLOW policy. Anything else is denied (403): DENIED_PATH is checked to be so before measuring. On the plaintext
server sidecar one rule allows the opaque TCP port (`ports`: the only rule a TCP connection can match, the
others use HTTP-only fields and are dropped for TCP as Istio drops them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

RULES = 10
DENIED_PATH = "/admin/config"  # no rule allows it: 403 through every Isthmus row before measuring
BENCH_PATHS = ("/", "/handshake")  # the benchmark's requests (mtls.HANDSHAKE_PATH for the handshake rows)
MESH_SAMPLING = 1.0  # Istio's default meshConfig.defaultConfig.tracing.sampling, percent
HOSTS = '[bench-backend, "bench-backend:*", bench-backend.{ns}.svc.cluster.local, "bench-backend.{ns}.svc.cluster.local:*"]'


def _rules(namespace: str, mtls: bool, tcp_port: int | None) -> list[str]:
    """Ten rules, one YAML flow mapping each; identity conditions only where the caller has one (mTLS)."""
    def who(kind: str, value: str) -> str:
        return f"from: [{{source: {{{kind}: [{value}]}}}}], " if mtls else ""

    hosts = HOSTS.format(ns=namespace)
    rules = [
        who("namespaces", "frontend") + "to: [{operation: {methods: [GET, HEAD], paths: [/api/v1/products/*]}}]",
        who("principals", "cluster.local/ns/checkout/sa/checkout")
        + "to: [{operation: {methods: [POST, PUT, PATCH], paths: [/api/v1/cart/*]}}]",
        who("principals", "cluster.local/ns/orders/sa/orders")
        + "to: [{operation: {methods: [GET], hosts: [orders.example.com, \"orders.example.com:*\"], "
          "paths: [/api/v1/orders/*]}}]",
        who("namespaces", "admin") + "to: [{operation: {methods: [DELETE], paths: [/api/v1/*]}}], "
        "when: [{key: \"request.headers[x-user-role]\", values: [admin]}]",
        "to: [{operation: {methods: [GET], paths: [/healthz, /readyz]}}]",
        who("namespaces", "monitoring") + "to: [{operation: {methods: [GET], paths: [/metrics, /stats/*]}}]",
        who("principals", "cluster.local/ns/istio-system/sa/ingressgateway")
        + "to: [{operation: {methods: [GET, POST], hosts: [api.example.com, \"api.example.com:*\"], "
          "paths: [/graphql]}}]",
        "to: [{operation: {methods: [GET, HEAD], paths: [/static/*, /assets/*, \"*.css\", \"*.js\"]}}]",
    ]
    if tcp_port is not None:  # the opaque TCP port (isthmus-tcp-pair): ports alone, so TCP can match it
        rules.append(f"to: [{{operation: {{ports: [\"{tcp_port}\"]}}}}]")
    else:
        rules.append(who("namespaces", "batch") + "to: [{operation: {methods: [POST], paths: [/api/v1/import/*]}}]")
    caller = (f"from: [{{source: {{principals: [cluster.local/ns/{namespace}/sa/default], "
              f"namespaces: [{namespace}]}}}}], " if mtls else "")
    paths = ", ".join(BENCH_PATHS)
    rules.append(caller + f"to: [{{operation: {{methods: [GET, HEAD], hosts: {hosts}, paths: [{paths}]}}}}]")
    assert len(rules) == RULES
    return rules


def authz_policy(namespace: str, mtls: bool, tcp_port: int | None = None) -> str:
    """The server sidecar's AuthorizationPolicy in `namespace` (Istio YAML, applied through isthmus.config.apply)."""
    body = "".join(f"  - {{{rule}}}\n" for rule in _rules(namespace, mtls, tcp_port))
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: bench-backend, namespace: {namespace}}}\n"
            f"spec:\n  selector: {{matchLabels: {{app: bench-backend}}}}\n  action: ALLOW\n  rules:\n{body}")


class _Sidecar(Protocol):
    pid: int

    def admin(self, path: str) -> tuple[int, bytes]: ...


def _access_log_flag(pid: int) -> str:
    """The --access-log (or ISTHMUS_ACCESS_LOG) the sidecar process was started with ("" when off)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for i, arg in enumerate(argv):
        if arg == b"--access-log" and i + 1 < len(argv):
            return argv[i + 1].decode() or ""
        if arg.startswith(b"--access-log="):
            return arg.split(b"=", 1)[1].decode()
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"ISTHMUS_ACCESS_LOG="):
            return entry.split(b"=", 1)[1].decode()
    return ""


def check_sidecar(sidecar: _Sidecar, rules: int) -> dict[str, Any]:
    """What the running sidecar has on: raises RuntimeError unless tracing samples at the mesh default (1%) on
    both sides and reports spans, the access log is off (no --access-log, no Telemetry accessLogging sink) and
    the inbound authorization holds `rules` rules (0: no policy). Returns the state read, for the JSON."""
    dump = json.loads(sidecar.admin("/config_dump")[1])
    proxy = dump["proxy"]
    tracing = proxy["tracing"]
    state = {"trace_sampling_percent": [tracing[side]["sampling_percent"] for side in ("client", "server")],
             "mesh_trace_sampling": dump["mesh"]["trace_sampling"],
             "spans_reported": all(tracing[side]["enabled"] and tracing[side]["report"] for side in ("client", "server")),
             "access_log_flag": _access_log_flag(sidecar.pid),
             "access_logging": [e for e in dump["access_logging"] if not e["disabled"]],
             "authz_policies": dump["security"]["authorization"],
             "authz_rules": proxy["inbound_authz"]["rules"]}
    wrong = []
    if state["trace_sampling_percent"] != [MESH_SAMPLING, MESH_SAMPLING] or state["mesh_trace_sampling"] != MESH_SAMPLING:
        wrong.append(f"tracing samples {state['trace_sampling_percent']}% (mesh {state['mesh_trace_sampling']}%), "
                     f"not the default {MESH_SAMPLING}%")
    if not state["spans_reported"]:
        wrong.append("tracing off or not reporting")
    if state["access_log_flag"] or state["access_logging"]:
        wrong.append(f"an access log is on ({state['access_log_flag']!r}, {state['access_logging']})")
    if state["authz_rules"] != rules:
        wrong.append(f"{state['authz_rules']} authorization rules in force, not {rules}")
    if wrong:
        raise RuntimeError(f"sidecar {proxy['id']}: " + "; ".join(wrong))
    return state


def requests_total(sidecar: _Sidecar) -> float:
    """Every request the sidecar's Istio metrics counted (istio_requests_total, all series)."""
    text = sidecar.admin("/stats/prometheus")[1].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("istio_requests_total{"))


def check_counted(name: str, role: str, before: float, after: float, requests: int) -> float:
    """The sidecar's metrics counted at least the requests the load generators saw answered (warm-up aside):
    the metrics stage ran for every one. Returns the count; RuntimeError when short."""
    counted = after - before
    if counted < requests:
        raise RuntimeError(f"{name}: the {role} sidecar's istio_requests_total grew by {counted:g} for {requests} "
                           "requests: metrics are not recorded for every request")
    return counted
