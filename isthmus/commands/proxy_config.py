"""`isthmus proxy-config routes|clusters|endpoints|listeners|secret|all PROXY`: what one proxy (sidecar or
gateway) holds, asked of the proxy itself over the bus (proto/debug.py), not pilot's view of it; and
`isthmus proxy log PROXY --level` (its log level, changed at runtime)."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.pilot_client import REQUEST_TIMEOUT, quiet_logs

OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table",
                      show_default=True, help="A table, or the proxy's own dump of the section.")


def dump_text(value: Any, output: str) -> str:
    if output == "json":
        return json.dumps(value, indent=2)
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip("\n")


def fetch(obj: dict[str, Any], name: str, section: str) -> tuple[Any, Any]:
    """(the proxy's status as pilot knows it, the section as the proxy holds it)."""
    from isthmus.proxy_debug import fetch_section, proxy_statuses, resolve

    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> tuple[Any, Any]:
        status = resolve((await proxy_statuses(bus, timeout)).proxies, name)
        return status, await fetch_section(bus, status, section, timeout)

    return pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))


def _section_command(section: str, text: str) -> click.Command:
    @click.command(section, help=text)
    @click.argument("proxy_name", metavar="PROXY")
    @OUTPUT
    @click.pass_obj
    def command(obj: dict[str, Any], proxy_name: str, output: str) -> None:
        from isthmus.config_view import VIEWS
        from isthmus.tables import render

        _, value = fetch(obj, proxy_name, section)
        if output != "table" or section not in VIEWS:
            click.echo(dump_text(value, "json" if section == "all" and output == "table" else output))
            return
        try:
            headers, rows = VIEWS[section](value)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:  # the proxy is not trusted to send our shape
            raise CliError(f"proxy {proxy_name}: its {section} dump is not in the shape this client reads ({exc}); "
                           "see it with -o json") from None
        if not rows:
            click.echo(f"proxy {value.get('proxy', {}).get('id', proxy_name)} holds no {section}.", err=True)
            return
        click.echo(render(headers, rows))

    return command


@click.group("proxy-config")
def proxy_config() -> None:
    """What one proxy holds, read from the proxy over the bus. PROXY: its id, a unique prefix of it, or
    SERVICE.NAMESPACE when one proxy serves it (see `isthmus proxy-status`)."""


for _section, _text in (
        ("clusters", "The services (clusters) the proxy holds: ports, subsets, load balancing, TLS, endpoints."),
        ("endpoints", "Every endpoint of every cluster, with its health."),
        ("routes", "The HTTP and TCP routes per host, and routes pending a cluster."),
        ("listeners", "The proxy's listeners: outbound, inbound (mTLS mode, authorization), TCP, gateway ports."),
        ("secret", "Certificates the proxy holds (workload chain, roots, gateway credentials): subjects, SANs, "
                   "serials and expiry; never keys."),
        ("all", "The whole dump (JSON unless -o yaml)."),
):
    proxy_config.add_command(_section_command(_section, _text))


@click.command("log")
@click.argument("proxy_name", metavar="PROXY")
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="The new level (omitted: print the current one).")
@click.pass_obj
def proxy_log(obj: dict[str, Any], proxy_name: str, level: str | None) -> None:
    """Show or change one proxy's log level at runtime, over the bus (no restart)."""
    from isthmus.proxy_debug import ask, proxy_statuses, resolve
    from proto.debug import ProxyDebugRequest

    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> Any:
        status = resolve((await proxy_statuses(bus, timeout)).proxies, proxy_name)
        return await ask(bus, status, ProxyDebugRequest(proxy_id=status.proxy_id, what="log", level=level or ""),
                         timeout)

    reply = pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))
    if level and not reply.previous_level:
        raise CliError(f"proxy {reply.proxy_id} did not change its level")
    changed = f" (was {reply.previous_level})" if level else ""
    click.echo(f"{reply.proxy_id}: log level {reply.level}{changed}")
