"""services/pilot/validate/references.py: warnings for VirtualService subsets no DestinationRule defines."""

from __future__ import annotations

import textwrap

from services.pilot.validate import decode_documents
from services.pilot.validate.references import subset_warnings

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /v3}}]
    route: [{destination: {host: reviews, subset: v3}}]
    mirror: {host: reviews, subset: v4}
  - route: [{destination: {host: reviews, subset: v1}}]
  tcp:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v9}}]
"""
DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""


def load(*texts: str):
    resources, errors, _ = decode_documents("---\n".join(textwrap.dedent(t) for t in texts))
    assert errors == [], errors
    return resources


def test_a_virtual_service_is_warned_about_each_subset_no_stored_destination_rule_defines():
    warnings = subset_warnings(load(VS), load(DR))
    assert [(w.document, w.kind, w.name, w.path) for w in warnings] == [
        (1, "VirtualService", "reviews", "spec.http[0].route[0].destination.subset"),
        (1, "VirtualService", "reviews", "spec.http[0].mirror.subset"),
        (1, "VirtualService", "reviews", "spec.tcp[0].route[0].destination.subset"),
    ]
    assert "subset 'v3' of host reviews.default.svc.cluster.local is not defined" in warnings[0].message
    assert "503 (NC)" in warnings[0].message


def test_a_destination_rule_in_the_same_submission_counts_and_replaces_the_stored_one():
    defines_all = DR.replace("subsets: [{name: v1, labels: {version: v1}}]",
                             "subsets: [{name: v1}, {name: v3}, {name: v4}, {name: v9}]")
    assert subset_warnings(load(defines_all, VS), load(DR)) == []
    assert len(subset_warnings(load(VS), [])) == 4  # no DestinationRule at all: v1 too


def test_a_destination_rule_that_leaves_a_stored_routes_subset_undefined_is_warned_about():
    warnings = subset_warnings(load(DR), load(VS))
    assert {(w.kind, w.path) for w in warnings} == {("DestinationRule", "spec.subsets")}
    assert sorted(w.message.split("'")[1] for w in warnings) == ["v3", "v4", "v9"]
    assert "VirtualService default/reviews at spec.http[0].route[0].destination.subset" in warnings[0].message


def test_other_hosts_and_other_namespaces_do_not_define_the_subset():
    elsewhere = DR.replace("metadata: {name: reviews}", "metadata: {name: reviews, namespace: prod}")
    elsewhere = elsewhere.replace("{name: v1, labels: {version: v1}}", "{name: v1}, {name: v3}, {name: v4}, {name: v9}")
    assert len(subset_warnings(load(VS), load(DR, elsewhere))) == 3
