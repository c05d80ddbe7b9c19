"""`isthmus gateway run`: the proxy in gateway mode at the mesh's edge (proxy/gateway/, docs/gateways.md).

Defaults as an Istio user expects of `istio-ingressgateway`: namespace istio-system, labels
`istio=<name without istio->` and `app=<name>` (so a Gateway's `selector: {istio: ingressgateway}` picks it),
service account `<name>-service-account`; registered as service `<name>` with its Gateway ports.
"""

from __future__ import annotations

from typing import Any

import click

from isthmus.commands.proxy import _ip_address, _labels
from isthmus.commands.proxy_options import proxy_settings, run_or_exit, shared_options
from isthmus.options import check_distinct_ports, check_proxy_identity


def parse_port_pair(text: str) -> tuple[int, int]:
    """`8080:80` -> (8080, 80): listen port, Gateway port; ValueError otherwise."""
    listen, sep, gateway = text.partition(":")
    ports = []
    for value in (listen, gateway):
        if not value.strip().isdigit() or not 0 <= int(value) <= 65535:
            raise ValueError(f"{text!r} is not LISTEN:GATEWAY_PORT (ports 1-65535; LISTEN 0: any free port)")
        ports.append(int(value))
    if not sep or ports[1] == 0:
        raise ValueError(f"{text!r} is not LISTEN:GATEWAY_PORT (ports 1-65535; LISTEN 0: any free port)")
    return ports[0], ports[1]


def _ports(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple(parse_port_pair(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    gateway_ports = [gw for _, gw in pairs]
    if len(set(gateway_ports)) != len(gateway_ports):
        raise click.BadParameter("a Gateway port is given twice")
    return pairs or ((8080, 80), (8443, 443))


def default_labels(name: str) -> dict[str, str]:
    """Istio's install labels: istio-ingressgateway -> {istio: ingressgateway, app: istio-ingressgateway}."""
    return {"istio": name.removeprefix("istio-"), "app": name}


@click.group()
def gateway() -> None:
    """Ingress and egress gateways: the proxy at the mesh's edge, configured by Istio's Gateway resource."""


@gateway.command("run")
@click.option("--name", required=True, help="The gateway's service name (istio-ingressgateway, istio-egressgateway).")
@click.option("-n", "--namespace", default="istio-system", show_default=True,
              help="Its namespace: credentialName secrets are looked up here.")
@click.option("--labels", callback=_labels, metavar="k=v,k2=v2",
              help="Labels a Gateway's selector matches; default istio=<name without istio->,app=<name>.")
@click.option("--port", "ports", multiple=True, callback=_ports, metavar="LISTEN:GATEWAY_PORT",
              help="Serve Gateway port GATEWAY_PORT on LISTEN (0: any free port). Repeatable; default 8080:80 and "
                   "8443:443, as Istio's ingress gateway.")
@click.option("--listen-host", default="0.0.0.0", show_default=True, callback=_ip_address, metavar="IP",
              help="The address the Gateway ports bind.")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=15000, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, callback=_ip_address, metavar="IP",
              help="The address peers (sidecars routing through an egress gateway) use to reach the gateway.")
@click.option("--service-account", default="", metavar="NAME",
              help="The gateway's identity; default <name>-service-account (Istio's).")
@shared_options
@click.pass_obj
def gateway_run(obj: dict[str, Any], name: str, namespace: str, labels: dict[str, str],
                ports: tuple[tuple[int, int], ...], listen_host: str, admin_port: int, address: str,
                service_account: str, **flags: Any) -> None:
    """Run a gateway until SIGINT/SIGTERM."""
    from proxy.settings import ProxyOptions

    service_account = service_account or f"{name}-service-account"
    labels = labels or default_labels(name)
    check_proxy_identity(name, namespace, address, flags["locality"], service_account, flags["workload_name"],
                         flags["cluster"])
    check_distinct_ports([*((f"--port {listen}:{gw}", listen) for listen, gw in ports), ("--admin-port", admin_port)])
    options = ProxyOptions(service=name, namespace=namespace, service_port=ports[0][1], app_port=admin_port,
                           labels=labels, inbound_port=ports[0][0] or ports[0][1], admin_port=admin_port,
                           address=address, service_account=service_account, **proxy_settings(obj, flags))
    from proxy.gateway.main import run_gateway

    run_or_exit(lambda: run_gateway(options, list(ports), listen_host))
