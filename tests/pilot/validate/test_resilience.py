"""services/pilot/validate/resilience.py and compile/resilience.py: HTTPRoute timeout, retries, fault."""

from __future__ import annotations

import textwrap

import pytest

from proto import xds
from services.pilot.compile.resilience import resilience
from services.pilot.validate import decode_documents
from services.pilot.validate.durations import parse_duration


def vs(route_fields: str):
    text = textwrap.dedent("""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: r, namespace: prod}
        spec:
          hosts: [reviews]
          http:
          - route:
            - destination: {host: reviews}
        """) + textwrap.indent(textwrap.dedent(route_fields), "    ")
    return decode_documents(text)


def error_at(errors, path: str) -> str:
    found = [e.message for e in errors if e.path == path]
    assert found, f"no error at {path}: {[(e.path, e.message) for e in errors]}"
    return found[0]


@pytest.mark.parametrize("text, ns", [
    ("1.5s", 1_500_000_000), ("250ms", 250_000_000), ("1m30s", 90_000_000_000), ("2h", 7_200_000_000_000),
    (".5s", 500_000_000), ("0", 0), ("10us", 10_000),
])
def test_durations_parse_as_go_and_istio_write_them(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["5", "1.5", "s", "1 s", "-1s", "1d", ""])
def test_malformed_durations_are_rejected(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_valid_timeout_retries_and_fault_are_accepted_and_compiled():
    resources, errors, warnings = vs("""
        timeout: 1.5s
        retries: {attempts: 3, perTryTimeout: 250ms, retryOn: "gateway-error,reset,409"}
        fault:
          delay: {fixedDelay: 100ms, percentage: {value: 10}}
          abort: {httpStatus: 503, percentage: {value: 50.5}}
        """)
    assert errors == [] and warnings == []
    compiled = resilience(resources[0].spec.http[0])
    assert compiled["timeout_ms"] == 1500
    assert compiled["retry"] == xds.RetryPolicy(attempts=3, per_try_timeout_ms=250,
                                                retry_on=["gateway-error", "reset", "retriable-status-codes"],
                                                status_codes=[409])
    assert compiled["fault"] == xds.FaultPolicy(delay_ms=100, delay_percent=10.0, abort_status=503,
                                                abort_percent=50.5)


def test_no_retries_compiles_to_none_so_the_proxy_applies_istios_default():
    resources, errors, _ = vs("")
    assert errors == []
    assert resilience(resources[0].spec.http[0]) == {"timeout_ms": None, "retry": None, "fault": None}
    assert xds.DEFAULT_RETRY.attempts == 2 and xds.DEFAULT_RETRY.status_codes == [503]


def test_attempts_zero_disables_retries_and_retry_on_unset_keeps_the_default_conditions():
    resources, _, _ = vs("retries: {attempts: 0}")
    assert resilience(resources[0].spec.http[0])["retry"] == xds.RetryPolicy(attempts=0)
    resources, _, _ = vs("retries: {attempts: 4}")
    retry = resilience(resources[0].spec.http[0])["retry"]
    assert retry.attempts == 4 and retry.retry_on == list(xds.DEFAULT_RETRY_ON) and retry.status_codes == [503]


def test_legacy_integer_percent_of_a_delay_is_used():
    resources, errors, _ = vs("fault: {delay: {fixedDelay: 1s, percent: 30}}")
    assert errors == []
    assert resilience(resources[0].spec.http[0])["fault"].delay_percent == 30.0


def test_zero_timeout_means_no_timeout():
    resources, errors, _ = vs("timeout: 0s")
    assert errors == []
    assert resilience(resources[0].spec.http[0])["timeout_ms"] is None


@pytest.mark.parametrize("fields, path, words", [
    ("timeout: 5", "spec.http[0].timeout", "expected a string"),
    ("timeout: '5'", "spec.http[0].timeout", "not a duration"),
    ("timeout: 500us", "spec.http[0].timeout", "at least 1ms"),
    ("timeout: 1.0005s", "spec.http[0].timeout", "ms precision"),
    ("retries: {attempts: -1}", "spec.http[0].retries.attempts", "negative"),
    ("retries: {attempts: 2, perTryTimeout: 0s}", "spec.http[0].retries.perTryTimeout", "at least 1ms"),
    ("retries: {attempts: 2, retryOn: '5xx,bogus'}", "spec.http[0].retries.retryOn", "`bogus` is not a valid"),
    ("retries: {attempts: 2, retryOn: '600'}", "spec.http[0].retries.retryOn", "not a valid HTTP status"),
    ("retries: {attempts: 2, retryOn: retriable-headers}", "spec.http[0].retries.retryOn", "not supported yet"),
    ("retries: {attempts: 2, retryRemoteLocalities: yes please}", "spec.http[0].retries.retryRemoteLocalities",
     "expected a boolean"),
    ("retries: {attempts: 2, backoff: 0s}", "spec.http[0].retries.backoff", "at least 1ms"),
    ("fault: {}", "spec.http[0].fault", "abort and/or a delay"),
    ("fault: {abort: {httpStatus: 700, percentage: {value: 1}}}", "spec.http[0].fault.abort.httpStatus",
     "invalid abort http status"),
    ("fault: {abort: {httpStatus: 503, percentage: {value: 101}}}", "spec.http[0].fault.abort.percentage.value",
     "not in range"),
    ("fault: {abort: {grpcStatus: UNAVAILABLE}}", "spec.http[0].fault.abort.grpcStatus",
     "not supported by Isthmus yet"),
    ("fault: {abort: {http2Error: REFUSED_STREAM}}", "spec.http[0].fault.abort.http2Error",
     "not supported by Isthmus yet"),
    ("fault: {delay: {exponentialDelay: 1s}}", "spec.http[0].fault.delay.exponentialDelay",
     "not supported by Isthmus yet"),
    ("fault: {delay: {fixedDelay: 1x, percentage: {value: 5}}}", "spec.http[0].fault.delay.fixedDelay",
     "not a duration"),
])
def test_bad_or_unsupported_resilience_fields_are_errors_at_their_path(fields, path, words):
    resources, errors, _ = vs(fields)
    assert resources == []
    assert words in error_at(errors, path)


def test_a_fault_without_percentage_injects_nothing_and_says_so():
    resources, errors, warnings = vs("fault: {abort: {httpStatus: 503}}")
    assert errors == [] and [w.path for w in warnings] == ["spec.http[0].fault.abort"]
    assert resilience(resources[0].spec.http[0])["fault"].abort_percent == 0.0


def test_retry_backoff_and_host_and_locality_flags_compile():
    resources, errors, _ = vs("retries: {attempts: 3, backoff: 100ms, retryRemoteLocalities: true, "
                              "retryIgnorePreviousHosts: false}")
    assert errors == []
    retry = resilience(resources[0].spec.http[0])["retry"]
    assert (retry.backoff_ms, retry.remote_localities, retry.ignore_previous_hosts) == (100, True, False)
    resources, _, _ = vs("retries: {attempts: 3}")
    retry = resilience(resources[0].spec.http[0])["retry"]
    assert (retry.backoff_ms, retry.remote_localities, retry.ignore_previous_hosts) == (0, False, True)


def test_a_retry_budget_takes_istios_shape_a_plain_percent():
    """Istio's retryBudget.percent is a DoubleValue (a plain number), not a Percent message."""
    resources, errors = decode_documents(textwrap.dedent("""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: r}
        spec:
          host: reviews
          trafficPolicy:
            retryBudget: {percent: {value: 20}, minRetryConcurrency: 3}
        """))[:2]
    assert resources == []
    assert "expected a number" in error_at(errors, "spec.trafficPolicy.retryBudget.percent")
