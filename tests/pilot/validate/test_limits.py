"""ConfigLimits: each limit refuses one over it, by name and path, and accepts one at it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from runtime.settings import ConfigLimits
from services.pilot.decode_worker import DecodeWorker
from services.pilot.validate import decode_documents
from runtime.doc_limits import LimitExceeded, allowed_alias_ratio, check_tree, check_yaml
from runtime.documents import YamlLoader

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def header_bomb() -> str:
    """A VirtualService of under a kilobyte that expands to 30 routes x 30 matches x 30 headers."""
    headers = "{" + ", ".join(f"h{i}: {{exact: v}}" for i in range(30)) + "}"
    return (f"x: &m {{headers: {headers}}}\n"
            f"y: &r {{match: [{', '.join(['*m'] * 30)}], route: [{{destination: {{host: reviews}}}}]}}\n"
            + VS.replace("  http:\n  - route:\n    - destination: {host: reviews}\n",
                         f"  http: [{', '.join(['*r'] * 30)}]\n"))


def limited(**kw: object) -> ConfigLimits:
    return ConfigLimits(**kw)  # type: ignore[arg-type]


def refused(text: str, limits: ConfigLimits) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        check_yaml(text, YamlLoader, limits)
    return info.value


def test_billion_laughs_is_refused_as_excessive_aliasing_without_expanding_it() -> None:
    began = time.monotonic()
    resources, errors, _ = decode_documents(billion_laughs())
    assert time.monotonic() - began < 1.0
    assert not resources and len(errors) == 1
    assert "excessive aliasing" in errors[0].message and errors[0].document == 1


def test_a_small_alias_bomb_of_header_matches_is_refused_before_it_is_built() -> None:
    text = header_bomb()
    assert len(text) < 1000
    resources, errors, _ = decode_documents(text)
    assert not resources and "aliasing" in errors[0].message, errors


def test_aliases_that_repeat_a_part_a_few_times_are_fine() -> None:
    text = VS.replace("    - destination: {host: reviews}\n",
                      "    - destination: &d {host: reviews}\n  - route:\n    - destination: *d\n")
    resources, errors, _ = decode_documents(text)
    assert not errors and len(resources) == 1


def test_go_yaml_alias_ratio_scales_from_99_to_10_percent() -> None:
    assert allowed_alias_ratio(1000) == 0.99
    assert allowed_alias_ratio(4_000_000) == pytest.approx(0.10)
    assert 0.10 < allowed_alias_ratio(2_000_000) < 0.99


def test_an_alias_to_the_node_that_contains_it_is_refused() -> None:
    error = refused("a: &a [1, *a]\n", ConfigLimits())
    assert "recursive" in error.message and error.path == "a[1]"


def test_nesting_at_the_limit_passes_and_one_deeper_is_refused_with_its_path() -> None:
    limits = limited(max_depth=4)
    check_yaml("a: {b: {c: [1]}}\n", YamlLoader, limits)  # four levels: the top mapping, a, b, c
    error = refused("a: {b: {c: [[1]]}}\n", limits)
    assert "ISTHMUS_CONFIG_MAX_DEPTH" in error.message and error.path == "a.b.c[0]"


def test_an_alias_counts_the_depth_of_what_it_stands_for() -> None:
    error = refused("x: &x [[1]]\na: {b: *x}\n", limited(max_depth=3))
    assert "ISTHMUS_CONFIG_MAX_DEPTH" in error.message


def test_list_length_at_the_limit_passes_and_one_more_item_is_refused() -> None:
    limits = limited(max_items=5)
    check_yaml("spec: {hosts: [a, b, c, d, e]}\n", YamlLoader, limits)
    error = refused("spec: {hosts: [a, b, c, d, e, f]}\n", limits)
    assert "more than 5 items in one list (ISTHMUS_CONFIG_MAX_ITEMS)" in error.message
    assert error.path == "spec.hosts[5]"


def test_mapping_entries_count_against_the_item_limit() -> None:
    limits = limited(max_items=2)
    check_yaml("a: 1\nb: 2\n", YamlLoader, limits)
    assert "entries in one mapping" in refused("a: 1\nb: 2\nc: 3\n", limits).message


def test_expanded_nodes_at_the_limit_pass_and_one_more_is_refused() -> None:
    limits = limited(max_nodes=8)  # the mapping, two keys, a scalar, the list, three items
    check_yaml("a: 1\nb: [1, 2, 3]\n", YamlLoader, limits)
    assert "ISTHMUS_CONFIG_MAX_NODES" in refused("a: 1\nb: [1, 2, 3, 4]\n", limits).message


def test_document_count_at_the_limit_passes_and_one_more_is_refused() -> None:
    limits = limited(max_documents=2)
    _, errors, _ = decode_documents(VS + "---\n" + VS.replace("reviews}", "ratings}"), limits=limits)
    assert not errors
    _, errors, _ = decode_documents("---\n".join([VS] * 3), limits=limits)
    assert "ISTHMUS_CONFIG_MAX_DOCUMENTS" in errors[0].message and errors[0].document == 3


def test_a_list_of_items_counts_against_the_document_limit() -> None:
    item = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"},
            "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}}]}]}}
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [item] * 3})
    _, errors, _ = decode_documents(text, limits=limited(max_documents=2))
    assert "ISTHMUS_CONFIG_MAX_DOCUMENTS" in errors[0].message


def test_size_at_the_limit_passes_and_one_byte_more_is_refused() -> None:
    text = "a: " + "x" * 97  # 100 characters
    check_yaml(text, YamlLoader, limited(max_bytes=100))
    assert "ISTHMUS_CONFIG_MAX_BYTES" in refused(text + "x", limited(max_bytes=100)).message


def test_json_is_held_to_the_same_limits() -> None:
    check_tree({"a": [1, 2]}, limited(max_items=2))
    with pytest.raises(LimitExceeded, match="ISTHMUS_CONFIG_MAX_ITEMS") as info:
        check_tree({"a": [1, 2, 3]}, limited(max_items=2))
    assert info.value.path == "a"
    with pytest.raises(LimitExceeded, match="ISTHMUS_CONFIG_MAX_DEPTH"):
        check_tree({"a": {"b": {"c": 1}}}, limited(max_depth=2))


def test_json_nested_past_the_interpreter_stack_is_a_depth_error_not_a_crash() -> None:
    _, errors, _ = decode_documents("[" * 100_000 + "]" * 100_000)
    assert "ISTHMUS_CONFIG_MAX_DEPTH" in errors[0].message


def test_the_decode_worker_gives_up_after_its_timeout_and_serves_the_next_submission() -> None:
    async def run() -> None:
        worker = DecodeWorker(limited(decode_timeout=0.05, max_nodes=10_000_000, max_items=10_000_000))
        try:
            await worker.start()
            slow = "hosts: [" + ", ".join(["a"] * 400_000) + "]\n"
            _, errors, _ = await worker.decode(slow)
            assert "ISTHMUS_CONFIG_DECODE_TIMEOUT" in errors[0].message, errors
            worker.limits = ConfigLimits()
            resources, errors, _ = await worker.decode(VS)
            assert not errors and resources[0].metadata.name == "reviews"
        finally:
            worker.close()

    asyncio.run(run())


def test_the_decode_worker_refuses_a_submission_past_its_memory_bound_and_serves_the_next() -> None:
    async def run() -> None:
        worker = DecodeWorker(limited(decode_memory_mb=150, max_bytes=100_000_000, max_nodes=10_000_000,
                                      max_items=10_000_000))
        try:
            await worker.start()
            hungry = "[" + ", ".join(['"abcdefgh"'] * 1_500_000) + "]"
            _, errors, _ = await worker.decode(hungry)
            assert "more than 150 MiB (ISTHMUS_CONFIG_DECODE_MEMORY_MB)" in errors[0].message, errors
            resources, errors, _ = await worker.decode(VS)
            assert not errors and resources[0].metadata.name == "reviews"
        finally:
            worker.close()

    asyncio.run(run())


# ------------------------------------------------------------ what PyYAML would build wrongly or not at all

DUP_VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  hosts: [dupreviews]
"""


def test_a_duplicate_yaml_key_is_refused_with_its_path_not_kept_last_wins() -> None:
    from services.pilot.validate import decode_documents

    resources, errors, _ = decode_documents(DUP_VS)
    assert resources == []
    [error] = errors
    assert (error.document, error.path) == (1, "spec.hosts")
    assert error.message == "mapping key 'hosts' already defined"


def test_a_duplicate_json_key_is_refused_with_its_path() -> None:
    from services.pilot.validate import decode_documents

    text = ('{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"}, '
            '"spec": {"hosts": ["reviews"], "hosts": ["dupreviews"]}}')
    resources, errors, _ = decode_documents(text)
    assert resources == []
    assert [(e.path, e.message) for e in errors] == [("spec.hosts", "mapping key 'hosts' already defined")]


def test_the_same_key_in_sibling_mappings_and_merge_keys_are_not_duplicates() -> None:
    check_yaml("a: {x: 1}\nb: {x: 2}\nbase: &b {y: 1}\nc:\n  <<: *b\n  y: 2\n", YamlLoader, ConfigLimits())


def test_an_integer_too_long_to_convert_is_refused_with_its_path_and_one_at_the_limit_passes() -> None:
    from runtime.doc_limits import MAX_INT_DIGITS

    check_yaml(f"spec: {{n: {'9' * MAX_INT_DIGITS}}}\n", YamlLoader, ConfigLimits())
    with pytest.raises(LimitExceeded) as info:
        check_yaml(f"spec:\n  http:\n  - weight: {'9' * (MAX_INT_DIGITS + 1)}\n", YamlLoader, ConfigLimits())
    assert info.value.path == "spec.http[0].weight"
    assert "integer too large" in info.value.message
    check_yaml(f"spec: {{n: '{'9' * (MAX_INT_DIGITS + 1)}'}}\n", YamlLoader, ConfigLimits())  # a string: fine
