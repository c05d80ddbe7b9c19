"""The dashboard's routes without a browser: the page and its files, the libraries served from their wheels,
nothing else reachable under /static/, and headers that keep the page on its own origin."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.telemetry.dashboard import assets, routes
from services.telemetry.dashboard.assets import STATIC_DIR, AssetMissing, library_path


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    application = web.Application()
    application.add_routes(routes())
    async with TestClient(TestServer(application, host="127.0.0.1")) as test_client:
        yield test_client


async def test_the_page_is_served_with_a_policy_that_allows_only_its_own_origin(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    assert '<div id="graph"' in await response.text()
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp and "connect-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("name", "marker"), [("plotly.min.js", "plotly.js v"), ("vis-network.min.js", "vis-network"),
                                              ("vis-network.css", ".vis-overlay")])
async def test_the_libraries_come_from_their_installed_wheels(client: TestClient, name: str, marker: str) -> None:
    response = await client.get(f"/static/lib/{name}")
    assert response.status == 200
    body = await response.read()
    assert marker.encode() in body[:2000] and len(body) > 100_000
    assert "site-packages" in str(library_path(name)) or "dist-packages" in str(library_path(name))


@pytest.mark.parametrize("name", sorted(assets.ASSET_NAMES))
async def test_every_file_of_the_page_is_served(client: TestClient, name: str) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status == 200
    assert response.content_type in {"text/html", "text/css", "text/javascript", "application/javascript"}
    assert await response.read() == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/..%2F__init__.py", "/static/%2E%2E/handlers.py",
                                  "/static/lib/jquery.js", "/static/lib/..%2Fapp.js", "/static/../assets.py"])
async def test_nothing_else_is_reachable_under_static(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404


def test_the_page_names_no_other_origin() -> None:
    """Mesh hosts often have no internet: no URL with a scheme or a protocol-relative one in any of our files."""
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "://" not in text, path
        assert not re.search(r"""['"`(]//[a-z0-9]""", text, re.I), path  # protocol-relative


def test_the_highest_vis_network_a_wheel_ships_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for version in ("9.0.4", "10.0.1", "9.1.2"):
        (tmp_path / "lib" / f"vis-{version}").mkdir(parents=True)
        (tmp_path / "lib" / f"vis-{version}" / "vis-network.min.js").write_text(version)
    monkeypatch.setattr(assets.importlib.resources, "files", lambda package: tmp_path)
    assert library_path("vis-network.min.js").read_text() == "10.0.1"


async def test_a_wheel_without_its_file_answers_500_saying_which(client: TestClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(assets.LIBRARIES, "plotly.min.js", ("no_such_package_isthmus", "plotly.min.js"))
    with pytest.raises(AssetMissing, match="no_such_package_isthmus"):
        library_path("plotly.min.js")
    response = await client.get("/static/lib/plotly.min.js")
    assert response.status == 500 and "no_such_package_isthmus" in await response.text()
    assert (await client.get("/static/lib/vis-network.min.js")).status == 200
