"""`isthmus analyze`'s exit codes and output formats, files only (--no-live): istioctl's 79 when a message is at
or above the failure threshold, 65 when a file cannot be parsed, 2 for usage errors, 1 when the live mesh
cannot be read. The live path: tests/integration/test_analyze.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from isthmus import cli
from isthmus.launch import free_port

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str) -> Any:
    return CliRunner().invoke(cli.cli, list(args), env={"ISTHMUS_CONFIG": None})  # type: ignore[dict-item]


def body(tmp_path: Path, fixture: str) -> str:
    """The fixture's resources (its AnalyzeFixture header dropped), as a file."""
    path = tmp_path / fixture
    path.write_text((FIXTURES / fixture).read_text().partition("\n---\n")[2])
    return str(path)


def test_an_error_message_exits_79_and_prints_istioctls_line(tmp_path: Path) -> None:
    result = run("analyze", "--no-live", "-f", body(tmp_path, "IST0101_subset.yaml"))
    assert result.exit_code == 79, result.output
    assert ('Error [IST0101] (VirtualService default/reviews ' + str(tmp_path / "IST0101_subset.yaml") +
            ') Referenced host+subset in destinationrule not found: "reviews+v2"') in result.stdout
    assert "Analyzers found issues when analyzing namespace: default." in result.stderr


def test_warnings_alone_exit_0_unless_the_threshold_is_lowered(tmp_path: Path) -> None:
    path = body(tmp_path, "IST0128_destination_level.yaml")
    result = run("analyze", "--no-live", "-f", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Warning [IST0128] (DestinationRule default/api")
    assert run("analyze", "--no-live", "-f", path, "--failure-threshold", "Warning").exit_code == 79


def test_a_clean_file_exits_0_with_istioctls_line(tmp_path: Path) -> None:
    path = body(tmp_path, "IST0101_ok_subset.yaml")
    result = run("analyze", "--no-live", "-f", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"\u2714 No validation issues found when analyzing {path}." in result.stderr


def test_json_and_yaml_list_the_messages_and_exit_79_too(tmp_path: Path) -> None:
    path = body(tmp_path, "IST0145_conflicting_gateways.yaml")
    result = run("analyze", "--no-live", "-f", path, "-o", "json")
    assert result.exit_code == 79
    items = json.loads(result.stdout)
    assert [(i["code"], i["level"], i["origin"]) for i in items] == [
        ("IST0145", "Error", "Gateway default/a"), ("IST0145", "Error", "Gateway default/b")]
    assert items[0]["documentationUrl"] == "https://istio.io/latest/docs/reference/config/analysis/ist0145/"
    assert items[0]["reference"] == path
    result = run("analyze", "--no-live", "-f", path, "-o", "yaml")
    assert [i["code"] for i in yaml.safe_load(result.stdout)] == ["IST0145", "IST0145"]


def test_namespace_flag_names_documents_without_one_and_filters_messages(tmp_path: Path) -> None:
    path = body(tmp_path, "IST0101_subset.yaml")
    result = run("analyze", "--no-live", "-f", path, "-n", "shop")
    assert result.exit_code == 79
    assert "(VirtualService shop/reviews " in result.stdout
    assert run("analyze", "--no-live", "-f", path, "-n", "other", "-A").exit_code == 79


def test_a_file_that_is_not_yaml_exits_65(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    result = run("analyze", "--no-live", "-f", str(bad))
    assert result.exit_code == 65, result.output
    assert "Some files couldn't be parsed." in result.stderr


def test_no_live_without_files_is_a_usage_error() -> None:
    result = run("analyze", "--no-live")
    assert result.exit_code == 2


def test_the_live_mesh_unreachable_exits_1_and_points_at_no_live(tmp_path: Path) -> None:
    path = body(tmp_path, "IST0101_ok_subset.yaml")
    result = run("--nats", f"nats://127.0.0.1:{free_port()}", "analyze", "-f", path)
    assert result.exit_code == 1
    assert "(--no-live analyzes the files alone)" in result.stderr


def test_list_analyzers_names_each_with_its_codes() -> None:
    result = run("analyze", "-L")
    assert result.exit_code == 0
    assert "* virtualservice.DestinationRuleAnalyzer:" in result.stdout
    assert "IST0101 ReferencedResourceNotFound" in result.stdout
    assert "(needs registry)" in result.stdout


def test_suppress_drops_a_code_on_the_resources_it_names_in_either_spelling(tmp_path: Path) -> None:
    path = body(tmp_path, "IST0145_conflicting_gateways.yaml")
    result = run("analyze", "--no-live", "-f", path, "-S", "IST0145=Gateway default/a")
    assert result.exit_code == 79 and "(Gateway default/a " not in result.stdout and "(Gateway default/b " in \
        result.stdout
    result = run("analyze", "--no-live", "-f", path, "-S", "IST0145=Gateway *.default")  # istioctl's name.namespace
    assert result.exit_code == 0 and result.stdout == "", result.output
    result = run("analyze", "--no-live", "-f", path, "-S", "IST0101=Gateway *")  # another code: nothing dropped
    assert result.exit_code == 79
    result = run("analyze", "--no-live", "-f", path, "-S", "IST9999=Gateway *")
    assert "unknown message code" in result.stderr
    assert run("analyze", "--no-live", "-f", path, "-S", "IST0145").exit_code == 2
