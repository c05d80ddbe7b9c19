"""Issue 12's "done means", end to end: `isthmus up --demo` as `make demo` runs it (real nats-server, etcd,
control plane, telemetry service, the demo's four apps and sidecars, its ingress gateway, its own traffic
driver: half of it straight to the frontend, half through the gateway), a real Prometheus scraping the telemetry
service, and the real dashboard in headless Chromium. After about a minute of traffic:

- the gateway's URL, as the README curls it: the frontend's page;
- /api/graph: istio-ingressgateway -> frontend -> frontend v1 at half the driver's rate, frontend v1 -> reviews
  -> reviews v1/v2/v3 at all of it, with the 80/10/10 split the demo configures, all mTLS;
- /api/v2/traces: one request's CLIENT span on the frontend's sidecar and SERVER span on a reviews sidecar,
  parent and child (the demo's Telemetry samples 100%, as Istio's demo profile), and a request that entered
  through the gateway traced from the gateway's CLIENT span to reviews;
- /api/logs: the reviews sidecars' access logs (the demo's Telemetry ships them with the `isthmus` provider);
- Prometheus: Istio's two queries of the issue match what the demo's driver sent;
- the dashboard page draws those services and edges, and a trace as a waterfall.

Screenshots go to test-artifacts/demo/ (git-ignored); `readme-dashboard.png` is the README's picture
(docs/images/dashboard.png is a copy of one run's)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import urllib.request
from pathlib import Path

import pytest
from playwright.async_api import Browser

from isthmus.launch import ManagedProcess, free_port, free_port_pair, project_env
from tests.integration.conftest import eventually
from tests.integration.test_prometheus import P99, RATE, Prometheus, prometheus_binary
from tests.telemetry.test_dashboard_browser import browser  # noqa: F401  (Debian's chromium, off the network)

ROOT = Path(__file__).resolve().parents[2]
STATUS = re.compile(r"^\[\s*(\d+)s\] .*?total (\d+) \(v1=(\d+) v2=(\d+) v3=(\d+) errors=(\d+)\)", re.M)
TRAFFIC_SECONDS = 70  # rate(...[1m]) then looks at a window full of the demo's traffic
VERSIONS = ("v1", "v2", "v3")
SPLIT = {"v1": 0.8, "v2": 0.1, "v3": 0.1}  # examples/bookinfo/virtual-service-reviews-80-10-10.yaml

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(prometheus_binary() is None, reason="Debian's prometheus is not installed "
                                                                     "(`make deps` installs it)")]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def status_lines(text: str) -> list[tuple[int, int]]:
    """(seconds since the traffic began, requests sent so far) from each status line the demo printed."""
    return [(int(m[1]), int(m[2])) for m in STATUS.finditer(text)]


def split_of(graph: dict) -> dict[str, float]:
    """rps of each reviews version's edge from the reviews service node."""
    return {e["target"].rsplit("/", 1)[1]: e["rps"] for e in graph["edges"]
            if e["source"] == "default/reviews" and e["target"].startswith("default/reviews/")}


def linked_trace(traces: list[list[dict]]) -> tuple[dict, dict] | None:
    """The frontend sidecar's CLIENT span and the reviews sidecar's SERVER span under it, from one trace of a
    request sent straight to the frontend (those two spans only)."""
    for spans in traces:
        if len(spans) != 2:
            continue
        clients = {s["id"]: s for s in spans if s.get("kind") == "CLIENT"
                   and s["localEndpoint"]["serviceName"] == "frontend.default"}
        for span in spans:
            if (span.get("kind") == "SERVER" and span["localEndpoint"]["serviceName"] == "reviews.default"
                    and span.get("parentId") in clients):
                return clients[span["parentId"]], span
    return None


def through_the_gateway(spans: list[dict]) -> bool:
    """One request's trace: gateway CLIENT -> frontend SERVER -> frontend CLIENT -> reviews SERVER, each the
    child of the one before."""
    def one(service: str, kind: str) -> dict | None:
        found = [s for s in spans if s["localEndpoint"]["serviceName"] == service and s.get("kind") == kind]
        return found[0] if len(found) == 1 else None
    chain = [one("istio-ingressgateway.istio-system", "CLIENT"), one("frontend.default", "SERVER"),
             one("frontend.default", "CLIENT"), one("reviews.default", "SERVER")]
    if len(spans) != 4 or None in chain:
        return False
    return chain[0].get("parentId") is None and all(  # type: ignore[union-attr]
        child["parentId"] == parent["id"] for parent, child in zip(chain, chain[1:]))  # type: ignore[index]


async def test_make_demo_shows_the_split_mtls_a_trace_and_prometheus_agrees(
        tmp_path: Path, browser: Browser, request: pytest.FixtureRequest) -> None:  # noqa: F811
    state = tmp_path / "state"
    (tmp_path / "logs").mkdir()
    # etcd's peer port is --etcd-port + 1
    nats_port, etcd_port, dashboard_port, ingress_port = free_port(), free_port_pair(), free_port(), free_port()
    base = f"http://127.0.0.1:{dashboard_port}"
    artifacts = request.config.rootpath / "test-artifacts" / "demo"
    artifacts.mkdir(parents=True, exist_ok=True)
    up = ManagedProcess("up", [sys.executable, "-m", "isthmus.cli", "up", "--demo", "--state-dir", str(state),
                               "--nats-port", str(nats_port), "--etcd-port", str(etcd_port),
                               "--dashboard-port", str(dashboard_port), "--ingress-port", str(ingress_port),
                               "--ingress-https-port", str(free_port())],
                        log_path=tmp_path / "up.out", env=project_env(), cwd=ROOT).start()
    prometheus = Prometheus(tmp_path, dashboard_port)  # scrapes every second from the start

    def said() -> str:
        assert up.log_path is not None
        return up.log_path.read_text()

    def running() -> bool:
        assert up.is_running, f"isthmus up --demo exited:\n{said()}"
        return True

    try:
        # the hints end with "as user jason" (examples/bookinfo/demo.py): "traffic:" alone can be read before them
        await eventually(lambda: running() and "as user jason" in said(), 120, 0.5)
        demo_said = said().split("bookinfo demo:", 1)[1]
        assert "-f examples/bookinfo/telemetry.yaml" in demo_said and "telemetry.telemetry.istio.io/bookinfo" in demo_said
        assert f"  dashboard: {base}/" in demo_said, demo_said  # the demo's own lines say where to look
        gateway_url = f"http://127.0.0.1:{ingress_port}/"
        assert f"  ingress gateway: curl -s {gateway_url}  " in demo_said, demo_said  # ... and where to come in
        for name in ("frontend-v1", "reviews-v1", "reviews-v2", "reviews-v3"):
            assert re.search(rf"^  {name} +app 127\.0\.0\.1:", demo_said, re.M), demo_said
        page = await asyncio.to_thread(get_json, gateway_url)  # from outside the mesh, through the gateway
        assert isinstance(page, dict) and page["service"] == "frontend" and page["reviews"]["status"] == 200, page
        await eventually(lambda: running() and any(s >= TRAFFIC_SECONDS for s, _ in status_lines(said())),
                         TRAFFIC_SECONDS + 60, 1.0)
        lines = status_lines(said())
        assert re.findall(r"errors=(\d+)\)", said())[-1] == "0", said()
        (t1, n1), (t0, n0) = lines[-1], next(line for line in reversed(lines) if line[0] <= lines[-1][0] - 60)
        sent_rate = (n1 - n0) / (t1 - t0)  # what the demo's driver sent per second over the last minute

        # the graph: istio-ingressgateway -> frontend -> frontend v1 (half the traffic), frontend v1 -> reviews ->
        # v1/v2/v3 (all of it), the configured split, every edge mutual TLS
        graph = get_json(f"{base}/api/graph?window=60")
        assert isinstance(graph, dict)
        workloads = {n["id"]: n.get("workload") for n in graph["nodes"] if n["kind"] == "workload"}
        assert workloads == {"default/frontend/v1": "frontend-v1", "default/reviews/v1": "reviews-v1",
                             "default/reviews/v2": "reviews-v2", "default/reviews/v3": "reviews-v3",
                             "istio-system/istio-ingressgateway/unknown": "istio-ingressgateway"}, graph
        assert {n["id"] for n in graph["nodes"] if n["kind"] == "service"} == {"default/frontend", "default/reviews"}
        assert len(graph["edges"]) == 6, graph["edges"]
        [front] = [e for e in graph["edges"] if (e["source"], e["target"]) == ("default/frontend/v1", "default/reviews")]
        assert 0.6 * sent_rate <= front["rps"] <= 1.4 * sent_rate, (front, sent_rate)
        [ingress] = [e for e in graph["edges"]
                     if (e["source"], e["target"]) == ("istio-system/istio-ingressgateway/unknown", "default/frontend")]
        [into] = [e for e in graph["edges"] if (e["source"], e["target"]) == ("default/frontend", "default/frontend/v1")]
        assert 0.3 * sent_rate <= ingress["rps"] <= 0.7 * sent_rate, (ingress, sent_rate)  # half the driver's
        assert 0.8 <= into["rps"] / ingress["rps"] <= 1.25, (into, ingress)
        split = split_of(graph)
        total = sum(split.values())
        assert set(split) == set(VERSIONS) and min(split.values()) > 0, graph
        for version, share in SPLIT.items():
            assert abs(split[version] / total - share) <= 0.07, (split, version)
        assert all(e["mtls"] == 1.0 and e["error_rate"] == 0.0 for e in graph["edges"]), graph["edges"]

        # a trace of one request across both sidecars
        traces = get_json(f"{base}/api/v2/traces?serviceName=frontend.default&limit=50")
        assert isinstance(traces, list)
        pair = linked_trace(traces)
        assert pair is not None, traces[:3]
        client, server = pair
        assert client["traceId"] == server["traceId"] and server["tags"]["istio.canonical_service"] == "reviews"
        assert client["timestamp"] <= server["timestamp"]  # one clock: the server span starts after the client's
        entered = get_json(f"{base}/api/v2/traces?serviceName=istio-ingressgateway.istio-system&limit=50")
        assert isinstance(entered, list) and any(through_the_gateway(spans) for spans in entered), entered[:3]

        # the reviews sidecars' access logs, shipped by the demo's Telemetry (provider `isthmus`)
        logs = get_json(f"{base}/api/logs?service=reviews&limit=5")
        assert isinstance(logs, list) and len(logs) == 5, logs
        assert all(e["listener"] == "inbound" and e["response_code"] == 200 and e["downstream_peer_principal"]
                   == "spiffe://cluster.local/ns/default/sa/bookinfo-frontend" and e.get("trace_id") for e in logs), logs

        # Prometheus: Istio's queries agree with what the demo sent
        await eventually(prometheus.ready, 30, 0.5)
        rate = await asyncio.to_thread(prometheus.query, RATE)
        assert rate is not None and 0.75 * sent_rate <= rate <= 1.25 * sent_rate, (rate, sent_rate)
        p99 = await asyncio.to_thread(prometheus.query, P99)
        assert p99 is not None and 0 < p99 < 1000, p99  # milliseconds; loopback calls
        per_version = await asyncio.to_thread(prometheus.query, 'sum(rate(istio_requests_total{reporter="destination",'
                                                                'destination_workload="reviews-v2"}[1m]))')
        assert per_version is not None and 0.03 * sent_rate <= per_version <= 0.17 * sent_rate, per_version
        mtls = await asyncio.to_thread(prometheus.query, 'sum(rate(istio_requests_total{reporter="destination",'
                                                         'connection_security_policy!="mutual_tls"}[1m]))')
        assert not mtls, mtls  # no series, or zero: every request mutual TLS
        (artifacts / "numbers.json").write_text(json.dumps({
            "demo_sent_per_s": sent_rate, "graph_split_rps": split, "graph_frontend_rps": front["rps"],
            "prometheus_reviews_200_rate": rate, "prometheus_p99_ms": p99, "prometheus_reviews_v2_rate": per_version,
            "trace": [client, server]}, indent=1))

        await the_dashboard_shows_it(browser, base, artifacts, client["traceId"])
    finally:
        up.stop(60)
        prometheus.stop()


async def the_dashboard_shows_it(browser: Browser, base: str, artifacts: Path, trace_id: str) -> None:  # noqa: F811
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        await page.goto(f"{base}/#/graph")
        await page.wait_for_function("() => window.isthmusGraph && window.isthmusGraph.edges().length >= 6")
        edges = {e["id"]: e for e in await page.evaluate("() => window.isthmusGraph.edges()")}
        labels = {n["id"]: n["label"] for n in await page.evaluate("() => window.isthmusGraph.nodes()")}
        assert labels["default/frontend/v1"] == "frontend v1" and labels["default/reviews"] == "reviews"
        assert [labels[f"default/reviews/{v}"] for v in VERSIONS] == ["reviews v1", "reviews v2", "reviews v3"]
        wanted = ["default/frontend/v1->default/reviews/http", *(f"default/reviews->default/reviews/{v}/http"
                                                               for v in VERSIONS),
                  "istio-system/istio-ingressgateway/unknown->default/frontend/http",
                  "default/frontend->default/frontend/v1/http"]
        for edge_id in wanted:
            label = edges[edge_id]["label"]
            assert float(label.split()[0]) > 0 and label.splitlines()[-1] == "mTLS", label
            assert edges[edge_id]["dashes"] is False  # solid: mutual TLS
        await page.screenshot(path=str(artifacts / "graph.png"))

        await page.goto(f"{base}/#/services/default/reviews")
        await page.wait_for_function("() => document.getElementById('chart-latency').data?.length === 3")
        await page.locator("#logs tbody tr").first.wait_for()
        sub = await page.locator("#service-sub").inner_text()
        assert "reviews-v1" in sub and "reviews-v2" in sub and "reviews-v3" in sub, sub
        await page.screenshot(path=str(artifacts / "service-reviews.png"), full_page=True)

        await page.goto(f"{base}/#/traces/{trace_id}")
        await page.wait_for_function("() => document.querySelectorAll('#waterfall .barlayer .point').length === 2")
        spans = [await row.inner_text() for row in await page.locator("#spans tbody tr").all()]
        assert "frontend.default" in spans[0] and "CLIENT" in spans[0], spans
        assert "reviews.default" in spans[1] and "SERVER" in spans[1], spans
        await page.screenshot(path=str(artifacts / "trace-waterfall.png"), full_page=True)

        # the README's picture: the graph, small
        await page.set_viewport_size({"width": 1000, "height": 600})
        await page.goto(f"{base}/#/graph")
        await page.wait_for_function("() => window.isthmusGraph && window.isthmusGraph.edges().length >= 6")
        await asyncio.sleep(1.0)  # vis-network's layout settles
        await page.screenshot(path=str(artifacts / "readme-dashboard.png"))
        assert errors == [], errors
    finally:
        await page.close()
