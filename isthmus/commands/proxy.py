"""`isthmus proxy run` (a sidecar beside one workload) and `isthmus proxy-status` (each sidecar's sync state)."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.options import Finite, check_distinct_ports, check_proxy_identity, parse_labels
from isthmus.commands.proxy_options import proxy_settings, run_or_exit, shared_options
from isthmus.output import format_table
from isthmus.pilot_client import REQUEST_TIMEOUT, quiet_logs


@click.command("proxy-status")
@click.argument("proxy_name", metavar="[PROXY]", required=False)
@click.option("-n", "--namespace", default=None, help="Only proxies in this namespace (default: all).")
@click.option("-o", "--output", type=click.Choice(["table", "wide", "yaml", "json"]), default="table",
              show_default=True, help="wide: the state of each kind of config (clusters, routes, security, gateways).")
@click.pass_obj
def proxy_status(obj: dict[str, Any], proxy_name: str | None, namespace: str | None, output: str) -> None:
    """Show each proxy's sync state: SYNCED, STALE or REJECTED (with the proxy's reason), per kind of config
    with -o wide. With PROXY (an id, a unique prefix, or SERVICE.NAMESPACE): the difference between what pilot
    would send it and what it holds, read from the proxy over the bus."""
    from isthmus.proxy_status import HEADERS, WIDE_HEADERS, as_records, rejections, status_rows, wide_rows
    from isthmus.proxy_debug import proxy_statuses

    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)
    if proxy_name:
        _proxy_diff(obj, proxy_name, timeout)
        return

    async def work(bus: Any) -> Any:
        return await proxy_statuses(bus, timeout, namespace)

    reply = pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))
    if output in ("yaml", "json"):
        from isthmus.commands.proxy_config import dump_text

        click.echo(dump_text(as_records(reply), output))
        return
    if not reply.proxies:
        click.echo("No proxies have reported.", err=True)
        return
    if output == "wide":
        from isthmus.tables import render

        click.echo(render(WIDE_HEADERS, wide_rows(reply)))
    else:
        click.echo(format_table(HEADERS, status_rows(reply)))
    for line in rejections(reply):
        click.echo(f"Warning: {line}", err=True)


def _proxy_diff(obj: dict[str, Any], name: str, timeout: float) -> None:
    """Pilot's snapshot for one proxy against the proxy's own dump (exit 0 either way, as istioctl)."""
    from isthmus.proxy_debug import fetch_section, proxy_statuses, resolve
    from isthmus.proxy_diff import diff, pilot_view, proxy_view
    from isthmus.proxy_status import kind_states, sync_state

    async def work(bus: Any) -> Any:
        status = resolve((await proxy_statuses(bus, timeout)).proxies, name)
        reply = await proxy_statuses(bus, timeout, snapshot_for=status.proxy_id)
        return status, reply, await fetch_section(bus, status, "all", timeout)

    status, reply, dump = pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))
    if not reply.snapshot:
        raise CliError(f"pilot holds no snapshot for {status.proxy_id}")
    states = ", ".join(f"{k} {v}" for k, v in kind_states(reply, status).items())
    click.echo(f"{status.proxy_id}: {sync_state(status, reply.version)} (proxy at version {status.version}, pilot at "
               f"{reply.version}; {states})")
    if not status.ok:
        click.echo(f"Warning: the proxy rejected version {status.version}: {status.error or 'no error text'}", err=True)
    _, lines = diff(pilot_view(reply.snapshot), proxy_view(dump), status.proxy_id)
    for line in lines:
        click.echo(line)


@click.group()
def proxy() -> None:
    """The sidecar proxy."""


def _labels(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, str]:
    return parse_labels(value)


def _tcp_routes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    from proxy.settings import parse_tcp_route

    try:
        return tuple(parse_tcp_route(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _app_tcp(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    from proxy.settings import parse_app_tcp

    try:
        return tuple(parse_app_tcp(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _ip_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An IPv4 or IPv6 address, as the sidecar connects to it (no name: nothing to resolve per connection)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None


def workload_group_name(text: str, namespace: str) -> str:
    """--workload-group's NAME (a WorkloadGroup binds workloads of its own namespace, as Istio's auto-registration
    looks the group up in the proxy's namespace); NAMESPACE/NAME must name --namespace."""
    import re

    group_ns, _, name = text.rpartition("/")
    if group_ns and group_ns != namespace:
        raise click.BadParameter(f"the group must be in --namespace {namespace!r}, not {group_ns!r}",
                                 param_hint="--workload-group")
    if text and not (len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                                                         name)):
        raise click.BadParameter(f"{name[:80]!r} is not a WorkloadGroup name (a DNS-1123 subdomain)",
                                 param_hint="--workload-group")
    return name


@proxy.command("run")
@click.option("--service", required=True, help="The service this workload belongs to.")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--service-port", type=click.IntRange(1, 65535), required=True,
              help="The port clients use for the service (reviews:9080).")
@click.option("--app-port", type=click.IntRange(1, 65535), required=True,
              help="Where the app listens on --app-host.")
@click.option("--app-host", default="127.0.0.1", show_default=True, callback=_ip_address, metavar="IP",
              help="The address the app listens on (its --app-port and --app-tcp ports), e.g. another loopback "
                   "address or a private interface; the sidecar alone connects to it.")
@click.option("--labels", callback=_labels, metavar="k=v,k2=v2", help="Workload labels (subsets match these).")
@click.option("--inbound-port", type=click.IntRange(1, 65535), default=15006, show_default=True)
@click.option("--outbound-port", type=click.IntRange(1, 65535), default=15001, show_default=True)
@click.option("--admin-port", type=click.IntRange(1, 65535), default=15000, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="The address peers use to reach this workload's inbound port.")
@click.option("--service-account", default="default", show_default=True,
              help="The workload's identity: spiffe://<trust domain>/ns/<namespace>/sa/<this>.")
@click.option("--mtls-switch-hold", type=Finite(0, 3600), envvar="ISTHMUS_MTLS_SWITCH_HOLD", default=10.0,
              show_default=True, metavar="SECONDS",
              help="A PeerAuthentication switch into or out of DISABLE waits this long at PERMISSIVE, so client "
                   "sidecars move to (or off) mutual TLS first; env ISTHMUS_MTLS_SWITCH_HOLD. 0: at once.")
@click.option("--tcp", multiple=True, callback=_tcp_routes, metavar="HOST:PORT=LOCAL_PORT",
              help="Opaque TCP out: the app connects to 127.0.0.1:LOCAL_PORT to reach HOST:PORT (tcp routes apply). "
                   "Repeatable.")
@click.option("--app-tcp", multiple=True, callback=_app_tcp, metavar="SERVICE_PORT=APP_PORT[@INBOUND_PORT]",
              help="Opaque TCP in: serve the app's APP_PORT as the service's SERVICE_PORT through an inbound TCP "
                   "listener (any free port unless given). Repeatable.")
@click.option("--dns-port", type=click.IntRange(0, 65535), envvar="ISTHMUS_DNS_PORT", default=0, show_default=True,
              metavar="PORT",
              help="Answer DNS (UDP and TCP) on 127.0.0.1:PORT for mesh names (reviews, reviews.default, "
                   "reviews.default.svc.cluster.local, ServiceEntry hosts) with a loopback address per service, on "
                   "which the sidecar listens for the service's ports: apps use plain URLs (http://reviews:9080/). "
                   "docs/dns.md; env ISTHMUS_DNS_PORT. 0: off.")
@click.option("--workload-group", envvar="ISTHMUS_WORKLOAD_GROUP", default="", metavar="[NAMESPACE/]NAME",
              help="The WorkloadGroup of --namespace this workload belongs to: its template's labels apply to the "
                   "registration, and the sidecar runs its probe for the workload's health (docs/workload-group.md; "
                   "env ISTHMUS_WORKLOAD_GROUP).")
@shared_options
@click.pass_obj
def proxy_run(obj: dict[str, Any], service: str, namespace: str, service_port: int, app_port: int, app_host: str,
              labels: dict[str, str], inbound_port: int, outbound_port: int, admin_port: int, address: str,
              service_account: str, mtls_switch_hold: float, tcp: tuple[tuple[str, int, int], ...],
              app_tcp: tuple[tuple[int, int, int], ...], dns_port: int, workload_group: str, **flags: Any) -> None:
    """Run a sidecar beside one workload until SIGINT/SIGTERM."""
    from proxy.settings import ProxyOptions

    check_proxy_identity(service, namespace, address, flags["locality"], service_account, flags["workload_name"],
                         flags["cluster"])
    group = workload_group_name(workload_group, namespace)
    check_distinct_ports([("--app-port", app_port), ("--inbound-port", inbound_port),
                          ("--outbound-port", outbound_port), ("--admin-port", admin_port),
                          *(("--tcp", local) for _, _, local in tcp),
                          *(("--app-tcp", inbound) for _, _, inbound in app_tcp), ("--dns-port", dns_port)])
    options = ProxyOptions(
        service=service,
        namespace=namespace,
        service_port=service_port,
        app_port=app_port,
        app_host=app_host,
        labels=labels,
        inbound_port=inbound_port,
        outbound_port=outbound_port,
        admin_port=admin_port,
        address=address,
        service_account=service_account,
        mtls_switch_hold=mtls_switch_hold,
        tcp_routes=tcp,
        app_tcp=app_tcp,
        dns_port=dns_port,
        workload_group=group,
        **proxy_settings(obj, flags),
    )
    from proxy.identity.x509_client import spawn_early

    early = spawn_early(2)  # `cryptography` loads in the sidecar's X.509 workers while it imports its own modules
    from proxy.main import run_proxy

    run_or_exit(lambda: run_proxy(options, early))
