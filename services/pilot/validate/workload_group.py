"""Semantic checks of a WorkloadGroup (Istio's ValidateWorkloadGroup and validateReadinessProbe in
pkg/config/validation/validation.go, with the CRD's rules: maxProperties 256 of metadata labels and annotations,
exec.command items non-empty, httpGet.scheme HTTP or HTTPS, ports 1..65535, probe header names
`^[-_A-Za-z0-9]+$`), every problem at once with its path.

The template is not a WorkloadEntry: its address is filled in at registration (a warning when set, as it is
ignored), so only its ports, labels and weight are checked as a WorkloadEntry's. A probe needs exactly one
method; Istio's `grpc` is "not supported yet".
"""

from __future__ import annotations

import re

from proto.workload_group import ReadinessProbe, WorkloadGroupSpec
from services.pilot.validate.checks import DNS1123_LABEL, DNS1123_SUBDOMAIN, check_labels, check_port
from services.pilot.validate.findings import Findings

MAX_METADATA = 256  # the CRD's maxProperties of metadata.labels and metadata.annotations
PROBE_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+\Z")  # Istio's validProbeHeaderNameRegex
METHODS = ("httpGet", "tcpSocket", "exec", "grpc")


def workload_group(spec: WorkloadGroupSpec, f: Findings) -> None:
    if spec.metadata is not None:
        for field in ("labels", "annotations"):
            values = getattr(spec.metadata, field)
            if len(values) > MAX_METADATA:
                f.error(f"spec.metadata.{field}", f"{len(values)} {field}, more than {MAX_METADATA}")
        check_labels(spec.metadata.labels, "spec.metadata.labels", f)
    if spec.template is None:
        f.error("spec.template", "template is required")
    else:
        _template(spec, f)
    if spec.probe is not None:
        probe(spec.probe, "spec.probe", f)


def _template(spec: WorkloadGroupSpec, f: Findings) -> None:
    t = spec.template
    assert t is not None
    if t.address:
        f.warn("spec.template.address", "the address of a group's workload is the one it registers with; "
                                        "this one is ignored")
    for name, port in t.ports.items():
        path = f"spec.template.ports[{name}]"
        if not DNS1123_LABEL.match(name):
            f.error(path, f"invalid port name: `{name}`")
        check_port(port, path, f)
    check_labels(t.labels, "spec.template.labels", f)
    if len(t.labels) > MAX_METADATA:
        f.error("spec.template.labels", f"{len(t.labels)} labels, more than {MAX_METADATA}")
    if t.weight is not None and t.weight < 0:
        f.error("spec.template.weight", f"weight {t.weight} < 0")
    if t.service_account is not None and (len(t.service_account) > 253
                                          or not DNS1123_SUBDOMAIN.match(t.service_account)):
        f.error("spec.template.serviceAccount", f"service account `{t.service_account[:80]}` is not a DNS-1123 "
                                                "subdomain")


def probe(p: ReadinessProbe, path: str, f: Findings) -> None:
    """Istio's validateReadinessProbe: non-negative numbers, exactly one method, and that method's fields."""
    for field, value in (("periodSeconds", p.period_seconds), ("initialDelaySeconds", p.initial_delay_seconds),
                         ("timeoutSeconds", p.timeout_seconds), ("successThreshold", p.success_threshold),
                         ("failureThreshold", p.failure_threshold)):
        if value < 0:
            f.error(f"{path}.{field}", f"{field} must be non-negative")
        elif value > 2**31 - 1:
            f.error(f"{path}.{field}", f"{field} {value} is more than an int32")
    given = [m for m, v in zip(METHODS, (p.http_get, p.tcp_socket, p.exec, p.grpc)) if v is not None]
    if not given:
        f.error(path, "one of `httpGet`, `tcpSocket` or `exec` is required")
    elif len(given) > 1:
        f.error(path, f"only one of `httpGet`, `tcpSocket`, `exec` may be set (found {', '.join(given)})")
    if p.http_get is not None:
        h = p.http_get
        check_port(h.port, f"{path}.httpGet.port", f)
        if h.scheme not in (None, "", "HTTP", "HTTPS"):
            f.error(f"{path}.httpGet.scheme", 'httpGet.scheme must be one of "HTTPS", "HTTP"')
        if h.path and not h.path.startswith("/"):
            f.error(f"{path}.httpGet.path", f"path `{h.path[:80]}` must start with '/'")
        for i, header in enumerate(h.http_headers):
            hpath = f"{path}.httpGet.httpHeaders[{i}].name"
            if not header.name:
                f.error(hpath, "header name cannot be empty")
            elif not PROBE_HEADER_NAME.match(header.name):
                f.error(hpath, f"header name {header.name} is not a valid header name")
            if any(c in header.value for c in "\r\n\0"):
                f.error(f"{path}.httpGet.httpHeaders[{i}].value", "a header value may not hold CR, LF or NUL")
    if p.tcp_socket is not None:
        check_port(p.tcp_socket.port, f"{path}.tcpSocket.port", f)
    if p.exec is not None:
        if not p.exec.command:
            f.error(f"{path}.exec.command", "exec.command is required")
        for i, arg in enumerate(p.exec.command):
            if not arg:
                f.error(f"{path}.exec.command[{i}]", "an argument may not be empty")
            elif "\0" in arg:
                f.error(f"{path}.exec.command[{i}]", "an argument may not hold NUL")
    if p.grpc is not None:
        f.error(f"{path}.grpc", "the grpc probe is not supported yet; use httpGet, tcpSocket or exec")
