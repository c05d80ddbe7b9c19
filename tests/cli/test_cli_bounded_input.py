"""The CLI reads -f sources within pilot's bounds: a hostile file is one `error:` line, never a traceback
(docs/cli.md). No bus: these fail before anything is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from isthmus.cli import CliError, collect_refs, read_manifests
from runtime.settings import ConfigLimits

UNREACHABLE = "nats://127.0.0.1:1"  # nothing is sent: the file is refused first


def isthmus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", UNREACHABLE, *args],
                          capture_output=True, text=True, timeout=60, env=env)


HOSTILE = {
    "deep-list.yaml": "[" * 100_000,
    "deep-map.yaml": "a: {" * 20_000 + "}" * 20_000 + "\n",
    "deep.json": '{"kind": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "bigint.yaml": f"kind: VirtualService\nmetadata: {{name: a}}\nspec: {{n: {'9' * 5000}}}\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_delete_f_of_a_hostile_file_is_one_error_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(HOSTILE[name])
    result = isthmus("delete", "-f", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr[-2000:]


def test_delete_f_names_the_path_of_an_oversized_integer(tmp_path: Path) -> None:
    path = tmp_path / "bigint.yaml"
    path.write_text(HOSTILE["bigint.yaml"])
    with pytest.raises(CliError, match=r"document 1: spec\.n: integer too large"):
        collect_refs(read_manifests([str(path)]))


def test_a_duplicate_key_is_refused_with_its_path() -> None:
    text = "kind: VirtualService\nmetadata:\n  name: a\n  name: b\n"
    with pytest.raises(CliError, match=r"metadata\.name: mapping key 'name' already defined"):
        collect_refs([("dup.yaml", text)])


def test_a_source_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    limit = ConfigLimits().max_bytes
    at = tmp_path / "at.yaml"
    at.write_text("#" * (limit - 1) + "\n")
    assert read_manifests([str(at)])[0][1].startswith("#")
    over = tmp_path / "over.yaml"
    over.write_text("#" * limit + "\n")
    with pytest.raises(CliError, match="larger than 3145728 bytes"):
        read_manifests([str(over)])


def test_apply_f_of_a_device_says_it_is_not_a_regular_file() -> None:
    result = isthmus("apply", "-f", "/dev/zero")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: the path '/dev/zero' is not a regular file or a directory"


@pytest.mark.parametrize("name, value", [("ISTHMUS_CONFIG_MAX_BYTES", "abc"), ("ISTHMUS_CONFIG_DECODE_TIMEOUT", "nan"),
                                         ("ISTHMUS_CONFIG_MAX_DEPTH", "0")])
def test_a_bad_config_limit_setting_is_one_error_line(tmp_path: Path, name: str, value: str) -> None:
    import os

    path = tmp_path / "vs.yaml"
    path.write_text("kind: VirtualService\nmetadata: {name: a}\n")
    result = isthmus("delete", "-f", str(path), env={**os.environ, name: value})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: bad setting: ISTHMUS_CONFIG_") and result.stderr.count("\n") == 1, \
        result.stderr
