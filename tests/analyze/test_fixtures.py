"""Every analyzer against the table of fixture files (tests/analyze/fixtures/<code>_*.yaml), as Istio's
analyzers_test.go: each file opens with a `kind: AnalyzeFixture` document listing the messages it must give
(`CODE Kind ns/name message-prefix`), nothing else, and the live data the analyzers see (`workloads`: the
registry's; `secrets`: the ca's [namespace, name]; a key that is absent is live data not read, so analyzers
needing it are skipped). `<code>_ok_*.yaml` is the negative case of `<code>_*.yaml`."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from isthmus.analyze import ALL, run
from isthmus.analyze.context import Inputs
from isthmus.analyze.messages import TYPES
from isthmus.analyze.sources import offline, read_files
from proto.registry import Workload

FIXTURES = Path(__file__).parent / "fixtures"
FILES = sorted(FIXTURES.glob("IST*.yaml"))


def load(path: Path) -> tuple[Inputs, list[str]]:
    text = path.read_text()
    header_text, _, body = text.partition("\n---\n")
    header = yaml.safe_load(header_text)
    assert header["kind"] == "AnalyzeFixture", path
    inputs = offline(read_files([(path.name, body)], "default"))
    if "workloads" in header:
        inputs.workloads = msgspec.convert(header["workloads"] or [], list[Workload])
        inputs.available.add("registry")
    if "secrets" in header:
        inputs.secrets = {tuple(s) for s in header["secrets"] or []}
        inputs.available.add("secrets")
    return inputs, list(header["expect"] or [])


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fixture_gives_exactly_the_expected_messages(path: Path) -> None:
    inputs, expected = load(path)
    got = [f"{m.code} {m.resource} {m.message}" for m in run(inputs).messages]
    unmatched = list(got)
    for want in expected:
        hit = next((g for g in unmatched if g.startswith(want)), None)
        assert hit is not None, f"{path.name}: expected {want!r}, got {got}"
        unmatched.remove(hit)
    assert not unmatched, f"{path.name}: unexpected {unmatched}"


def test_every_code_of_the_table_has_a_positive_and_a_negative_fixture() -> None:
    names = [p.name for p in FILES]
    for code in TYPES:
        if code == "IST0133":  # pilot's warnings only: tests/integration/test_analyze.py
            continue
        positive = [n for n in names if n.startswith(f"{code}_") and not n.startswith(f"{code}_ok_")]
        expected = [e for p in FILES for e in load(p)[1] if e.startswith(code)]
        assert expected, f"no fixture expects {code} ({positive})"
        assert any(n.startswith(f"{code}_ok_") for n in names) or code == "IST0131" and \
            any(n.startswith("IST0130_ok_") for n in names), f"no negative fixture for {code}"


def test_every_code_is_declared_by_an_analyzer_and_every_declared_code_is_in_the_table() -> None:
    declared = {code for analyzer in ALL for code in analyzer.codes}
    assert declared == set(TYPES)


def test_an_analyzer_missing_its_inputs_is_skipped_and_named() -> None:
    inputs, _ = load(FIXTURES / "IST0174_unknown_host.yaml")
    inputs.available.discard("registry")
    result = run(inputs)
    assert not result.messages
    assert "destinationrule.SubsetSelectPodAnalyzer (needs registry)" in result.skipped


def test_messages_of_other_namespaces_are_left_out_unless_all_are_asked() -> None:
    inputs, _ = load(FIXTURES / "IST0113_mtls.yaml")
    assert len(run(inputs, "default").messages) == 2
    assert run(inputs, "prod").messages == []
    assert len(run(inputs, None).messages) == 2


def test_of_two_documents_naming_one_resource_the_later_is_analyzed_as_applying_them_in_turn_leaves_it() -> None:
    vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n"
          "  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, subset: %s}}]}]\n")
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n"
          "  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n")
    files = read_files([("a.yaml", vs % "v1"), ("b.yaml", vs % "v2"), ("c.yaml", dr)], "default")
    messages = run(offline(files)).messages
    assert [(m.code, m.origin, m.message) for m in messages] == [
        ("IST0101", "b.yaml", 'Referenced host+subset in destinationrule not found: "reviews+v2"')]


def test_the_mesh_wide_peer_authentication_is_the_root_namespaces() -> None:
    inputs, _ = load(FIXTURES / "IST0113_mtls.yaml")
    inputs.root_namespace = "mesh-root"  # ISTHMUS_ROOT_NAMESPACE: istio-system/mesh is then a namespace's policy
    assert [m.resource for m in run(inputs).messages] == ["DestinationRule default/reviews"]
