"""Semantic checks of a Telemetry (`telemetry.istio.io` v1/v1alpha1): Istio's ValidateTelemetry
(pkg/config/validation/validation.go: validateTelemetryTracing, validateTelemetryAccessLogging,
validateTelemetryProviders, validateTelemetryFilter) and what Isthmus does not support, each problem with its
path (spec.tracing[0].randomSamplingPercentage).

    telemetry(spec, f)

Errors, as Istio's: a provider without a name; randomSamplingPercentage outside 0..100; a custom tag with an
empty name, without a value, a literal without `value`, a header or environment tag without `name`; a filter
expression that is not CEL (Istio parses it with cel-go; we compile it with cel-python, as the sidecar does).
Errors where Isthmus supports less than Istio: targetRef/targetRefs (a `selector` picks workloads); `metrics`
(Istio's metric overrides: Isthmus reports Istio's standard metrics unchanged); useRequestIdForTraceSampling;
a provider other than the built-in ones (tracing: `zipkin` and `isthmus`, both the telemetry service; access
logging: `envoy`, the sidecar's own log, and `isthmus`, batches to the telemetry service: docs/access-logs.md);
a custom tag that is not one of literal / header / environment; a match mode other than CLIENT_AND_SERVER,
CLIENT, SERVER; the selector's rules (checks.check_selector).
Warnings, as Istio's: more than one tracing entry, more than one provider in one; and enableIstioTags, which
Isthmus accepts and ignores.
"""

from __future__ import annotations

from typing import Any

import celpy

from proto.telemetry import MODE_CLIENT, MODE_CLIENT_AND_SERVER, MODE_SERVER, AccessLogging, ProviderRef, \
    TelemetrySpec, Tracing
from services.pilot.validate.checks import HEADER_NAME, check_percent, check_selector
from services.pilot.validate.findings import Findings

# Bounds the telemetry service puts on a span (services/telemetry/traces.py MAX_TAGS, MAX_TAG_KEY): a Telemetry
# past them made every span of its workloads refused, their bus batches dropped whole. The sidecar sets at most
# 21 tags of its own (proxy/telemetry/spans.py; tests/pilot/validate/test_telemetry.py checks the sum).
MAX_SPAN_TAGS = 128
MAX_CUSTOM_TAGS = 100
MAX_TAG_NAME = 256

TRACING_PROVIDERS = ("zipkin", "isthmus")  # both: spans in batches to the telemetry service
ACCESS_LOG_PROVIDERS = ("envoy", "isthmus")  # the sidecar's own log; batches to the telemetry service
MODES = (MODE_CLIENT_AND_SERVER, MODE_CLIENT, MODE_SERVER)
TAG_KINDS = ("literal", "header", "environment")
_CEL = celpy.Environment()


def filter_problem(expression: str) -> str | None:
    """Why `expression` is not a CEL expression the sidecar can evaluate, or None."""
    if not expression.strip():
        return "filter expression must not be empty"
    try:
        _CEL.compile(expression)
    except Exception as exc:  # celpy raises CELParseError, and lark errors on odd input: all mean "not CEL"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"must be a valid CEL expression: {first}"
    return None


def telemetry(spec: TelemetrySpec, f: Findings) -> None:
    for field, value in (("targetRef", spec.target_ref), ("targetRefs", spec.target_refs)):
        if value is not None:
            f.error(f"spec.{field}", "targetRef/targetRefs (Gateway API attachment) are not supported by Isthmus: "
                                     "a `selector.matchLabels` picks the workloads (or none: the whole namespace)")
    if spec.metrics is not None:
        f.error("spec.metrics", "metrics overrides are not supported by Isthmus: sidecars report Istio's standard "
                                "metrics with their standard labels (docs/observability.md)")
    check_selector(spec.selector, f)
    tracing = spec.tracing or []
    if len(tracing) > 1:
        f.warn("spec.tracing", "multiple tracing is not currently supported: the entries are merged in order, "
                               "the last setting of each field winning (as in Istio)")
    for i, entry in enumerate(tracing):
        _tracing(entry, f"spec.tracing[{i}]", f)
    for i, logging in enumerate(spec.access_logging or []):
        _access_logging(logging, f"spec.accessLogging[{i}]", f)


def _mode(mode: str | None, path: str, f: Findings) -> None:
    if mode is not None and mode not in MODES:
        f.error(path, f"unsupported mode `{mode}` (one of {', '.join(MODES)})")


def _providers(providers: list[ProviderRef] | None, known: tuple[str, ...], path: str, f: Findings) -> None:
    for k, provider in enumerate(providers or []):
        here = f"{path}[{k}].name"
        if not provider.name:
            f.error(here, "providers.name may not be empty")
        elif provider.name.lower() not in known:  # Istio finds providers by name case-insensitively
            f.error(here, f"provider `{provider.name}` is not one of Isthmus's built-in providers "
                          f"({', '.join(known)}); Isthmus has no meshConfig.extensionProviders")


def _tracing(entry: Tracing, path: str, f: Findings) -> None:
    if entry.match is not None:
        _mode(entry.match.mode, f"{path}.match.mode", f)
    _providers(entry.providers, TRACING_PROVIDERS, f"{path}.providers", f)
    if len(entry.providers or []) > 1:
        f.warn(f"{path}.providers", "multiple providers is not currently supported: the first is used")
    if entry.random_sampling_percentage is not None:
        check_percent(entry.random_sampling_percentage, f"{path}.randomSamplingPercentage", f)
    if entry.use_request_id_for_trace_sampling is not None:
        f.error(f"{path}.useRequestIdForTraceSampling", "useRequestIdForTraceSampling is not supported by Isthmus: "
                                                        "a request without a sampling decision is sampled at random")
    if entry.enable_istio_tags is not None:
        f.warn(f"{path}.enableIstioTags", "enableIstioTags is accepted and ignored by Isthmus")
    tags = entry.custom_tags or {}
    if len(tags) > MAX_CUSTOM_TAGS:
        f.error(f"{path}.customTags", f"{len(tags)} custom tags; at most {MAX_CUSTOM_TAGS} (the telemetry service "
                                      f"refuses a span with more than {MAX_SPAN_TAGS} tags, and the sidecar sets up "
                                      f"to {MAX_SPAN_TAGS - MAX_CUSTOM_TAGS} of its own)")
    for name, tag in tags.items():
        _custom_tag(name, tag, f"{path}.customTags[{name}]", f)


def _custom_tag(name: str, tag: Any, path: str, f: Findings) -> None:
    if name == "":
        f.error(path, "tag name may not be empty")
    elif len(name) > MAX_TAG_NAME:
        f.error(path, f"tag name is {len(name)} characters; at most {MAX_TAG_NAME} (the telemetry service refuses a "
                      "span with a longer tag key)")
    if tag is None:
        f.error(path, f"tag '{name}' may not have a nil value")
        return
    if not isinstance(tag, dict):
        f.error(path, f"tag '{name}' must be an object with one of {', '.join(TAG_KINDS)}")
        return
    for key in tag:
        if key not in TAG_KINDS:
            f.error(f"{path}.{key}", f"custom tag `{key}` is not supported by Isthmus (one of {', '.join(TAG_KINDS)})")
    given = [k for k in TAG_KINDS if k in tag]
    if len(given) != 1:
        if not [k for k in tag if k not in TAG_KINDS]:
            f.error(path, f"tag '{name}' needs exactly one of {', '.join(TAG_KINDS)} (found {len(given)})")
        return
    kind = given[0]
    body = tag[kind]
    if not isinstance(body, dict):
        f.error(f"{path}.{kind}", f"a {kind} tag is an object")
        return
    allowed = ("value",) if kind == "literal" else ("name", "defaultValue")
    for key, value in body.items():
        if key not in allowed:
            f.error(f"{path}.{kind}.{key}", f"field `{key}` is not part of a {kind} tag ({', '.join(allowed)})")
        elif not isinstance(value, str):
            f.error(f"{path}.{kind}.{key}", f"expected a string, got {type(value).__name__}")
    if kind == "literal" and not body.get("value"):
        f.error(f"{path}.literal.value", "literal tag value may not be empty")
    elif kind != "literal":
        tag_name = body.get("name")
        if not tag_name:
            f.error(f"{path}.{kind}.name", f"{kind} tag name may not be empty")
        elif kind == "header" and isinstance(tag_name, str) and not HEADER_NAME.match(tag_name):
            f.error(f"{path}.header.name", f"`{tag_name}` is not a valid header name")


def _access_logging(logging: AccessLogging, path: str, f: Findings) -> None:
    if logging.match is not None:
        _mode(logging.match.mode, f"{path}.match.mode", f)
    _providers(logging.providers, ACCESS_LOG_PROVIDERS, f"{path}.providers", f)
    if logging.filter is not None:
        expression = logging.filter.expression
        if expression is None:
            f.error(f"{path}.filter.expression", "filter needs an `expression` (CEL), e.g. `response.code >= 400`")
        else:
            problem = filter_problem(expression)
            if problem:
                f.error(f"{path}.filter.expression", problem)
