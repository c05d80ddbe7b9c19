"""Which Telemetry resources apply to a workload and what they merge into, as Istio's telemetry.go does.

    Telemetries(state).resolve(namespace, labels) -> Resolved(policy: TelemetryPolicy | None, revision)

Scoping (istio pilot/pkg/model/telemetry.go applicableTelemetries): the root namespace's oldest Telemetry
without selector (the mesh default), then the workload's namespace's oldest without selector (when that is
not the root namespace), then every Telemetry of the workload's namespace whose selector's matchLabels are a
subset of its labels, oldest first (creation revision, name). Later ones override earlier ones, field by field:
- tracing (Istio's Tracing()): each entry, for the sides its match.mode names (CLIENT outbound, SERVER inbound,
  both by default), sets what it sets: randomSamplingPercentage, disableSpanReporting, customTags (the whole
  map, a shallow merge as Istio's). One TracingPolicy when both sides agree (mode CLIENT_AND_SERVER); a side
  left at the mesh default is omitted (mode names the other); both different: `tracing` CLIENT and
  `tracing_server` SERVER.
- accessLogging (Istio's mergeLogs, per side): the providers of the most specific entries that name some
  are the ones in scope; an entry without providers means its parent's (the mesh default: `envoy`, as Istio
  with meshConfig.defaultProviders.accessLogging [envoy]); per provider the last entry decides on/off
  (`disabled`), its filter is the one of the last entry that named it. A side no entry covers keeps the
  sidecar's own --access-log (Istio's fallback to meshConfig.accessLogFile): its AccessLogPolicy list has no
  entry for that side.
Built once per compile; resolve() is memoized per (namespace, labels).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from proto.telemetry import MODE_CLIENT, MODE_CLIENT_AND_SERVER, MODE_SERVER, AccessLogging, AccessLogPolicy, \
    TelemetryPolicy, Tracing, TracingPolicy
from services.pilot.compile.state import MeshState, Stored

DEFAULT_ACCESS_LOG_PROVIDERS = ("envoy",)  # a provider-less accessLogging entry's providers at the top
SIDES = (MODE_CLIENT, MODE_SERVER)


class Resolved(NamedTuple):
    policy: TelemetryPolicy | None = None
    revision: int = 0  # the highest mod revision of the Telemetries that apply


NONE = Resolved()


class Telemetries:
    """The state's Telemetry resources, indexed by namespace, oldest first."""

    def __init__(self, state: MeshState) -> None:
        self.root = state.root_namespace
        self.by_namespace: dict[str, list[Stored]] = {}
        for stored in sorted(state.resources.get("Telemetry", {}).values(), key=lambda stored: stored.policy_order):
            self.by_namespace.setdefault(stored.resource.metadata.namespace, []).append(stored)
        self._memo: dict[tuple[str, frozenset[tuple[str, str]]], Resolved] = {}

    def resolve(self, namespace: str, labels: dict[str, str]) -> Resolved:
        if not self.by_namespace:
            return NONE
        key = (namespace, frozenset(labels.items()))
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._resolve(namespace, labels)
        return found

    def applying(self, namespace: str, labels: dict[str, str]) -> list[Stored]:
        """The Telemetries that apply to a workload, most general first."""
        out: list[Stored] = []
        for ns in dict.fromkeys((self.root, namespace)):
            wide = next((s for s in self.by_namespace.get(ns, ()) if not s.selector_labels), None)
            if wide is not None:
                out.append(wide)
        for stored in self.by_namespace.get(namespace, ()):
            selected = stored.selector_labels
            if selected and all(labels.get(k) == v for k, v in selected.items()):
                out.append(stored)
        return out

    def _resolve(self, namespace: str, labels: dict[str, str]) -> Resolved:
        applying = self.applying(namespace, labels)
        if not applying:
            return NONE
        tracing = [t for s in applying for t in s.resource.spec.tracing or []]
        logging = [s.resource.spec.access_logging for s in applying if s.resource.spec.access_logging]
        client, server = merge_tracing(tracing)
        policy = TelemetryPolicy(sources=[s.source for s in applying], tracing=client, tracing_server=server,
                                 access_logs=merge_access_logs(logging))
        return Resolved(policy, max(s.revision for s in applying))


# --- tracing ----------------------------------------------------------------------------------------------
def _sides(mode: str | None) -> tuple[str, ...]:
    return (mode,) if mode in SIDES else SIDES


def _tags(custom: dict[str, Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"custom_tags": {}, "header_tags": {}, "environment_tags": {}, "tag_defaults": {}}
    for name, tag in custom.items():  # validated: one of literal / header / environment
        if "literal" in tag:
            out["custom_tags"][name] = tag["literal"].get("value", "")
        elif "header" in tag:
            out["header_tags"][name] = tag["header"]["name"].lower()
        elif "environment" in tag:
            out["environment_tags"][name] = tag["environment"]["name"]
        kind = next(iter(tag))
        if kind != "literal" and tag[kind].get("defaultValue") is not None:
            out["tag_defaults"][name] = tag[kind]["defaultValue"]
    return out


def merge_tracing(entries: list[Tracing]) -> tuple[TracingPolicy | None, TracingPolicy | None]:
    """(tracing, tracing_server) of TelemetryPolicy for `entries`, most general first (module docstring)."""
    if not entries:
        return None, None
    specs: dict[str, dict[str, Any]] = {side: {} for side in SIDES}
    for entry in entries:
        for side in _sides(entry.match.mode if entry.match is not None else None):
            spec = specs[side]
            if entry.disable_span_reporting is not None:
                spec["report"] = not entry.disable_span_reporting
            if entry.custom_tags is not None:
                spec.update(_tags(entry.custom_tags))
            if entry.random_sampling_percentage is not None:
                spec["sampling_percent"] = float(entry.random_sampling_percentage)
    client, server = (TracingPolicy(mode=side, **specs[side]) for side in SIDES)
    default = TracingPolicy()
    if specs[MODE_CLIENT] == specs[MODE_SERVER]:
        return TracingPolicy(mode=MODE_CLIENT_AND_SERVER, **specs[MODE_CLIENT]), None
    if not specs[MODE_CLIENT] or TracingPolicy(**specs[MODE_CLIENT]) == default:
        return server, None
    if not specs[MODE_SERVER] or TracingPolicy(**specs[MODE_SERVER]) == default:
        return client, None
    return client, server


# --- access logging ---------------------------------------------------------------------------------------
def _matches(entry: AccessLogging, side: str) -> bool:
    mode = entry.match.mode if entry.match is not None else None
    return mode in (None, MODE_CLIENT_AND_SERVER) or mode == side


def _names(entry: AccessLogging) -> list[str]:
    return [p.name.lower() for p in entry.providers or [] if p.name]  # Istio matches names case-insensitively


def merge_logs(logs: list[list[AccessLogging]], side: str) -> dict[str, tuple[bool, str]]:
    """Istio's mergeLogs for one side: provider -> (disabled, filter expression). `logs`: each applying
    Telemetry's accessLogging, most general first; {} when no entry covers the side."""
    in_scope: list[str] = list(DEFAULT_ACCESS_LOG_PROVIDERS)
    filters: dict[str, str] = {}
    for entries in logs:
        names: dict[str, None] = {}
        for entry in entries:
            if not _matches(entry, side):
                continue
            for name in _names(entry):
                names[name] = None
                filters[name] = (entry.filter.expression or "") if entry.filter is not None else ""
        if names:
            in_scope = list(names)
    providers: dict[str, tuple[bool, str]] = {}
    parent: list[str] = list(DEFAULT_ACCESS_LOG_PROVIDERS)
    for entries in logs:
        for entry in entries:
            names_here = _names(entry) or parent
            parent = names_here
            if not _matches(entry, side):
                continue
            for name in names_here:
                if name not in in_scope:  # a provider a more specific Telemetry replaced
                    continue
                providers[name] = (True, "") if entry.disabled else (False, filters.get(name, ""))
    return providers


def merge_access_logs(logs: list[list[AccessLogging]]) -> list[AccessLogPolicy]:
    """The AccessLogPolicy entries for both sides, by provider name; one CLIENT_AND_SERVER entry where the two
    sides agree."""
    if not logs:
        return []
    client, server = merge_logs(logs, MODE_CLIENT), merge_logs(logs, MODE_SERVER)
    out: list[AccessLogPolicy] = []
    for provider in sorted({*client, *server}):
        c, s = client.get(provider), server.get(provider)
        if c is not None and c == s:
            out.append(AccessLogPolicy(provider=provider, disabled=c[0], filter=c[1]))
            continue
        for side, spec in ((MODE_CLIENT, c), (MODE_SERVER, s)):
            if spec is not None:
                out.append(AccessLogPolicy(provider=provider, mode=side, disabled=spec[0], filter=spec[1]))
    return out
