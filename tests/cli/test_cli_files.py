"""The CLI's input side without a bus: reading -f sources, kind aliases, refs for delete, output
shapes, exit codes. Commands that would talk to pilot get a fake `with_bus` that records the request."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from click.testing import CliRunner

from isthmus import cli, pilot_client
from isthmus.cli import CliError, collect_refs, join_documents, read_manifests, render_output, render_table, resolve_kind
from isthmus.launch import free_port
from proto.config_api import AppliedResource, ApplyReply, ConfigError, GetReply, ResourceRef

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------- -f


def test_a_file_source_is_read_whole(tmp_path: Path) -> None:
    f = write(tmp_path / "vs.yaml", VS)
    assert read_manifests([str(f)]) == [(str(f), VS)]


def test_a_directory_source_reads_yaml_yml_and_json_files_sorted_and_ignores_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "b.yml", "b: 1\n")
    write(tmp_path / "a.yaml", "a: 1\n")
    write(tmp_path / "c.json", '{"c": 1}')
    write(tmp_path / "notes.txt", "not config")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "d.yaml", "d: 1\n")
    names = [Path(name).name for name, _ in read_manifests([str(tmp_path)])]
    assert names == ["a.yaml", "b.yml", "c.json"]


def test_dash_reads_stdin() -> None:
    assert read_manifests(["-"], stdin=io.StringIO(VS)) == [("<stdin>", VS)]


def test_several_sources_are_read_in_the_order_given(tmp_path: Path) -> None:
    first = write(tmp_path / "z.yaml", "z: 1\n")
    second = write(tmp_path / "a.yaml", "a: 1\n")
    texts = [text for _, text in read_manifests([str(first), "-", str(second)], stdin=io.StringIO("s: 1\n"))]
    assert texts == ["z: 1\n", "s: 1\n", "a: 1\n"]


def test_a_missing_path_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="nope.yaml"):
        read_manifests([str(tmp_path / "nope.yaml")])


def test_sources_are_joined_into_one_stream_with_document_markers() -> None:
    joined = join_documents(["a: 1\n", "b: 2\n---\nc: 3\n"])
    assert joined == "a: 1\n---\nb: 2\n---\nc: 3\n"
    assert list(yaml.safe_load_all(joined)) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_joining_skips_blank_sources_and_a_leading_marker_so_document_numbers_stay_true() -> None:
    joined = join_documents(["a: 1\n", "  \n", "# header\n---\nb: 2\n"])
    assert list(yaml.safe_load_all(joined)) == [{"a": 1}, {"b": 2}]


# ------------------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("alias, kind", [
    ("vs", "VirtualService"), ("VS", "VirtualService"), ("virtualservices", "VirtualService"),
    ("VirtualService", "VirtualService"), ("dr", "DestinationRule"), ("se", "ServiceEntry"),
    ("we", "WorkloadEntry"), ("DestinationRules", "DestinationRule"),
])
def test_kind_aliases_resolve_case_insensitively(alias: str, kind: str) -> None:
    assert resolve_kind(alias) == kind


def test_an_unknown_kind_is_an_error_that_lists_the_known_kinds() -> None:
    with pytest.raises(CliError) as caught:
        resolve_kind("pods")
    assert "'pods'" in caught.value.message and "VirtualService (vs)" in caught.value.message


# ----------------------------------------------------------------------------- refs for delete


def test_refs_default_the_namespace_to_default_and_canonicalize_the_kind() -> None:
    text = VS + "---\nkind: destinationrule\nmetadata: {name: reviews, namespace: shop}\n"
    assert collect_refs([("x", text)]) == [
        ResourceRef(kind="VirtualService", name="reviews", namespace="default"),
        ResourceRef(kind="DestinationRule", name="reviews", namespace="shop"),
    ]


def test_refs_come_from_list_items_and_json_arrays_and_skip_empty_documents() -> None:
    listed = yaml.safe_dump({"kind": "List", "items": [yaml.safe_load(VS)]})
    array = json.dumps([{"kind": "ServiceEntry", "metadata": {"name": "ext"}}])
    refs = collect_refs([("l", "---\n" + listed + "---\n"), ("a", array)])
    assert [(r.kind, r.name) for r in refs] == [("VirtualService", "reviews"), ("ServiceEntry", "ext")]


def test_a_document_without_a_name_is_an_error_naming_source_and_document() -> None:
    with pytest.raises(CliError, match=r"f.yaml: document 2: metadata.name is missing"):
        collect_refs([("f.yaml", VS + "---\nkind: VirtualService\nmetadata: {}\n")])


def test_a_document_of_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(CliError, match="unknown resource kind 'Deployment'"):
        collect_refs([("f.yaml", "kind: Deployment\nmetadata: {name: x}\n")])


# --------------------------------------------------------------------------------- output


def resource(name: str, namespace: str = "default", revision: str = "7") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": revision},
            "spec": {"hosts": ["reviews", "reviews.shop"]}}


def test_the_table_shows_name_namespace_hosts_and_revision_sorted() -> None:
    table = render_table("VirtualService", [resource("b", "shop", "9"), resource("a")]).splitlines()
    assert table[0].split() == ["NAME", "NAMESPACE", "HOSTS", "REVISION"]
    assert table[1].split() == ["a", "default", "reviews,reviews.shop", "7"]
    assert table[2].split() == ["b", "shop", "reviews,reviews.shop", "9"]


def test_a_destination_rule_table_has_a_host_column() -> None:
    dr = {"metadata": {"name": "r"}, "spec": {"host": "reviews"}}
    assert render_table("DestinationRule", [dr]).splitlines()[0].split()[2] == "HOST"


def test_yaml_output_of_a_named_resource_is_one_document_and_of_a_listing_a_list() -> None:
    single = list(yaml.safe_load_all(render_output([resource("a")], "yaml", single=True)))
    assert len(single) == 1 and single[0]["kind"] == "VirtualService"
    listing = yaml.safe_load(render_output([resource("a"), resource("b")], "yaml", single=False))
    assert listing["kind"] == "List" and [i["metadata"]["name"] for i in listing["items"]] == ["a", "b"]


def test_json_output_of_nothing_is_an_empty_list() -> None:
    assert json.loads(render_output([], "json", single=False))["items"] == []


# --------------------------------------------------------------------------- commands, no bus


class FakeBus:
    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.sent: list[tuple[str, bytes]] = []

    async def request(self, subject: str, payload: bytes, timeout: float = 5.0,
                      headers: dict[str, str] | None = None) -> bytes:
        self.sent.append((subject, payload))
        return msgspec.json.encode(self.reply)

    async def call(self, subject: str, message: Any, reply_type: type, timeout: float = 5.0) -> Any:
        payload = msgspec.json.encode(message)
        return msgspec.json.decode(await self.request(subject, payload, timeout), type=reply_type)


@pytest.fixture
def fake_bus(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(reply: Any) -> FakeBus:
        bus = FakeBus(reply)

        def with_bus(nats_url: str, work: Any, **_: Any) -> Any:
            bus.url = nats_url  # type: ignore[attr-defined]
            import asyncio

            return asyncio.run(work(bus))

        monkeypatch.setattr(pilot_client, "with_bus", with_bus)  # where the commands look it up
        return bus

    return install


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.cli, list(args), input=stdin, env=env)


def test_apply_sends_every_source_in_one_request_and_prints_kubectl_lines(tmp_path: Path, fake_bus: Any) -> None:
    bus = fake_bus(ApplyReply(ok=True, revision=5, results=[
        AppliedResource(ref=ResourceRef(kind="VirtualService", name="reviews"), action="created"),
        AppliedResource(ref=ResourceRef(kind="DestinationRule", name="reviews"), action="unchanged")]))
    dr = write(tmp_path / "dr.yaml", "kind: DestinationRule\n")
    result = run("apply", "-f", "-", "-f", str(dr), stdin=VS)
    assert result.exit_code == 0, result.output
    assert len(bus.sent) == 1 and bus.sent[0][0] == "isthmus.config.apply"
    assert bus.sent[0][1].decode() == VS + "---\nkind: DestinationRule\n"
    assert result.stdout.splitlines() == ["virtualservice.networking.istio.io/reviews created",
                                          "destinationrule.networking.istio.io/reviews unchanged"]


def test_apply_prints_each_error_with_document_resource_and_path_and_exits_1(fake_bus: Any) -> None:
    fake_bus(ApplyReply(ok=False, errors=[
        ConfigError(document=2, kind="VirtualService", name="reviews", namespace="default",
                    path="spec.http[0].route[1].weight", message="weight -3 < 0"),
        ConfigError(document=3, message="YAML syntax error at line 4, column 1: bad")]))
    result = run("apply", "-f", "-", stdin=VS)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: document 2 (VirtualService default/reviews): spec.http[0].route[1].weight: weight -3 < 0",
        "error: document 3: YAML syntax error at line 4, column 1: bad"]
    assert result.stdout == ""


def test_apply_of_blank_input_is_an_error_without_asking_pilot(fake_bus: Any) -> None:
    bus = fake_bus(ApplyReply(ok=True))
    result = run("apply", "-f", "-", stdin="\n  \n")
    assert result.exit_code == 1 and "no objects passed to apply" in result.stderr
    assert bus.sent == []


def test_delete_kind_name_sends_one_ref_per_name_in_the_namespace(fake_bus: Any) -> None:
    bus = fake_bus(ApplyReply(ok=True, results=[
        AppliedResource(ref=ResourceRef(kind="VirtualService", name="a", namespace="shop"), action="deleted")]))
    result = run("delete", "vs", "a", "b", "-n", "shop")
    request = json.loads(bus.sent[0][1])
    assert [(r["kind"], r["name"], r["namespace"]) for r in request["resources"]] == [
        ("VirtualService", "a", "shop"), ("VirtualService", "b", "shop")]
    assert result.stdout == 'virtualservice.networking.istio.io "a" deleted\n'


def test_delete_of_something_missing_exits_1(fake_bus: Any) -> None:
    fake_bus(ApplyReply(ok=True, results=[
        AppliedResource(ref=ResourceRef(kind="VirtualService", name="a"), action="not found")]))
    result = run("delete", "vs", "a")
    assert result.exit_code == 1 and '"a" not found' in result.stderr


def test_delete_needs_files_or_a_kind_and_a_name() -> None:
    assert run("delete").exit_code == 2
    assert run("delete", "vs").exit_code == 2


def test_get_by_name_of_a_missing_resource_exits_1(fake_bus: Any) -> None:
    fake_bus(GetReply(ok=True, resources=[]))
    result = run("get", "vs", "nope")
    assert result.exit_code == 1 and 'virtualservice.networking.istio.io "nope" not found' in result.stderr


def test_get_of_an_empty_namespace_prints_nothing_and_exits_0(fake_bus: Any) -> None:
    bus = fake_bus(GetReply(ok=True, resources=[]))
    result = run("get", "dr", "-n", "empty")
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(bus.sent[0][1]) == {"kind": "DestinationRule", "namespace": "empty"}


def test_get_all_namespaces_asks_without_a_namespace(fake_bus: Any) -> None:
    bus = fake_bus(GetReply(ok=True, resources=[resource("a")]))
    result = run("get", "virtualservices", "-A")
    assert result.exit_code == 0 and "reviews,reviews.shop" in result.stdout
    assert json.loads(bus.sent[0][1]) == {"kind": "VirtualService"}


def test_get_with_an_unknown_kind_exits_1_without_asking_pilot(fake_bus: Any) -> None:
    bus = fake_bus(GetReply(ok=True))
    result = run("get", "pods")
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown resource kind 'pods'")
    assert bus.sent == []


def test_the_bus_url_comes_from_the_flag_then_the_env_then_the_default(fake_bus: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the checkout, where `isthmus up --nats-port N` leaves .isthmus/isthmus.yaml
    bus = fake_bus(GetReply(ok=True))
    run("get", "vs", env={"ISTHMUS_NATS_URL": None, "ISTHMUS_CONFIG": None})  # type: ignore[dict-item]
    assert bus.url == "nats://127.0.0.1:4222"
    run("get", "vs", env={"ISTHMUS_NATS_URL": "nats://10.0.0.1:4222"})
    assert bus.url == "nats://10.0.0.1:4222"
    run("--nats", "nats://flag:1", "get", "vs", env={"ISTHMUS_NATS_URL": "nats://10.0.0.1:4222"})
    assert bus.url == "nats://flag:1"


def test_an_unreachable_bus_is_one_error_line_and_exit_1() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = run("--nats", url, "get", "vs")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach pilot on {url} (")  # the reason, then the hint
    assert result.stderr.endswith(": is `isthmus up` running?\n") and result.stderr.count("\n") == 1


def test_proxy_run_rejects_bad_labels_as_a_usage_error() -> None:
    result = run("proxy", "run", "--service", "r", "--service-port", "9080", "--app-port", "9081",
                 "--labels", "app=r,oops")
    assert result.exit_code == 2 and "not key=value" in result.stderr


def test_proxy_run_builds_options_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import proxy.main

    seen: list[Any] = []
    monkeypatch.setattr("proxy.identity.x509_client.spawn_early", lambda count: [])  # no X.509 workers to reap
    monkeypatch.setattr(proxy.main, "run_proxy", lambda options, early: seen.append(options))
    result = run("--nats", "nats://n:1", "proxy", "run", "--service", "reviews", "--service-port", "9080",
                 "--app-port", "9081", "--labels", "app=reviews,version=v2", "--admin-port", "15100",
                 "--lease-ttl", "3")
    assert result.exit_code == 0, result.output
    options = seen[0]
    assert (options.service, options.namespace, options.service_port, options.app_port) == ("reviews", "default",
                                                                                               9080, 9081)
    assert options.labels == {"app": "reviews", "version": "v2"}
    assert (options.admin_port, options.inbound_port, options.lease_ttl, options.nats_url) == (15100, 15006, 3,
                                                                                               "nats://n:1")
