"""services/pilot/validate/telemetry.py: Istio's ValidateTelemetry and what Isthmus refuses, each with its path."""

from __future__ import annotations

import pytest

from runtime.settings import Settings
from tests.pilot.validate.documents import by_path, decode, paths


def _tm(spec: str, version: str = "v1") -> str:
    return f"""
apiVersion: telemetry.istio.io/{version}
kind: Telemetry
metadata: {{name: t, namespace: foo}}
spec: {spec}
"""


def test_istios_envoy_access_logs_task_telemetry_applies_unchanged():
    resources, errors, warnings = decode("""
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata:
      name: mesh-default
      namespace: istio-system
    spec:
      accessLogging:
        - providers:
          - name: envoy
    """)
    assert errors == [] and warnings == [] and len(resources) == 1


@pytest.mark.parametrize("version", ["v1", "v1alpha1"])
def test_every_supported_field_is_kept_as_written(version):
    (resource,), errors, warnings = decode(_tm("""
      selector: {matchLabels: {app: reviews}}
      tracing:
      - match: {mode: CLIENT}
        providers: [{name: zipkin}]
        randomSamplingPercentage: 12.5
        disableSpanReporting: false
        customTags:
          lit: {literal: {value: v}}
          hdr: {header: {name: x-user, defaultValue: anon}}
          env: {environment: {name: HOSTNAME, defaultValue: h}}
      accessLogging:
      - match: {mode: SERVER}
        providers: [{name: envoy}, {name: isthmus}]
        disabled: false
        filter: {expression: "response.code >= 400 && request.headers['x-debug'] == 'on'"}
    """, version))
    assert errors == [] and warnings == []
    spec = resource.spec
    assert spec.selector.match_labels == {"app": "reviews"}
    (tracing,) = spec.tracing
    assert (tracing.match.mode, tracing.providers[0].name, tracing.random_sampling_percentage,
            tracing.disable_span_reporting) == ("CLIENT", "zipkin", 12.5, False)
    assert tracing.custom_tags["hdr"] == {"header": {"name": "x-user", "defaultValue": "anon"}}
    (logging,) = spec.access_logging
    assert [p.name for p in logging.providers] == ["envoy", "isthmus"] and logging.match.mode == "SERVER"
    assert logging.filter.expression.startswith("response.code >= 400")


@pytest.mark.parametrize("spec, path, words", [
    ("{targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}}", "spec.targetRef", "targetRef"),
    ("{targetRefs: [{kind: Service, name: s}]}", "spec.targetRefs", "targetRef"),
    ("{metrics: [{providers: [{name: prometheus}]}]}", "spec.metrics", "metrics overrides"),
    ("{tracing: [{useRequestIdForTraceSampling: false}]}", "spec.tracing[0].useRequestIdForTraceSampling",
     "not supported"),
    ("{tracing: [{providers: [{name: opentelemetry}]}]}", "spec.tracing[0].providers[0].name", "built-in"),
    ("{tracing: [{providers: [{name: envoy}]}]}", "spec.tracing[0].providers[0].name", "zipkin, isthmus"),
    ("{tracing: [{providers: [{name: ''}]}]}", "spec.tracing[0].providers[0].name", "may not be empty"),
    ("{accessLogging: [{providers: [{name: stackdriver}]}]}", "spec.accessLogging[0].providers[0].name",
     "envoy, isthmus"),
    ("{accessLogging: [{providers: [{name: zipkin}]}]}", "spec.accessLogging[0].providers[0].name", "built-in"),
    ("{accessLogging: [{providers: [{}]}]}", "spec.accessLogging[0].providers[0].name", "may not be empty"),
    ("{tracing: [{randomSamplingPercentage: 100.01}]}", "spec.tracing[0].randomSamplingPercentage", "0..100"),
    ("{tracing: [{randomSamplingPercentage: -1}]}", "spec.tracing[0].randomSamplingPercentage", "0..100"),
    ("{tracing: [{match: {mode: BOTH}}]}", "spec.tracing[0].match.mode", "unsupported mode"),
    ("{accessLogging: [{match: {mode: client}}]}", "spec.accessLogging[0].match.mode", "unsupported mode"),
    ("{tracing: [{customTags: {t: {metadata: {kind: {pod: {}}}}}}]}", "spec.tracing[0].customTags[t].metadata",
     "not supported"),
    ("{tracing: [{customTags: {t: {literal: {value: ''}}}}]}", "spec.tracing[0].customTags[t].literal.value",
     "may not be empty"),
    ("{tracing: [{customTags: {t: {header: {defaultValue: x}}}}]}", "spec.tracing[0].customTags[t].header.name",
     "may not be empty"),
    ("{tracing: [{customTags: {t: {header: {name: 'a b'}}}}]}", "spec.tracing[0].customTags[t].header.name",
     "not a valid header name"),
    ("{tracing: [{customTags: {t: {environment: {name: ''}}}}]}",
     "spec.tracing[0].customTags[t].environment.name", "may not be empty"),
    ("{tracing: [{customTags: {t: {literal: {value: a}, header: {name: b}}}}]}", "spec.tracing[0].customTags[t]",
     "exactly one"),
    ("{tracing: [{customTags: {t: {}}}]}", "spec.tracing[0].customTags[t]", "exactly one"),
    ("{tracing: [{customTags: {t: null}}]}", "spec.tracing[0].customTags[t]", "nil value"),
    ("{tracing: [{customTags: {t: {literal: {value: a, name: b}}}}]}",
     "spec.tracing[0].customTags[t].literal.name", "not part of a literal tag"),
    ("{tracing: [{customTags: {'': {literal: {value: a}}}}]}", "spec.tracing[0].customTags[]", "may not be empty"),
    ("{accessLogging: [{filter: {expression: 'response.code >='}}]}", "spec.accessLogging[0].filter.expression",
     "valid CEL"),
    ("{accessLogging: [{filter: {expression: '  '}}]}", "spec.accessLogging[0].filter.expression", "empty"),
    ("{accessLogging: [{filter: {}}]}", "spec.accessLogging[0].filter.expression", "needs an `expression`"),
    ("{selector: {matchLabels: {'app': 'a*'}}}", "spec.selector.matchLabels[app]", "wildcard"),
    ("{accessLogging: [{providers: [{name: envoy}], format: json}]}", "spec.accessLogging[0].format",
     "not supported"),
    ("{tracing: [{disableContextPropagation: true}]}", "spec.tracing[0].disableContextPropagation", "not supported"),
])
def test_what_istio_or_isthmus_refuses_is_named_by_its_path(spec, path, words):
    resources, errors, _ = decode(_tm(spec))
    assert resources == []
    assert words in by_path(errors, path).message


def test_every_problem_is_reported_at_once():
    _, errors, _ = decode(_tm("""
      targetRef: {kind: Gateway, name: gw}
      metrics: [{}]
      tracing: [{randomSamplingPercentage: 101, providers: [{name: otel}]}]
      accessLogging: [{providers: [{name: x}], filter: {expression: "(("}}]
    """))
    assert paths(errors) == ["spec.targetRef", "spec.metrics", "spec.tracing[0].providers[0].name",
                             "spec.tracing[0].randomSamplingPercentage", "spec.accessLogging[0].providers[0].name",
                             "spec.accessLogging[0].filter.expression"]


@pytest.mark.parametrize("percent", [0, 0.0001, 100])
def test_sampling_bounds_are_inclusive(percent):
    _, errors, _ = decode(_tm(f"{{tracing: [{{randomSamplingPercentage: {percent}}}]}}"))
    assert errors == []


@pytest.mark.parametrize("spec, path", [
    ("{tracing: [{}, {}]}", "spec.tracing"),  # Istio: multiple tracing is not currently supported
    ("{tracing: [{providers: [{name: zipkin}, {name: isthmus}]}]}", "spec.tracing[0].providers"),
    ("{tracing: [{enableIstioTags: true}]}", "spec.tracing[0].enableIstioTags"),
    ("{selector: {}}", "spec.selector"),
])
def test_warnings_are_accepted_with_their_path(spec, path):
    resources, errors, warnings = decode(_tm(spec))
    assert errors == [] and len(resources) == 1
    assert by_path(warnings, path)


@pytest.mark.parametrize("expression", [
    "response.code >= 400", "request.method == 'GET'", "request.headers['user-agent'].startsWith('curl')",
    "connection.mtls && response.code != 200", "response.flags != '-'", "!(response.code in [200, 204])",
])
def test_istio_filter_expressions_compile(expression):
    _, errors, _ = decode(_tm(f'{{accessLogging: [{{filter: {{expression: "{expression}"}}}}]}}'))
    assert errors == []


@pytest.mark.parametrize("value, ok", [("0", True), ("100", True), ("1", True), ("100.5", False), ("-0.1", False),
                                       ("nan", False), ("one", False)])
def test_the_mesh_default_sampling_setting_is_a_percentage(monkeypatch, value, ok):
    monkeypatch.setenv("ISTHMUS_TRACE_SAMPLING", value)
    if ok:
        assert Settings.load().trace_sampling == float(value)
    else:
        with pytest.raises(ValueError, match="ISTHMUS_TRACE_SAMPLING"):
            Settings.load()


def test_the_mesh_default_sampling_is_istios_one_percent(monkeypatch):
    monkeypatch.delenv("ISTHMUS_TRACE_SAMPLING", raising=False)
    assert Settings.load().trace_sampling == 1.0


def test_the_yaml_in_docs_access_logs_applies():
    import pathlib
    import re
    text = (pathlib.Path(__file__).parents[3] / "docs" / "access-logs.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    for block in blocks:
        resources, errors, warnings = decode(block)
        assert errors == [] and warnings == [] and resources


def _tags(count: int, name_length: int = 4) -> str:
    return "{tracing: [{customTags: {" + ", ".join(
        f"t{'k' * (name_length - 4)}{i:03d}: {{literal: {{value: v}}}}" for i in range(count)) + "}}]}"


def test_custom_tags_at_the_bound_and_one_over():
    """Past the telemetry service's span bounds the sidecar's every span was refused (the bus batch dropped
    whole): pilot refuses such a Telemetry with its path."""
    from services.pilot.validate.telemetry import MAX_CUSTOM_TAGS, MAX_TAG_NAME

    resources, errors, _ = decode(_tm(_tags(MAX_CUSTOM_TAGS)))
    assert errors == [] and len(resources) == 1
    resources, errors, _ = decode(_tm(_tags(MAX_CUSTOM_TAGS + 1)))
    assert resources == [] and "at most 100" in by_path(errors, "spec.tracing[0].customTags").message
    assert decode(_tm(_tags(1, MAX_TAG_NAME)))[1] == []
    _, errors, _ = decode(_tm(_tags(1, MAX_TAG_NAME + 1)))
    assert "at most 256" in by_path(errors, f"spec.tracing[0].customTags[t{'k' * (MAX_TAG_NAME - 3)}000]").message


def test_a_span_with_the_most_custom_tags_pilot_takes_is_one_the_telemetry_service_takes():
    from proxy.core.request import RequestHead
    from proxy.core.target import Target
    from proxy.telemetry.sampling import CLIENT, SidePolicy
    from proxy.telemetry.spans import build_span, site_for
    from proxy.telemetry.trace_context import SpanContext
    from services.pilot.validate.telemetry import MAX_CUSTOM_TAGS, MAX_SPAN_TAGS, MAX_TAG_NAME
    from services.telemetry.traces import MAX_TAG_KEY, MAX_TAGS, check

    assert (MAX_SPAN_TAGS, MAX_TAG_NAME) == (MAX_TAGS, MAX_TAG_KEY)
    site = site_for(CLIENT, service="r", namespace="n", labels={"app": "r"}, workload="r", node_id="x",
                    address="10.0.0.1", service_port=80, domain_suffix="svc.cluster.local", mesh_id="cluster.local",
                    locality="eu/z/s")
    policy = SidePolicy(custom_tags={f"{'k' * (MAX_TAG_NAME - 3)}{i:03d}": "v" for i in range(MAX_CUSTOM_TAGS)})
    head = RequestHead("GET", "r", 80, "/", [(b"host", b"r"), (b"user-agent", b"u"), (b"x-request-id", b"i")],
                       client="10.0.0.2")
    span = build_span(site, policy, SpanContext("a" * 32, "b" * 16, "c" * 16, True), 1, 1, head,
                      Target("10.0.0.3", 80, "outbound|80||r.n.svc.cluster.local"), 503, "UF", 5)
    assert MAX_CUSTOM_TAGS + 21 == len(span.tags) <= MAX_TAGS  # every tag of its own (a zone, an error) and ours
    check(span)  # taken
