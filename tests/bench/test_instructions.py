"""bench/dataplane/instructions.py reads callgrind's totals (the counting itself runs valgrind for minutes: by hand)."""

from __future__ import annotations

import pytest

from bench.dataplane.instructions import total_instructions

HEAD = b"# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 7\ncmd: python -m bench.dataplane.micro\n"


def test_the_total_is_read_from_the_summary_or_totals_line() -> None:
    assert total_instructions(HEAD + b"events: Ir\nsummary: 1234567890\nfl=(1) x.c\n") == 1_234_567_890
    assert total_instructions(HEAD + b"events: Ir\nfn=(1) f\n3 10\ntotals: 42\n") == 42


def test_a_file_without_a_total_is_refused() -> None:
    with pytest.raises(ValueError, match="not a callgrind output file"):
        total_instructions(HEAD + b"events: Ir\nfn=(1) f\n3 10\n")
