"""Every example YAML under examples/ applies unchanged: it decodes with no errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.pilot.validate import decode_documents

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").rglob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_applies(path: Path) -> None:
    resources, errors, _ = decode_documents(path.read_text())
    assert not errors, [e.message for e in errors]
    assert resources
