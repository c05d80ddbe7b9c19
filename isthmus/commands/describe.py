"""`isthmus x describe service NAME [-n NS]` (experimental, as istioctl's `x describe`): the routes, subsets,
policies, endpoints and mTLS mode that apply to one service, in one screen."""

from __future__ import annotations

from typing import Any

import click

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.pilot_client import REQUEST_TIMEOUT, quiet_logs

KINDS = ("VirtualService", "DestinationRule", "PeerAuthentication", "AuthorizationPolicy")


@click.group("x")
def experimental() -> None:
    """Experimental commands (their output may change)."""


@experimental.group("describe")
def describe_group() -> None:
    """Describe what applies to a mesh object."""


@describe_group.command("service")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-o", "--output", type=click.Choice(["text", "yaml", "json"]), default="text", show_default=True)
@click.option("--root-namespace", default="istio-system", show_default=True,
              help="The mesh's root namespace (pilot's): its policies apply mesh-wide.")
@click.pass_obj
def describe_service(obj: dict[str, Any], name: str, namespace: str, output: str, root_namespace: str) -> None:
    """What applies to service NAME (a short name in -n's namespace, or a FQDN)."""
    import json

    from isthmus.commands.proxy_config import dump_text
    from isthmus.describe import describe, fqdn, lines
    from proto.config_api import GetReply, GetRequest
    from proto.subjects import CONFIG_GET, XDS_STATUS
    from proto.xds import ProxyStatusReply, ProxyStatusRequest

    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)
    target = fqdn(name, namespace)

    async def work(bus: Any) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        resources: dict[str, list[dict[str, Any]]] = {}
        for kind in KINDS:
            reply = await bus.call(CONFIG_GET, GetRequest(kind=kind), GetReply, timeout)
            if not reply.ok:
                raise CliError(reply.error or f"pilot could not list {kind}")
            resources[kind] = reply.resources
        status = await bus.call(XDS_STATUS, ProxyStatusRequest(namespace="", host=target), ProxyStatusReply, timeout)
        if not status.ok:
            raise CliError(status.error or "pilot could not describe the service")
        return resources, json.loads(status.service or "{}")

    resources, compiled = pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))
    view = describe(target, namespace if target.count(".") < 2 else target.split(".")[1], resources, compiled,
                    root_namespace)
    if output != "text":
        click.echo(dump_text(view, output))
        return
    click.echo("\n".join(lines(view)))
