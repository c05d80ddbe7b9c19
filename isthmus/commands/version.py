"""`isthmus version`: this client's version, each control-plane service's versions and replicas (their health
replies, isthmus.health.<service>), and the proxies' versions (their ACKs, through pilot's proxy status)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from isthmus import pilot_client
from isthmus.commands.admin import SERVICES, WINDOW
from isthmus.pilot_client import REQUEST_TIMEOUT, quiet_logs


def version_report(client: str, health: dict[str, list[Any]], proxies: list[Any] | None,
                   proxy_error: str = "") -> dict[str, Any]:
    """The report -o yaml|json prints: per service its replicas (instance, version, ready, leader)."""
    return {
        "client": {"version": client},
        "control_plane": {name: [{"instance": h.instance, "version": h.version or "unknown", "ready": h.ready,
                                  "leader": h.leader} for h in sorted(replies, key=lambda h: h.instance)]
                          for name, replies in health.items()},
        "data_plane": ({"error": proxy_error} if proxies is None else
                       {"proxies": len(proxies),
                        "versions": dict(Counter(p.proxy_version or "unknown" for p in proxies)),
                        "gateways": sum(1 for p in proxies if p.gateway)}),
    }


def short_lines(report: dict[str, Any]) -> list[str]:
    """istioctl's short form: one line each for the client, the control plane and the data plane."""
    versions = Counter(r["version"] for replicas in report["control_plane"].values() for r in replicas)
    data = report["data_plane"]
    plane = ", ".join(f"{v} ({n} replicas)" for v, n in sorted(versions.items())) or "none answered"
    proxies = ("unknown: " + data["error"] if "error" in data else
               ", ".join(f"{v} ({n} proxies)" for v, n in sorted(data["versions"].items())) or "no proxies")
    return [f"client version: {report['client']['version']}", f"control plane version: {plane}",
            f"data plane version: {proxies}"]


def _health(data: bytes) -> Any:
    from proto.health import HealthReply
    from runtime.bus import decode

    try:
        return decode(data, HealthReply)
    except ValueError:  # not a health reply (an error reply): not a replica we can report
        return None


@click.command("version")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default=None, help="The whole report.")
@click.option("--short", is_flag=True, help="One line each for client, control plane and data plane.")
@click.option("--remote/--client-only", default=True, show_default=True,
              help="--client-only: this client's version only, without asking the control plane.")
@click.pass_obj
def version(obj: dict[str, Any], output: str | None, short: bool, remote: bool) -> None:
    """Print the versions of this client, of every control-plane replica, and of the proxies."""
    from isthmus.commands.proxy_config import dump_text
    from isthmus.errors import CliError
    from isthmus.gather import gather
    from isthmus.proxy_debug import proxy_statuses
    from proto.subjects import health_subject
    from runtime.version import VERSION

    if not remote:
        click.echo(f"client version: {VERSION}")
        return
    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> tuple[dict[str, list[Any]], list[Any] | None, str]:
        import asyncio

        raw = await asyncio.gather(*(gather(bus, health_subject(name), b"", WINDOW) for name in SERVICES))
        health = {name: [h for h in (_health(d) for d in replies) if h is not None] for name, replies in zip(SERVICES, raw)}
        try:
            proxies: list[Any] | None = (await proxy_statuses(bus, timeout)).proxies
            error = ""
        except (CliError, Exception) as exc:  # pilot away: the rest of the report still stands
            proxies, error = None, str(exc)[:200]
        return health, proxies, error

    health, proxies, error = pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))
    report = version_report(VERSION, health, proxies, error)
    if output:
        click.echo(dump_text(report, output))
        return
    if short:
        click.echo("\n".join(short_lines(report)))
        return
    from isthmus.tables import render

    click.echo(f"client version: {VERSION}")
    rows = [[name, r["instance"], r["version"], "yes" if r["ready"] else "no", "yes" if r["leader"] else ""]
            for name, replicas in report["control_plane"].items() for r in replicas]
    missing = [name for name, replicas in report["control_plane"].items() if not replicas]
    click.echo(render(["COMPONENT", "INSTANCE", "VERSION", "READY", "LEADER"], rows) if rows else
               "control plane: no service answered")
    if missing:
        click.echo(f"not answering: {', '.join(missing)}", err=True)
    click.echo(short_lines(report)[2])
