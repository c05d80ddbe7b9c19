"""Pilot's mesh default trace sampling (runtime/settings.py ISTHMUS_TRACE_SAMPLING, Istio's PILOT_TRACE_SAMPLING):
a percentage from 0 to 100, 1 by default, anything else refused by name."""

from __future__ import annotations

import pytest

from runtime.settings import Settings


def test_the_default_is_istios_one_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISTHMUS_TRACE_SAMPLING", raising=False)
    assert Settings.load().trace_sampling == 1.0


@pytest.mark.parametrize("text, value", [("0", 0.0), ("100", 100.0), ("0.5", 0.5)])
def test_a_percentage_from_zero_to_a_hundred_is_taken(monkeypatch: pytest.MonkeyPatch, text: str,
                                                      value: float) -> None:
    monkeypatch.setenv("ISTHMUS_TRACE_SAMPLING", text)
    assert Settings.load().trace_sampling == value


@pytest.mark.parametrize("text", ["100.01", "-1", "nan", "lots", ""])
def test_anything_else_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("ISTHMUS_TRACE_SAMPLING", text)
    with pytest.raises(ValueError, match="ISTHMUS_TRACE_SAMPLING"):
        Settings.load()
