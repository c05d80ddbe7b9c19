"""services/pilot/validate/virtual_service.py: destinations, weights, matches and unreachable rules."""

from __future__ import annotations

from tests.pilot.validate.documents import GOOD_VS, by_path, decode


def test_weights_that_sum_to_zero_are_rejected_as_istio_does():
    text = GOOD_VS.replace("weight: 80", "weight: 0").replace("weight: 20", "weight: 0")
    _, errors, _ = decode(text)
    assert "total destination weight = 0" in by_path(errors, "spec.http[1].route").message


def test_weights_not_summing_to_100_are_relative_and_only_warned_about():
    resources, errors, warnings = decode(GOOD_VS.replace("weight: 20", "weight: 40"))
    assert errors == [] and len(resources) == 1
    assert "sum to 120" in by_path(warnings, "spec.http[1].route").message


def test_a_destination_without_weight_next_to_weighted_ones_is_a_warning():
    resources, errors, warnings = decode(GOOD_VS.replace("\n      weight: 20", ""))
    assert errors == [] and len(resources) == 1
    assert "no traffic" in by_path(warnings, "spec.http[1].route").message


def test_a_route_needs_at_least_one_destination():
    text = GOOD_VS.replace("    route:\n    - destination: {host: reviews, subset: v2}", "    route: []")
    _, errors, _ = decode(text)
    assert "HTTP route, redirect or direct_response is required" in by_path(errors, "spec.http[0].route").message


def test_a_string_match_needs_exactly_one_of_exact_prefix_regex():
    _, errors, _ = decode(GOOD_VS.replace("headers: {end-user: {exact: jason}}", "method: {}"))
    assert "one of `exact`, `prefix` or `regex`" in by_path(errors, "spec.http[0].match[0].method").message
    _, errors, _ = decode(GOOD_VS.replace("{exact: jason}", "{exact: jason, prefix: ja}"))
    assert "only one of" in by_path(errors, "spec.http[0].match[0].headers[end-user]").message


def test_a_regex_python_would_accept_but_re2_rejects_is_an_error():
    _, errors, _ = decode(GOOD_VS.replace("{exact: jason}", "{regex: '(?!bot).*'}"))
    assert "RE2" in by_path(errors, "spec.http[0].match[0].headers[end-user].regex").message


def test_an_upper_case_header_name_is_accepted_with_a_warning():
    resources, errors, warnings = decode(GOOD_VS.replace("end-user:", "End-User:"))
    assert errors == [] and len(resources) == 1
    assert "`end-user`" in by_path(warnings, "spec.http[0].match[0].headers[End-User]").message


def test_a_rule_after_a_catch_all_rule_is_flagged_as_unreachable():
    text = GOOD_VS + "  - route:\n    - destination: {host: ratings}\n"
    _, errors, warnings = decode(text)
    assert errors == []
    assert "not used" in by_path(warnings, "spec.http[2]").message
