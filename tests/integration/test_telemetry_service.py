"""The telemetry service as `isthmus up` runs it, on a locked-down bus: proxies' snapshots published with their
own bus credentials, the services' own metrics (pilot_proxy_convergence_time after a real sidecar's ACK,
pilot_xds_pushes, citadel_server_*), spans and access logs, /api/proxies from pilot."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.launch import free_port, service_process
from proto import subjects
from proto.observations import AccessLogBatch, AccessLogEntry, Span, SpanBatch, ZipkinEndpoint
from tests.integration.conftest import ControlPlane, apply_ok, eventually, route_to
from tests.integration.httpclient import Backend
from tests.telemetry.fixtures import encoded, http, snapshot


def fetch(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none). prometheus-client's parser
    names a counter's samples <name>_total, as OpenMetrics does: either is taken."""
    text = fetch(port, "/metrics")[1].decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name in (name, f"{name}_total") and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def telemetry_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, int]]:
    port = free_port()
    saved = {k: os.environ.get(k) for k in ("ISTHMUS_DASHBOARD_PORT", "ISTHMUS_METRICS_INTERVAL")}
    os.environ.update(ISTHMUS_DASHBOARD_PORT=str(port), ISTHMUS_METRICS_INTERVAL="0.5")
    cp = ControlPlane(tmp_path_factory.mktemp("telemetry"))
    try:
        for name in ("auth", "registry", "pilot", "ca", "telemetry"):
            cp.start_service(name)
        yield cp, port
    finally:
        cp.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def test_a_proxys_snapshots_on_its_own_subject_are_merged_into_metrics(
        telemetry_plane: tuple[ControlPlane, int]) -> None:
    plane, port = telemetry_plane
    bus = await plane.bus("test-proxy", role="proxy")  # a proxy credential of default/default
    try:
        subject = subjects.identity_subject(subjects.TELEMETRY_METRICS, "default", "default")
        await bus.publish(subject, encoded(snapshot(1, [http(12)], proxy="reviews-a")))
        await bus.publish(subject, encoded(snapshot(2, [http(20)], proxy="reviews-a")))
        await bus.flush()
        await eventually(lambda: metric(port, "istio_requests_total", destination_service_name="reviews") == 20, 10)
        # a payload claiming another namespace than its subject's is dropped
        await bus.publish(subject, encoded(snapshot(3, [http(99)], proxy="reviews-a", namespace="prod")))
        await bus.flush()
        await eventually(lambda: metric(port, "isthmus_telemetry_dropped_messages", kind="metrics") >= 1, 10)
        assert metric(port, "istio_requests_total", destination_service_name="reviews") == 20
    finally:
        await bus.close()


async def test_control_plane_metrics_are_merged_per_replica(telemetry_plane: tuple[ControlPlane, int]) -> None:
    _, port = telemetry_plane
    for component in ("pilot", "registry", "ca", "telemetry", "auth"):
        await eventually(lambda: metric(port, "process_resident_memory_bytes", component=component) > 0, 10)
    text = fetch(port, "/metrics")[1].decode()
    assert "# TYPE pilot_proxy_convergence_time histogram" in text
    assert 'replica="' in text and "# TYPE pilot_xds gauge" in text


async def test_convergence_pushes_and_csrs_after_a_real_sidecar_acks_config(
        telemetry_plane: tuple[ControlPlane, int]) -> None:
    plane, port = telemetry_plane
    backend = await Backend("v1").start()
    sidecar = plane.proxy("reviews", backend.port, 9080, "conv", "app=reviews,version=v1")
    try:
        await sidecar.ready()
        await eventually(lambda: metric(port, "citadel_server_success_cert_issuance_count", component="ca") >= 1, 15)
        assert metric(port, "citadel_server_csr_count", component="ca") >= 1
        before = metric(port, "pilot_proxy_convergence_time_count", component="pilot")
        await apply_ok(plane, route_to("conv"), sidecar)
        await eventually(lambda: metric(port, "pilot_proxy_convergence_time_count", component="pilot") > before, 15)
        assert metric(port, "pilot_xds_pushes", component="pilot", type="rds") >= 1
        assert metric(port, "galley_validation_passed", component="pilot") >= 1
        # the registry's own snapshot (every 0.5 s here) need not have come in with pilot's
        await eventually(lambda: metric(port, "auto_registration_success_total", component="registry") >= 1, 15)
        slow = metric(port, "pilot_proxy_convergence_time_bucket", component="pilot", le="30.0")
        assert slow == metric(port, "pilot_proxy_convergence_time_count", component="pilot")  # under 30 s
        status, body = await asyncio.to_thread(fetch, port, "/api/proxies")
        reply = json.loads(body)
        assert status == 200 and reply["ok"] and any(p["namespace"] == "conv" for p in reply["proxies"])
    finally:
        sidecar.process.stop(5)
        await backend.stop()


async def test_spans_and_access_logs_from_the_bus_are_served(telemetry_plane: tuple[ControlPlane, int]) -> None:
    plane, port = telemetry_plane
    bus = await plane.bus("test-proxy-spans", role="proxy")
    try:
        span = Span(trace_id="4e441824ec2b6a44ffdc9bb9a6453df3", id="ffdc9bb9a6453df3", name="get /reviews",
                    kind="SERVER", timestamp=1, duration=5, local_endpoint=ZipkinEndpoint(service_name="reviews"))
        await bus.publish(subjects.identity_subject(subjects.TELEMETRY_SPANS, "default", "default"),
                          msgspec.json.encode(SpanBatch(proxy_id="p", spans=[span])))
        batch = AccessLogBatch(proxy_id="p", namespace="default", service="reviews",
                               entries=[AccessLogEntry(start_time="2026-11-30T12:00:00.000Z", path="/reviews/1")])
        await bus.publish(subjects.identity_subject(subjects.TELEMETRY_LOGS, "default", "default"),
                          msgspec.json.encode(batch))
        await bus.flush()
        await eventually(lambda: fetch(port, "/api/v2/trace/4e441824ec2b6a44ffdc9bb9a6453df3")[0] == 200, 10)
        assert json.loads(fetch(port, "/api/v2/services")[1]) == ["reviews"]
        await eventually(lambda: json.loads(fetch(port, "/api/logs?service=reviews")[1]), 10)
    finally:
        await bus.close()


def test_healthz_and_the_page(telemetry_plane: tuple[ControlPlane, int]) -> None:
    _, port = telemetry_plane
    assert fetch(port, "/healthz") == (200, b"ok\n")
    assert fetch(port, "/")[0] == 200


def test_the_port_listens_on_loopback_only_by_default(telemetry_plane: tuple[ControlPlane, int]) -> None:
    plane, port = telemetry_plane
    log = Path(plane.state_dir / "logs" / "telemetry.log").read_text()
    assert f"http://127.0.0.1:{port}/" in log


def istio_lines(port: int) -> list[str]:
    """The Istio series of this test's label sets (the first replica also holds earlier tests')."""
    return [line for line in fetch(port, "/metrics")[1].decode().splitlines()
            if line.startswith("istio_") and 'response_code="418"' in line]


async def test_two_replicas_fed_by_the_bus_serve_the_same_istio_series(telemetry_plane: tuple[ControlPlane, int]) -> None:
    plane, port = telemetry_plane
    other_port = free_port()
    os.environ["ISTHMUS_DASHBOARD_PORT"] = str(other_port)
    try:
        replica = service_process("telemetry", plane.nats_url, plane.etcd_url, plane.state_dir / "replica2",
                                  credentials=plane.creds).start()
    finally:
        os.environ["ISTHMUS_DASHBOARD_PORT"] = str(port)
    bus = await plane.bus("test-proxy-replicas", role="proxy")
    try:
        await eventually(lambda: _answers(other_port), 30, 0.2)
        subject = subjects.identity_subject(subjects.TELEMETRY_METRICS, "default", "default")
        for seq, (count, instance) in enumerate([(5, "r1"), (9, "r1"), (2, "r2"), (7, "r2")], start=1):
            await bus.publish(subject, encoded(snapshot(seq, [http(count, response_code="418")], proxy="replicated",
                                                        instance=instance)))
        await bus.flush()
        await eventually(lambda: metric(port, "istio_requests_total", response_code="418") == 16, 10)
        await eventually(lambda: metric(other_port, "istio_requests_total", response_code="418") == 16, 10)
        await eventually(lambda: istio_lines(port) == istio_lines(other_port), 10)
        assert len(istio_lines(port)) == 1 + 3 * 22  # requests, and three histograms of 20 buckets, sum, count
    finally:
        await bus.close()
        replica.stop(5)


def _answers(port: int) -> bool:
    try:
        return fetch(port, "/healthz")[0] == 200
    except OSError:
        return False


async def test_the_cas_refusals_are_counted_by_kind(telemetry_plane: tuple[ControlPlane, int]) -> None:
    from proto.ca import SignReply
    from tests.ca import pki

    plane, port = telemetry_plane
    bus = await plane.bus("test-proxy-csr", role="proxy")
    try:
        before = {name: metric(port, name, component="ca") for name in (
            "citadel_server_csr_count", "citadel_server_csr_parsing_err_count",
            "citadel_server_authentication_failure_count")}
        garbage = await bus.call(subjects.CA_SIGN, {"csr_pem": "not a csr", "token": "x"}, SignReply, timeout=10)
        csr_pem, _ = pki.csr()
        forged = await bus.call(subjects.CA_SIGN, {"csr_pem": csr_pem, "token": "not-a-token"}, SignReply, timeout=10)
        assert not garbage.ok and not forged.ok
        await eventually(lambda: metric(port, "citadel_server_csr_count", component="ca")
                         == before["citadel_server_csr_count"] + 2, 10)
        await eventually(lambda: metric(port, "citadel_server_csr_parsing_err_count", component="ca")
                         == before["citadel_server_csr_parsing_err_count"] + 1, 10)
        await eventually(lambda: metric(port, "citadel_server_authentication_failure_count", component="ca")
                         == before["citadel_server_authentication_failure_count"] + 1, 10)
    finally:
        await bus.close()
