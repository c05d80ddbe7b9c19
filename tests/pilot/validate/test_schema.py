"""services/pilot/validate/schema.py: every field of a document against its msgspec Struct, each problem
with its path."""

from __future__ import annotations

import msgspec
import pytest

from proto.resources import VirtualService
from services.pilot.validate.schema import from_msgspec_error
from tests.pilot.validate.documents import GOOD_VS, by_path, decode, paths


def test_a_weight_written_as_a_string_is_an_error_at_its_field_path():
    _, errors, _ = decode(GOOD_VS.replace("weight: 80", 'weight: "80"'))
    error = by_path(errors, "spec.http[1].route[0].weight")
    assert "integer" in error.message and '"80"' in error.message
    assert (error.document, error.kind, error.name, error.namespace) == (1, "VirtualService", "reviews", "prod")


def test_an_unsupported_field_is_named_with_its_path():
    text = GOOD_VS.replace("  - route:\n    - destination: {host: reviews, subset: v1}",
                           "  - retries: {attempts: 2, hedgingPolicy: true}\n    route:\n"
                           "    - destination: {host: reviews, subset: v1}")
    resources, errors, _ = decode(text)
    assert resources == []
    error = by_path(errors, "spec.http[1].retries.hedgingPolicy")
    assert error.message == "field `hedgingPolicy` is not supported by Isthmus yet (or is misspelled)"


def test_a_misspelled_field_gets_a_suggestion():
    _, errors, _ = decode(GOOD_VS.replace("hosts: [reviews]", "hots: [reviews]"))
    assert "did you mean `hosts`" in by_path(errors, "spec.hots").message


def test_shape_errors_in_one_document_are_all_reported():
    text = GOOD_VS.replace("weight: 80", 'weight: "80"').replace("weight: 20", "weight: [20]")
    _, errors, _ = decode(text.replace("subset: v2}", "subset: v2, colour: red}"))
    assert {"spec.http[1].route[0].weight", "spec.http[1].route[1].weight",
            "spec.http[0].route[0].destination.colour"} <= set(paths(errors))


def test_msgspec_errors_translate_to_paths_without_the_dollar_prefix():
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "a"},
           "spec": {"hosts": ["a"], "http": [{"fault": {"abort": {"grpcStatus": "UNAVAILABLE"}}, "route": []}]}}
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(doc, type=VirtualService)
    assert from_msgspec_error(info.value) == (
        "spec.http[0].fault.abort.grpcStatus", "field `grpcStatus` is not supported by Isthmus yet (or is misspelled)")
    doc["spec"]["http"][0] = {"route": [{"destination": {"host": "a"}, "weight": "80"}]}
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(doc, type=VirtualService)
    path, message = from_msgspec_error(info.value)
    assert path == "spec.http[0].route[0].weight" and message.startswith("expected")
