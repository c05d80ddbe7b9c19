"""The demo's printed lines say where the dashboard is, as `isthmus dashboard` finds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.bookinfo.demo import _hints
from runtime.clientconfig import ClientConfig, save


def test_the_demo_prints_the_dashboard_url_from_the_client_config(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = save(tmp_path / "isthmus.yaml", ClientConfig(dashboard="http://127.0.0.1:24001/"))
    monkeypatch.setenv("ISTHMUS_CONFIG", str(config))
    lines = _hints("nats://127.0.0.1:4222", "http://127.0.0.1:9000/", tmp_path)
    assert lines[0].startswith("  dashboard: http://127.0.0.1:24001/  (service graph"), lines
    assert "isthmus dashboard` opens it" in lines[0]


def test_without_a_client_config_the_demo_prints_the_default_dashboard_url(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISTHMUS_CONFIG", raising=False)
    monkeypatch.delenv("ISTHMUS_DASHBOARD_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./.isthmus/isthmus.yaml here
    assert _hints("nats://127.0.0.1:4222", "http://127.0.0.1:9000/", tmp_path)[0].startswith(
        "  dashboard: http://127.0.0.1:20001/ ")
    monkeypatch.setenv("ISTHMUS_DASHBOARD_URL", "http://127.0.0.1:24002/")
    assert _hints("nats://127.0.0.1:4222", "http://127.0.0.1:9000/", tmp_path)[0].startswith(
        "  dashboard: http://127.0.0.1:24002/ ")


def test_the_demo_prints_the_ingress_gateways_url_beside_the_dashboards(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISTHMUS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./.isthmus/isthmus.yaml here
    monkeypatch.setenv("ISTHMUS_DASHBOARD_URL", "http://127.0.0.1:24002/")
    lines = _hints("nats://127.0.0.1:4222", "http://127.0.0.1:9000/", tmp_path, "http://127.0.0.1:8080/")
    assert lines[0].startswith("  dashboard: http://127.0.0.1:24002/ ")
    assert lines[1].startswith("  ingress gateway: curl -s http://127.0.0.1:8080/  (from outside the mesh"), lines
    assert not any("ingress" in line for line in _hints("nats://127.0.0.1:4222", "http://127.0.0.1:9000/", tmp_path))
