"""Proof with a real Prometheus (Debian's `prometheus`, installed by `make deps`): it scrapes the telemetry
service's /metrics every second on loopback while two proxies publish known cumulative snapshots on the bus
with a real proxy credential, one of them restarting half way. Istio's PromQL answers what was sent:

    sum(rate(istio_requests_total{destination_service_name="reviews",response_code="200",reporter="destination"}[1m]))
    histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket[1m])) by (le))

and the restart is no counter reset for Prometheus (resets() is 0, so rate() neither goes negative nor jumps).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.launch import free_port
from proto import subjects
from tests.integration.conftest import ControlPlane, eventually
from tests.telemetry.fixtures import encoded, http, snapshot

RATE = ('sum(rate(istio_requests_total{destination_service_name="reviews",response_code="200",'
        'reporter="destination"}[1m]))')
P99 = "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket[1m])) by (le))"
RESETS = ('sum(resets(istio_requests_total{destination_service_name="reviews",response_code="200",'
          'reporter="destination"}[2m]))')
PER_SECOND = (6, 4)  # requests per second of proxy a and proxy b: 10 in all
FEED_SECONDS = 66
DURATION_MS = 7.0  # every request: Istio's bucket (5, 10], so p99 interpolates to 5 + 5 * 0.99 = 9.95


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/sbin:/usr/local/bin")


pytestmark = pytest.mark.skipif(prometheus_binary() is None,
                                reason="Debian's prometheus is not installed (`make deps` installs it with apt-get; "
                                       "this host could not)")


class Prometheus:
    def __init__(self, state: Path, target_port: int) -> None:
        self.port = free_port()
        config = state / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                          "  - job_name: isthmus\n    metrics_path: /metrics\n    static_configs:\n"
                          f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log = open(state / "logs" / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [prometheus_binary() or "prometheus", f"--config.file={config}", f"--storage.tsdb.path={state / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> float | None:
        body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def query_range(self, promql: str, start: float, end: float) -> list[float]:
        body = self.get("/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": promql, "start": start, "end": end, "step": 1}))
        return [float(v) for series in body["data"]["result"] for _, v in series["values"]]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Prometheus]]:
    port = free_port()
    saved = os.environ.get("ISTHMUS_DASHBOARD_PORT")
    os.environ["ISTHMUS_DASHBOARD_PORT"] = str(port)
    cp = ControlPlane(tmp_path_factory.mktemp("prometheus"))
    prometheus = None
    try:
        for name in ("auth", "registry", "pilot", "ca", "telemetry"):  # every service's own metrics in the scrape too
            cp.start_service(name)
        prometheus = Prometheus(cp.state_dir, port)
        yield cp, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        cp.stop()
        if saved is None:
            os.environ.pop("ISTHMUS_DASHBOARD_PORT", None)
        else:
            os.environ["ISTHMUS_DASHBOARD_PORT"] = saved


async def test_prometheus_reads_rate_and_p99_of_what_proxies_sent_through_a_restart(
        scraped: tuple[ControlPlane, Prometheus]) -> None:
    plane, prometheus = scraped
    await eventually(prometheus.ready, 30, 0.2)
    bus = await plane.bus("test-proxy", role="proxy")
    subject = subjects.identity_subject(subjects.TELEMETRY_METRICS, "default", "default")
    counts = {"a": 1000, "b": 500}  # both proxies had counted before: only increases make the rate
    instances = {"a": "a-1", "b": "b-1"}
    seq = 0
    began = time.time()
    try:
        for second in range(FEED_SECONDS):  # past a minute: rate()[1m] then looks at a window full of samples
            seq += 1
            if second == FEED_SECONDS // 2:  # proxy b restarts: its new instance counts from zero
                instances["b"], counts["b"] = "b-2", 0
            for (proxy, rate) in zip(("a", "b"), PER_SECOND):
                counts[proxy] += rate
                await bus.publish(subject, encoded(snapshot(seq, [http(counts[proxy], duration_ms=DURATION_MS)],
                                                            proxy=proxy, instance=instances[proxy])))
            await bus.flush()
            await asyncio.sleep(1.0)
        ended = time.time()
        # 10 requests per publish, a publish a second, or slower on a loaded machine: what was sent per second
        sent = sum(PER_SECOND) * FEED_SECONDS / (ended - began)
        rate = await asyncio.to_thread(prometheus.query, RATE)
        assert rate is not None and 0.8 * sent <= rate <= 1.2 * sent, (rate, sent)
        p99 = await asyncio.to_thread(prometheus.query, P99)
        assert p99 is not None and 9.0 <= p99 <= 10.0, p99  # Prometheus' interpolation in (5, 10]: 9.95
        assert await asyncio.to_thread(prometheus.query, RESETS) == 0  # the restart is no reset for Prometheus
        # rate() over the whole run, through the restart: never negative, never a jump
        rates = await asyncio.to_thread(prometheus.query_range, RATE.replace("[1m]", "[10s]"), began + 15, ended - 1)
        # (summing the proxies' raw values instead would drop at the restart: Prometheus would count the whole new
        # sum, ~1600 requests, as an increase, over 100 per second in a 10 s window)
        assert rates and min(rates) >= 0 and max(rates) <= 2 * sum(PER_SECOND), rates
    finally:
        await bus.close()


async def test_prometheus_takes_the_whole_scrape_with_every_services_own_metrics(
        scraped: tuple[ControlPlane, Prometheus]) -> None:
    _, prometheus = scraped
    await eventually(prometheus.ready, 30, 0.2)
    await eventually(lambda: prometheus.query('up{job="isthmus"}') == 1, 30, 0.5)  # a scrape that fails to parse: 0
    for component in ("auth", "registry", "pilot", "ca", "telemetry"):
        await eventually(lambda: prometheus.query(
            f'sum(process_resident_memory_bytes{{component="{component}"}})'), 30, 0.5)
    assert await asyncio.to_thread(prometheus.query, 'sum(pilot_xds{component="pilot"})') is not None
    assert await asyncio.to_thread(prometheus.query, 'count(pilot_proxy_convergence_time_bucket)') == 9
