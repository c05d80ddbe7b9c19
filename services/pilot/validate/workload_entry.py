"""Semantic checks of a WorkloadEntry (Istio's ValidateWorkloadEntry), and of the endpoints of a
ServiceEntry, which have the same shape (service_entry.py imports `check_endpoint`)."""

from __future__ import annotations

from proto.networking import WorkloadEntrySpec
from services.pilot.validate.checks import DNS1123_LABEL, check_labels, check_port, host_problem, is_ip
from services.pilot.validate.findings import Findings


def check_endpoint(ep: WorkloadEntrySpec, path: str, f: Findings, port_names: set[str] | None, ip_only: bool) -> None:
    """A WorkloadEntry, or an endpoint of a ServiceEntry: `port_names` are the ServiceEntry's (None for a
    WorkloadEntry), `ip_only` for resolution STATIC."""
    address = ep.address or ""
    apath = f"{path}.address"
    if not address:
        if ep.network:
            f.warn(apath, f"address is unset with network `{ep.network}`")
        else:
            f.error(apath, "address is required")
    elif address.startswith("unix://"):
        f.error(apath, "unix domain socket endpoints are not supported yet")
    elif not is_ip(address):
        if ip_only:
            f.error(apath, f"endpoint address `{address}` is not a valid IP address (resolution STATIC)")
        elif host_problem(address):
            f.error(apath, f"endpoint address `{address}` is not a valid FQDN or an IP address")
    for name, port in ep.ports.items():
        ppath = f"{path}.ports[{name}]"
        if port_names is not None and name not in port_names:
            f.error(ppath, f"endpoint port `{name}` is not defined by the service entry")
        elif not DNS1123_LABEL.match(name):
            f.error(ppath, f"invalid port name: `{name}`")
        check_port(port, ppath, f)
    check_labels(ep.labels, f"{path}.labels", f)
    if ep.weight is not None and ep.weight < 0:
        f.error(f"{path}.weight", f"weight {ep.weight} < 0")


def workload_entry(spec: WorkloadEntrySpec, f: Findings) -> None:
    check_endpoint(spec, "spec", f, None, ip_only=False)
