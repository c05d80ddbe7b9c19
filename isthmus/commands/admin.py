"""`isthmus admin log SERVICE [--level LEVEL]`: every replica of a control-plane service shows or changes its
log level at runtime, over the bus (isthmus.admin.log.<service>, operator only), without a restart."""

from __future__ import annotations

from typing import Any

import click

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.pilot_client import quiet_logs

SERVICES = ("pilot", "registry", "ca", "telemetry", "auth")
WINDOW = 1.0  # seconds replies are gathered: every replica answers


@click.group()
def admin() -> None:
    """Control-plane administration."""


@admin.command("log")
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="The new level (omitted: print each replica's current one).")
@click.option("--wait", type=click.FloatRange(0.1, 30), default=WINDOW, show_default=True, metavar="SECONDS",
              help="How long replies are gathered (every replica answers).")
@click.pass_obj
def admin_log(obj: dict[str, Any], service: str, level: str | None, wait: float) -> None:
    """Show or change the log level of every replica of SERVICE, at runtime."""
    from isthmus.gather import gather
    from isthmus.tables import render
    from proto.debug import LogLevelReply, LogLevelRequest
    from proto.subjects import admin_log_subject
    from runtime.bus import decode, encode

    quiet_logs()

    async def work(bus: Any) -> list[bytes]:
        return await gather(bus, admin_log_subject(service), encode(LogLevelRequest(level=level or "")), wait)

    raw = pilot_client.with_bus(obj["nats_url"], work, service=service, auth=obj.get("auth"))
    replies = []
    for data in raw:
        try:
            replies.append(decode(data, LogLevelReply))
        except ValueError:
            continue
    if not replies:
        raise CliError(f"no replica of {service} answered within {wait:g}s: is it running (and as new as this CLI)?")
    rows = [[r.instance, r.level, r.previous_level or "-", "ok" if r.ok else r.error]
            for r in sorted(replies, key=lambda r: r.instance)]
    click.echo(render(["INSTANCE", "LEVEL", "WAS", "RESULT"], rows))
    if not all(r.ok for r in replies):
        raise CliError(f"{sum(not r.ok for r in replies)} replica(s) of {service} refused")
