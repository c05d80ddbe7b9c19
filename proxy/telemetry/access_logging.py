"""Telemetry `accessLogging` applied to this sidecar: per listener side, where each finished request's record
goes, as the workload's pushed WorkloadSecurity.telemetry.access_logs say (pilot merged them as Istio does:
services/pilot/compile/telemetry.py).

    AccessLogging(own, envoy, isthmus)
    .apply(security)          after each push: filters compiled once (kept across pushes while unchanged)
    .sink("outbound"|"inbound") -> OnComplete | None     what the listener's on_complete / access_log becomes

Sides: the outbound listeners (HTTP, CONNECT tunnels, --tcp) are Istio's CLIENT mode, the inbound ones SERVER.
For a side no AccessLogPolicy covers (no Telemetry accessLogging applies, or only entries for the other side)
the sidecar's own --access-log setting stands (`own`: None when off), as Istio falls back to
meshConfig.accessLogFile. Otherwise each covering entry that is not `disabled` is a sink: provider `envoy` the
sidecar's access log (its --access-log destination, else stdout: `envoy`), provider `isthmus` batches to the
telemetry service (proxy/telemetry/log_shipper.py); with a `filter`, only records for which the CEL expression
is true (proxy/telemetry/log_filter.py). A side whose entries are all disabled logs nothing (its on_complete
is None: no per-request cost). One unfiltered sink is called directly, without a dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proto.telemetry import MODE_CLIENT, MODE_CLIENT_AND_SERVER, MODE_SERVER, AccessLogPolicy
from proto.xds import WorkloadSecurity
from proxy.core.access import AccessRecord, OnComplete
from runtime.log import get_logger

if TYPE_CHECKING:  # cel-python (and lark) load only when a push brings a filter: a sidecar without
    # one does not carry them (~15 MB of RSS)
    from proxy.telemetry.log_filter import LogFilter

log = get_logger("proxy.access_log")
SIDES = {"outbound": MODE_CLIENT, "inbound": MODE_SERVER}
PROVIDERS = ("envoy", "isthmus")
SinkFor = Callable[[str], "OnComplete | None"]


class Dispatch:
    """Several sinks, or filtered ones: each record goes to the sinks whose filter (if any) admits it."""

    __slots__ = ("sinks",)

    def __init__(self, sinks: tuple[tuple[LogFilter | None, OnComplete], ...]) -> None:
        self.sinks = sinks

    def __call__(self, r: AccessRecord) -> None:
        for admit, sink in self.sinks:
            if admit is None or admit(r):
                sink(r)


class AccessLogging:
    def __init__(self, own: SinkFor, envoy: Callable[[str], OnComplete], isthmus: Callable[[str], OnComplete]) -> None:
        """`own(listener)`: the --access-log sink (None when off); `envoy(listener)`: the envoy provider's sink;
        `isthmus(listener)`: the shipper's."""
        self.own, self.envoy, self.isthmus = own, envoy, isthmus
        self.entries: list[AccessLogPolicy] = []
        self.filters: dict[str, LogFilter] = {}
        self.broken: dict[str, str] = {}  # expression -> why it does not compile (pilot should have refused it)

    def apply(self, security: WorkloadSecurity | None) -> None:
        policy = security.telemetry if security is not None else None
        self.entries = list(policy.access_logs) if policy is not None else []
        filters: dict[str, LogFilter] = {}
        broken: dict[str, str] = {}
        for entry in self.entries:
            expression = entry.filter
            if not expression or expression in filters or expression in broken:
                continue
            known = self.filters.get(expression)
            try:
                if known is None:
                    from proxy.telemetry.log_filter import LogFilter  # cel-python, loaded at the first filter
                    known = LogFilter(expression)
                filters[expression] = known
            except ValueError as exc:
                broken[expression] = str(exc)
                log.error("access log filter not applied: nothing is logged through it", error=str(exc))
        self.filters, self.broken = filters, broken

    def covering(self, listener: str) -> list[AccessLogPolicy]:
        side = SIDES[listener.split()[0]]
        return [e for e in self.entries if e.mode in (side, MODE_CLIENT_AND_SERVER)]

    def sink(self, listener: str) -> OnComplete | None:
        """What `listener` ("outbound" or "inbound") hands each finished record to; None: nothing to do."""
        entries = self.covering(listener)
        if not entries:
            return self.own(listener)
        sinks: list[tuple[LogFilter | None, OnComplete]] = []
        for entry in entries:
            if entry.disabled or entry.provider not in PROVIDERS or entry.filter in self.broken:
                continue
            sink = self.envoy(listener) if entry.provider == "envoy" else self.isthmus(listener)
            sinks.append((self.filters[entry.filter] if entry.filter else None, sink))
        if not sinks:
            return None
        if len(sinks) == 1 and sinks[0][0] is None:
            return sinks[0][1]
        return Dispatch(tuple(sinks))

    def dump(self) -> list[dict[str, object]]:
        """For /config_dump: the entries in force."""
        return [{"provider": e.provider, "mode": e.mode, "disabled": e.disabled, "filter": e.filter,
                 **({"filter_error": self.broken[e.filter]} if e.filter in self.broken else {})}
                for e in self.entries]

