"""The commands the READMEs show run as written after `make demo` / `make test` in a fresh clone: the CLI
and Python are named by their path in .venv (nothing puts them on PATH), and no doc points outside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", ROOT / "examples" / "bookinfo" / "README.md"]
DOCS = [*READMES, *sorted((ROOT / "docs").glob("*.md"))]
BARE = re.compile(r"(?:^|[|&;]\s*|\$\s)(isthmus|python3?)\s")  # a command word not given as .venv/bin/...


def commands(text: str) -> list[str]:
    """Lines of shell code blocks, and `code` spans in table rows that look like commands."""
    found = []
    for block in re.findall(r"```(?:sh)?\n(.*?)```", text, re.S):
        found += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    for row in (line for line in text.splitlines() if line.startswith("| ")):
        found += [span for span in re.findall(r"`([^`]+)`", row) if " -f " in span or span.startswith(("sed ", "."))]
    return found


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_commands_name_the_venvs_programs(path: Path) -> None:
    bare = [line for line in commands(path.read_text()) if BARE.search(line)]
    assert bare == [], f"{path.name}: commands that fail with `command not found` after make demo: {bare}"


def test_the_check_finds_a_bare_command() -> None:
    assert BARE.search("isthmus apply -f x.yaml") and BARE.search("sed s/a/b/ x | isthmus apply -f -")
    assert not BARE.search(".venv/bin/isthmus apply -f x.yaml") and not BARE.search(".venv/bin/python -m x")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_points_outside_the_repository(path: Path) -> None:
    assert "../shared" not in path.read_text()


def test_every_doc_path_a_readme_names_exists() -> None:
    for path in READMES:
        for name in re.findall(r"`?(docs/[\w.-]+\.md)`?", path.read_text()):
            assert (ROOT / name).exists(), f"{path.name} names {name}"


def test_every_image_a_readme_shows_exists_and_is_small() -> None:
    for path in READMES:
        for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text()):
            image = path.parent / name
            assert image.exists(), f"{path.name} shows {name}"
            assert image.stat().st_size < 150_000, f"{name}: {image.stat().st_size} bytes; keep the clone small"
