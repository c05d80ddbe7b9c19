"""`isthmus proxy run`'s telemetry flags: how often a sidecar reports its metrics and how many label sets it keeps
(docs/observability.md), how it batches the spans it reports (docs/tracing.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from isthmus.options import Finite

F = TypeVar("F", bound=Callable[..., Any])

FLAGS = ("metrics_interval", "metrics_max_series", "span_flush_interval", "span_batch", "span_queue",
         "span_max_tag_length")


def telemetry_options(command: F) -> F:
    """The metrics and span flags, in the order `--help` shows them."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def telemetry_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """Pops these flags from the command's keyword arguments (ProxyOptions fields); a span queue smaller than a
    batch is a usage error."""
    out = {name: flags.pop(name) for name in FLAGS}
    if out["span_queue"] < out["span_batch"]:
        raise click.BadParameter(f"{out['span_queue']} is less than --span-batch {out['span_batch']}",
                                 param_hint="'--span-queue'")
    return out


_OPTIONS = [
    click.option("--metrics-interval", type=Finite(0.1, 3600), envvar="ISTHMUS_METRICS_INTERVAL", default=5.0,
                 show_default=True, metavar="SECONDS",
                 help="Seconds between metrics snapshots to the telemetry service (env ISTHMUS_METRICS_INTERVAL)."),
    click.option("--metrics-max-series", type=click.IntRange(1, 1_000_000), envvar="ISTHMUS_METRICS_MAX_SERIES",
                 default=1000, show_default=True,
                 help="Label sets per listener's metrics; more fold into one overflow series (env "
                      "ISTHMUS_METRICS_MAX_SERIES)."),
    click.option("--span-flush-interval", envvar="ISTHMUS_SPAN_FLUSH_INTERVAL", type=Finite(0.01, 3600),
                 default=1.0, show_default=True, help="Seconds a finished span waits at most before its batch goes "
                                                      "to the telemetry service (docs/tracing.md)."),
    click.option("--span-batch", envvar="ISTHMUS_SPAN_BATCH", type=click.IntRange(1, 10_000), default=100,
                 show_default=True, help="Spans per batch; a full batch goes at once."),
    click.option("--span-queue", envvar="ISTHMUS_SPAN_QUEUE", type=click.IntRange(1, 1_000_000), default=1000,
                 show_default=True, help="Spans held while the bus is away; past it the oldest are dropped (counted)."),
    click.option("--span-max-tag-length", envvar="ISTHMUS_SPAN_MAX_TAG_LENGTH", type=click.IntRange(16, 65_536),
                 default=256, show_default=True, help="Characters a span tag value keeps (Envoy's max_path_tag_length)."),
]
