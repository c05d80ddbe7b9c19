"""The control-plane services' own metrics (proto.observations.ServiceMetrics), merged into /metrics.

Each replica of each service publishes its prometheus-client exposition on
`TELEMETRY_SERVICE_METRICS.<service>` (runtime/metrics.py); nats-server lets only that service publish there.
The telemetry service keeps the latest exposition per (service, instance), read with prometheus_client's
parser, and writes every sample again with two more labels, `component` (the service) and `replica` (its
instance), so replicas never collide (Prometheus would rename an `instance` label of ours). An exposition
not refreshed for `stale_after` seconds is dropped (a replica that stopped).

Istio's control-plane counters have no `_total` suffix (istiod's exporter is set so): a family the parser
reads as untyped after a `# TYPE <name>_total counter` line is written back as a counter.

Bounds: `max_replicas` expositions held, `max_samples` samples per exposition (past it: refused and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from proto.observations import ServiceMetrics
from services.telemetry.istio import escape

RESERVED = ("component", "replica")
MAX_NAME = 253


class ExpositionRefused(ValueError):
    """A service's exposition that does not parse or passes a bound: logged and dropped."""


@dataclass
class _Family:
    type: str
    help: str
    samples: list[tuple[str, tuple[tuple[str, str], ...], float]]


@dataclass
class _Exposition:
    time: float
    families: dict[str, _Family]


def parse(text: str, max_samples: int) -> dict[str, _Family]:
    """Families by name; ExpositionRefused when the text cannot be read or holds more than max_samples."""
    families: dict[str, _Family] = {}
    count = 0
    try:
        for family in text_string_to_metric_families(text):
            known = families.get(family.name)
            kind = family.type if family.type != "unknown" or known is None else known.type
            if known is None:
                known = families[family.name] = _Family(kind, family.documentation, [])
            elif known.type == "unknown" or (family.type != "unknown" and not known.samples):
                known.type = family.type if family.type != "unknown" else known.type
            for sample in family.samples:
                count += 1
                if count > max_samples:
                    raise ExpositionRefused(f"more than {max_samples} samples")
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in RESERVED))
                known.samples.append((sample.name, labels, float(sample.value)))
    except ExpositionRefused:
        raise
    except Exception as exc:  # the parser raises ValueError and others on malformed text
        raise ExpositionRefused(f"not Prometheus text: {str(exc)[:200]}") from None
    return {name: f for name, f in families.items() if f.samples}


class ServiceMetricsMerge:
    def __init__(self, max_replicas: int = 256, max_samples: int = 20_000, stale_after: float = 60.0) -> None:
        self.max_replicas = max_replicas
        self.max_samples = max_samples
        self.stale_after = stale_after
        self.expositions: dict[tuple[str, str], _Exposition] = {}
        self.refused = 0

    def add(self, message: ServiceMetrics, subject_service: str, now: float) -> None:
        """Keep one exposition published on TELEMETRY_SERVICE_METRICS.<subject_service>; ExpositionRefused when
        the payload names another service, or is unreadable or too large, or one replica too many."""
        if message.service != subject_service:
            raise ExpositionRefused(f"payload names service {message.service[:80]!r}, published on the subject of "
                                    f"{subject_service!r}")
        if not (message.instance and len(message.instance) <= MAX_NAME and message.instance.isprintable()):
            raise ExpositionRefused("instance is empty, too long or not printable")
        key = (message.service, message.instance)
        if key not in self.expositions and len(self.expositions) >= self.max_replicas:
            self.refused += 1
            raise ExpositionRefused(f"{len(self.expositions)} replicas held already (max_replicas)")
        try:
            families = parse(message.text, self.max_samples)
        except ExpositionRefused:
            self.refused += 1
            raise
        self.expositions[key] = _Exposition(now, families)

    def expire(self, now: float) -> None:
        for key in [k for k, e in self.expositions.items() if now - e.time > self.stale_after]:
            del self.expositions[key]

    def render(self) -> list[str]:
        """Every family once (HELP and TYPE from the first replica that has it), samples sorted by
        (component, replica, name, labels)."""
        merged: dict[str, tuple[_Family, list[str]]] = {}
        for (service, instance) in sorted(self.expositions):
            for name, family in self.expositions[(service, instance)].families.items():
                entry = merged.setdefault(name, (family, []))
                for sample_name, labels, value in family.samples:
                    pairs = (("component", service), ("replica", instance), *labels)
                    text = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
                    entry[1].append(f"{sample_name}{{{text}}} {floatToGoString(value)}")
        lines: list[str] = []
        for name in sorted(merged):
            family, samples = merged[name]
            kind = family.type if family.type in ("counter", "gauge", "histogram", "summary") else "untyped"
            # prometheus-client's counters: samples <name>_total, and so the TYPE line in format 0.0.4
            title = f"{name}_total" if kind == "counter" and all(s[0] == f"{name}_total" for s in family.samples) \
                else name
            lines.append(f"# HELP {title} {family.help.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}")
            lines.append(f"# TYPE {title} {kind}")
            lines.extend(samples)
        return lines
