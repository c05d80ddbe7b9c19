"""Semantic checks of a ServiceEntry (Istio's ValidateServiceEntry), for the fields Isthmus supports:
hosts, addresses, ports, location, resolution and its endpoints or workload selector."""

from __future__ import annotations

import ipaddress

from proto.networking import ServiceEntrySpec
from services.pilot.validate.checks import DNS1123_LABEL, check_host, check_labels, check_port
from services.pilot.validate.findings import Findings
from services.pilot.validate.workload_entry import check_endpoint

RESOLUTIONS = ("NONE", "STATIC", "DNS")
NOT_YET_RESOLUTIONS = ("DNS_ROUND_ROBIN",)
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")
HTTP_PROTOCOLS = {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"}
TLS_PROTOCOLS = {"HTTPS", "TLS"}
PROTOCOLS = HTTP_PROTOCOLS | TLS_PROTOCOLS | {"TCP", "MONGO", "REDIS", "MYSQL"}


def service_entry(spec: ServiceEntrySpec, f: Findings) -> None:
    if spec.workload_selector is not None and spec.endpoints is not None:
        f.error("spec.workloadSelector", "only one of workloadSelector or endpoints is allowed in a service entry")
    if spec.workload_selector is not None:
        check_labels(spec.workload_selector.labels, "spec.workloadSelector.labels", f)
        if not spec.workload_selector.labels:
            f.warn("spec.workloadSelector", "workload selector without labels selects every workload in the namespace")
    if not spec.hosts:
        f.error("spec.hosts", "service entry must have at least one host")
    for i, host in enumerate(spec.hosts):
        if host == "*":
            f.error(f"spec.hosts[{i}]", "invalid host *")
        else:
            check_host(host, f"spec.hosts[{i}]", f)
    for i, address in enumerate(spec.addresses or []):
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            f.error(f"spec.addresses[{i}]", f"`{address}` is not a valid IP address or CIDR")
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        check_port(port.number, f"{path}.number", f)
        if port.number in numbers:
            f.error(f"{path}.number", f"service entry port {port.number} already defined")
        numbers.add(port.number)
        if not port.name:
            f.error(f"{path}.name", "port name is required")
        elif not DNS1123_LABEL.match(port.name):
            f.error(f"{path}.name", f"invalid port name: `{port.name}`")
        elif port.name in names:
            f.error(f"{path}.name", f"service entry port name `{port.name}` already defined")
        names.add(port.name or "")
        if port.target_port is not None:
            check_port(port.target_port, f"{path}.targetPort", f)
        if port.protocol is not None and port.protocol.upper() not in PROTOCOLS:
            f.error(f"{path}.protocol", f"unsupported protocol `{port.protocol}` "
                                        f"(one of {', '.join(sorted(PROTOCOLS))})")
    if spec.location is not None and spec.location not in LOCATIONS:
        f.error("spec.location", f"unknown location `{spec.location}` (one of {', '.join(LOCATIONS)})")
    resolution = spec.resolution or "NONE"
    if resolution in NOT_YET_RESOLUTIONS:
        f.error("spec.resolution", f"resolution `{resolution}` is not supported yet "
                                   f"(supported: {', '.join(RESOLUTIONS)})")
        return
    if resolution not in RESOLUTIONS:
        f.error("spec.resolution", f"unknown resolution `{resolution}` (one of {', '.join(RESOLUTIONS)})")
        return
    endpoints = spec.endpoints or []
    if resolution == "NONE":
        if endpoints:
            f.error("spec.endpoints", "no endpoints should be provided for resolution type NONE")
        if spec.workload_selector is not None:
            f.warn("spec.workloadSelector", "workloadSelector should not be set when resolution mode is NONE")
    elif resolution == "STATIC" and not endpoints and spec.workload_selector is None:
        f.error("spec.endpoints", "resolution STATIC needs endpoints or a workloadSelector")
    if resolution != "NONE":
        for i, ep in enumerate(endpoints):
            check_endpoint(ep, f"spec.endpoints[{i}]", f, names, ip_only=resolution == "STATIC")
        if len(spec.hosts) > 1:
            for port in spec.ports:
                protocol = (port.protocol or "").upper()
                if protocol not in HTTP_PROTOCOLS and protocol not in TLS_PROTOCOLS:
                    f.error("spec.ports", "multiple hosts provided with non-HTTP, non-TLS ports")
                    break
