"""`make deps` (bench/dataplane/tools.py main) installs the benchmark's tools and the dashboard test's chromium;
the benchmark itself needs only its own."""

from __future__ import annotations

import pytest

from bench.dataplane import tools


@pytest.fixture
def chromium_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "which", lambda program: None if program == "chromium" else f"/usr/bin/{program}")
    monkeypatch.setattr(tools.shutil, "which", lambda program, path=None: None)  # and no apt-get to install it


def test_make_deps_wants_chromium_for_the_dashboard_test(chromium_missing: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert tools.main() == 1
    out = capsys.readouterr().out
    assert "tools missing: chromium; installing with apt-get" in out
    assert "error: missing chromium and apt-get is not available" in out


def test_the_benchmark_does_not_need_chromium(chromium_missing: None) -> None:
    assert tools.ensure_tools(install=False)["wrk"] == "/usr/bin/wrk"
    with pytest.raises(tools.ToolsMissing, match="apt-get install -y chromium"):
        tools.ensure_tools(install=False, tools=tools.BROWSER_TOOLS)
