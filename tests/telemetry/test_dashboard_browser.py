"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; `make deps` installs
it), against the dashboard's routes plus a stand-in API with fixed bookinfo-shaped data (dashboard_api.py).
Screenshots go to test-artifacts/dashboard/ (git-ignored). Every test also checks that the page asked
nothing of another origin and logged no error (a CSP violation, a failed load, a script error).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from proto.observations import GraphEdge, GraphNode
from proto.xds import ProxyStatus
from tests.telemetry.dashboard_api import DEEP_TRACE, LOOP_TRACE, NACK, State, app

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download cannot reach its servers here: Debian's chromium, kept off the network
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the page polls every 3 s; generous on a loaded 2-core machine, still fails when the page does not update
UPDATE_MS = 20_000


@dataclass
class Dashboard:
    page: Page
    state: State
    base: str
    artifacts: Path
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def open(self, fragment: str) -> None:
        await self.page.goto(f"{self.base}/{fragment}")

    async def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing; `make deps` installs Debian's chromium", pytrace=False)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        await launched.close()


@pytest.fixture
async def dashboard(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Dashboard]:
    state = State.bookinfo()
    runner = web.AppRunner(app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    artifacts = request.config.rootpath / "test-artifacts" / "dashboard"
    artifacts.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(UPDATE_MS)
    dash = Dashboard(page=page, state=state, base=base, artifacts=artifacts)
    page.on("request", lambda r: None if r.url.startswith(base) or r.url.startswith("data:") else dash.foreign.append(r.url))
    page.on("console", lambda m: dash.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: dash.errors.append(str(e)))
    try:
        yield dash
        assert dash.foreign == [], "the page must load nothing from another origin"
        assert dash.errors == [], "the page must log no error"
    finally:
        await page.close()
        await runner.cleanup()


async def graph_edges(page: Page) -> dict[str, dict]:
    edges = await page.evaluate("() => window.isthmusGraph.edges()")
    return {edge["id"]: edge for edge in edges}


async def test_graph_shows_services_and_edges_with_rates_and_opens_a_service(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/graph")
    await page.wait_for_function("() => window.isthmusGraph && window.isthmusGraph.edges().length === 10")
    labels = {node["id"]: node["label"] for node in await page.evaluate("() => window.isthmusGraph.nodes()")}
    assert labels["default/reviews"] == "reviews"
    assert [labels[f"default/reviews/{v}"] for v in ("v1", "v2", "v3")] == ["reviews v1", "reviews v2", "reviews v3"]
    assert labels["default/frontend/v1"] == "frontend v1" and labels["unknown"] == "unknown"
    edges = await graph_edges(page)
    split = edges["default/reviews->default/reviews/v1/http"]
    assert split["label"].splitlines() == ["4.90 rps · 0.0% 5xx", "p50 8.0 · p99 40 ms", "mTLS"]
    assert split["dashes"] is False  # mTLS: solid
    assert "3.0%" not in split["label"] and "2.0% 5xx" in edges["default/reviews->default/reviews/v3/http"]["label"]
    outside = edges["unknown->default/frontend/http"]
    assert outside["dashes"] and outside["label"].endswith("plaintext")  # plaintext: dashed
    for edge in edges.values():  # every HTTP edge carries a non-zero rate; the TCP one its bytes
        rate = edge["label"].split()[0] if not edge["id"].endswith("/tcp") else edge["label"].split()[1]
        assert float(rate) > 0, edge
    await dashboard.shot("graph")

    # a click on the reviews service node (on the canvas) shows its detail, whose link opens its page
    point = await page.evaluate("""() => { const n = window.isthmusGraph.network;
        return n.canvasToDOM(n.getPositions(['default/reviews'])['default/reviews']); }""")
    box = await page.locator("#graph canvas").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    detail = page.locator("#graph-detail")
    await detail.get_by_text("Open service").wait_for()
    assert "9.80 rps from 1" in await detail.inner_text()
    await dashboard.shot("graph-selected")
    await detail.get_by_text("Open service").click()
    await page.wait_for_function("() => document.getElementById('chart-latency').data?.length === 3")
    assert page.url.endswith("#/services/default/reviews")
    assert await page.locator("#service-title").inner_text() == "reviews.default.svc.cluster.local"


async def test_calls_in_a_cycle_keep_the_graph_left_to_right(dashboard: Dashboard) -> None:
    """vis-network's own ordering stacks nodes of a cycle without a caller in one column: ratings v1 calls
    the frontend back, and two workers outside bookinfo call each other (no caller from outside)."""
    edge = lambda source, target: GraphEdge(source=source, target=target, protocol="http", rps=0.5,  # noqa: E731
                                            error_rate=0.0, mtls=1.0)
    dashboard.state.extra_nodes = [GraphNode(id=f"default/{app}", kind="service", namespace="default", app=app)
                                   for app in ("jobs", "queue")]
    dashboard.state.extra_edges = [edge("default/ratings/v1", "default/frontend"), edge("default/jobs", "default/queue"),
                                   edge("default/queue", "default/jobs")]
    page = dashboard.page
    await dashboard.open("#/graph")
    await page.wait_for_function("() => window.isthmusGraph && window.isthmusGraph.edges().length === 13")
    x = await page.evaluate("""() => Object.fromEntries(Object.entries(window.isthmusGraph.network.getPositions())
        .map(([id, p]) => [id, p.x]))""")
    chain = ["unknown", "default/frontend", "default/frontend/v1", "default/reviews", "default/reviews/v2",
             "default/ratings", "default/ratings/v1", "default/mongodb"]
    assert [x[a] < x[b] for a, b in zip(chain, chain[1:])] == [True] * 7, x
    assert x["default/jobs"] < x["default/queue"], x
    await dashboard.shot("graph-with-cycles")


async def test_service_page_charts_rate_errors_latency_and_lists_its_access_logs(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/services/default/reviews")
    await page.wait_for_function("() => document.getElementById('chart-latency').data?.length === 3")
    for chart, traces in (("chart-rate", 1), ("chart-errors", 1), ("chart-latency", 3)):
        data = await page.evaluate(f"() => document.getElementById('{chart}').data.map(t => t.y)")
        assert len(data) == traces and all(len(y) == 60 and max(y) > 0 for y in data), chart
        # drawn, not only given: plotly put one line per trace in the SVG
        assert await page.locator(f"#{chart} .scatterlayer .trace").count() == traces
    assert "to workloads: reviews-v1 50.0% · reviews-v2 30.0% · reviews-v3 20.0%" in await page.locator("#service-sub").inner_text()
    rows = page.locator("#logs tbody tr")
    assert await rows.count() == 12
    assert "503" in await page.locator("#logs tbody tr.bad").inner_text()
    assert await page.locator("#service-list a.active").inner_text() == "reviews\ndefault"
    await dashboard.shot("service-reviews")


async def test_a_trace_opens_as_a_waterfall_with_both_spans(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/traces")
    await page.locator("#traces tbody tr").nth(4).wait_for()
    assert await page.locator("#traces tbody tr").count() == 5
    await page.locator('#traces tr[data-trace="0af7651916cd43dd8448eb211c80319c"]').click()
    await page.wait_for_function("() => document.querySelectorAll('#waterfall .barlayer .point').length === 2")
    starts, lengths = await page.evaluate("() => { const t = document.getElementById('waterfall').data[0]; return [t.base, t.x]; }")
    assert starts == [0, pytest.approx(1.3)] and lengths == [96, 91.5]  # the server span starts 1.3 ms in
    spans = [await row.inner_text() for row in await page.locator("#spans tbody tr").all()]
    assert len(spans) == 2 and "frontend.default" in spans[0] and "CLIENT" in spans[0]
    assert "reviews.default" in spans[1] and "SERVER" in spans[1]
    assert "2 spans, 2 services, 96 ms" in await page.locator("#trace-title").inner_text()
    await dashboard.shot("trace-waterfall")


async def test_a_deeper_trace_nests_each_span_under_its_parent_and_marks_the_5xx(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open(f"#/traces/{DEEP_TRACE}")
    await page.wait_for_function("() => document.querySelectorAll('#waterfall .barlayer .point').length === 4")
    rows = [await row.inner_text() for row in await page.locator("#spans tbody tr").all()]
    assert [" ".join(r.split()[:1] + r.split()[2:3]) for r in rows] == [
        "frontend.default CLIENT", "reviews.default SERVER", "reviews.default CLIENT", "ratings.default SERVER"]
    assert await page.locator("#spans tbody tr.bad").count() == 2  # the 503s
    assert await page.locator(f'#traces tr.active[data-trace="{DEEP_TRACE}"]').count() == 1
    await dashboard.shot("trace-waterfall-nested")


async def test_spans_whose_parents_loop_are_still_shown(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open(f"#/traces/{LOOP_TRACE}")
    await page.wait_for_function("() => document.querySelectorAll('#waterfall .barlayer .point').length === 2")
    assert await page.locator("#spans tbody tr").count() == 2


async def test_a_trace_the_store_no_longer_holds_is_said_so(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/traces/ffffffffffffffffffffffffffffffff")
    await page.locator("#trace-missing").get_by_text("Trace ffffffffffffffffffffffffffffffff is not in the store").wait_for()
    assert await page.locator("#traces tbody tr").count() == 5  # the list still shows
    assert await page.locator("#trace-detail").is_hidden()
    await page.locator("#live").get_by_text("live · updated").wait_for()  # not an outage
    dashboard.errors[:] = [e for e in dashboard.errors if "status of 404" not in e]  # the browser logs the 404


async def test_proxy_table_shows_synced_stale_and_rejected_with_the_nack_error(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/proxies")
    await page.locator("#proxies tbody tr").nth(4).wait_for()
    status = {await row.get_attribute("data-proxy"): await row.locator(".badge").inner_text()
              for row in await page.locator("#proxies tbody tr").all()}
    assert status == {"reviews-v3-c4d2": "REJECTED", "reviews-v2-9a0e": "STALE", "frontend-v1-7f9c": "SYNCED",
                      "ratings-v1-5e6f": "SYNCED", "reviews-v1-2b1d": "SYNCED"}
    rejected = page.locator('#proxies tr[data-proxy="reviews-v3-c4d2"]')
    assert NACK in await rejected.inner_text()
    assert await page.locator("#proxy-summary").inner_text() == "config version 7 · 3 synced · 1 stale · 1 rejected"
    await dashboard.shot("proxies")


async def test_the_page_follows_the_api_without_a_reload(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/proxies")
    await page.locator('#proxies tr[data-proxy="reviews-v3-c4d2"] .badge').get_by_text("REJECTED").wait_for()
    await page.evaluate("() => { window.sameDocument = true; }")  # a reload would drop it

    dashboard.state.proxies[3] = ProxyStatus(proxy_id="reviews-v3-c4d2", service="reviews", namespace="default",
                                             version=7, updated_at=time.time())
    await page.locator('#proxies tr[data-proxy="reviews-v3-c4d2"] .badge').get_by_text("SYNCED").wait_for()
    assert NACK not in await page.locator("#proxies").inner_text()
    await dashboard.shot("proxies-after-change")

    await page.locator("header nav a", has_text="Graph").click()
    await page.wait_for_function("() => window.isthmusGraph.edges().some(e => e.label.startsWith('9.80 rps'))")
    dashboard.state.frontend_rps = 42.0
    await page.wait_for_function("() => window.isthmusGraph.edges().some(e => e.label.startsWith('42.0 rps'))")
    split = (await graph_edges(page))["default/reviews->default/reviews/v1/http"]
    assert split["label"].startswith("21.0 rps")
    assert await page.evaluate("() => window.sameDocument") is True
    await dashboard.shot("graph-after-change")


async def test_an_api_failure_is_shown_and_the_page_recovers_by_itself(dashboard: Dashboard) -> None:
    page = dashboard.page
    live = page.locator("#live")
    await dashboard.open("#/graph")
    await page.wait_for_function("() => window.isthmusGraph.edges().length === 10")
    dashboard.state.graph_fails = True
    await live.get_by_text("not updating: /api/graph: HTTP 500").wait_for()
    assert len(await graph_edges(page)) == 10  # the last graph stays on screen
    await dashboard.shot("graph-api-failing")
    dashboard.state.graph_fails = False
    await live.get_by_text("live · updated").wait_for()

    dashboard.state.pilot_error = "pilot: no responders on xds.status"
    await page.locator("header nav a", has_text="Proxies").click()
    banner = page.locator("#proxy-error")
    await banner.get_by_text("pilot did not answer: pilot: no responders on xds.status").wait_for()
    assert await page.locator("#proxies tbody tr").count() == 0
    # the browser logs each failed fetch of the outage; nothing else
    dashboard.errors[:] = [e for e in dashboard.errors if "status of 500" not in e]
