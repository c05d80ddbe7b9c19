"""Istio's standard metrics from real sidecars on a locked-down plane (nats-server, etcd, auth, registry, pilot,
ca): productpage's sidecar calls reviews' sidecar over mutual TLS (auto mTLS), HTTP and opaque TCP. Both
sidecars' /stats/prometheus show the calls, parsed with prometheus_client's parser: reporter source on the
caller, destination on the callee, the workloads (the callee learns the caller's from the peer metadata header,
which its app never sees), principals, mutual_tls, response codes, a 503 and a TCP connection. On the bus, as
the telemetry service receives them: the callee's periodic snapshots (seq + 1 each, one instance), and the one
the caller sends when it stops, with the same numbers as its scrape."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.launch import free_port
from proto.observations import HTTP_LABELS, PEER_METADATA_HEADER, MetricsSnapshot
from proto.subjects import TELEMETRY_METRICS
from runtime import bus as busmod
from tests.integration.conftest import ControlPlane, eventually, fqdn
from tests.integration.httpclient import Backend, Client

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

_runs = itertools.count(1)


class Reviews(Backend):
    """reviews' app: 200 with its name, 503 on /fail."""

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        self.requests.append((method, path, headers))
        status, body = (b"503 Service Unavailable", b"down") if path == "/fail" else (b"200 OK", b"reviews")
        writer.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        return True


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(b"echo " + line)
        await writer.drain()
    writer.close()


def samples(text: str, name: str, **match: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of `name` whose labels include `match`."""
    return [(s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items())]


def value(text: str, name: str, **match: str) -> float:
    return sum(v for _, v in samples(text, name, **match))


async def test_both_sidecars_report_the_call_and_the_snapshot_on_the_bus_agrees(mesh: ControlPlane):
    ns = f"metrics{next(_runs)}"
    app = await Reviews("reviews").start()
    tcp_app = await asyncio.start_server(echo, "127.0.0.1", 0)
    tcp_local = free_port()
    watcher = await mesh.nats_client("telemetry")  # the telemetry service's credentials
    snapshots: list[tuple[str, MetricsSnapshot]] = []

    async def on_snapshot(msg) -> None:  # type: ignore[no-untyped-def]
        snapshots.append((msg.subject, busmod.decode(msg.data, MetricsSnapshot)))

    await watcher.subscribe(f"{TELEMETRY_METRICS}.>", cb=on_snapshot)
    try:
        server = mesh.proxy("reviews", app.port, 9080, ns, "app=reviews,version=v2",
                            ("--service-account", "bookinfo-reviews", "--cluster", "east", "--metrics-interval", "1",
                             "--app-tcp", f"9000={tcp_app.sockets[0].getsockname()[1]}"))
        client = mesh.proxy("productpage", (await Backend("productpage").start()).port, 9080, ns,
                            "app=productpage,version=v1",
                            ("--service-account", "bookinfo-productpage", "--metrics-interval", "3600",
                             "--tcp", f"reviews:9000={tcp_local}"))
        await asyncio.gather(server.ready(60), client.ready(60))
        host = fqdn("reviews", ns)
        await eventually(lambda: client.endpoints(host) >= 1, 30)

        http = Client("127.0.0.1", client.outbound_port)
        try:
            for _ in range(3):
                assert (await http.request("GET", f"http://reviews:9080/reviews/1")).status == 200
            assert (await http.request("GET", "http://reviews:9080/fail")).status == 503
        finally:
            await http.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_local)
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"echo hello\n"
        writer.close()

        assert all(PEER_METADATA_HEADER not in headers for _, _, headers in app.requests)  # removed before the app
        # Istio's default retry policy (2 retries on 503) tries /fail three times: the callee reports each try
        assert len(app.requests) == 3 + 3

        caller_id = f"spiffe://cluster.local/ns/{ns}/sa/bookinfo-productpage"
        callee_id = f"spiffe://cluster.local/ns/{ns}/sa/bookinfo-reviews"
        call = dict(source_workload="productpage-v1", source_workload_namespace=ns, source_app="productpage",
                    source_version="v1", destination_workload="reviews-v2", destination_workload_namespace=ns,
                    destination_service=host, destination_service_name="reviews", destination_service_namespace=ns,
                    destination_app="reviews", destination_version="v2", destination_cluster="east",
                    source_principal=caller_id, destination_principal=callee_id)

        def scraped(sidecar) -> str:  # type: ignore[no-untyped-def]
            status, body = sidecar.admin("/stats/prometheus")
            assert status == 200
            return body.decode()

        def both_closed() -> tuple[str, str] | None:
            out, into = scraped(client), scraped(server)
            done = (value(out, "istio_tcp_connections_closed_total", reporter="source") == 1
                    and value(into, "istio_tcp_connections_closed_total", reporter="destination") == 1
                    and value(into, "istio_requests_total", reporter="destination") == 6)
            return (out, into) if done else None

        out, into = await eventually(both_closed, 15)
        # the caller's sidecar: reporter=source; Istio's client side reports connection_security_policy unknown
        assert value(out, "istio_requests_total", reporter="source", response_code="200", response_flags="-",
                     connection_security_policy="unknown", request_protocol="http", **call) == 3
        assert value(out, "istio_requests_total", reporter="source", response_code="503", **call) == 1
        assert value(out, "istio_request_duration_milliseconds_count", reporter="source", response_code="200",
                     **call) == 3
        assert value(out, "istio_response_bytes_sum", reporter="source", response_code="200", **call) == 3 * 7
        # the callee's sidecar: reporter=destination, the caller from its certificate and its peer metadata
        assert value(into, "istio_requests_total", reporter="destination", response_code="200",
                     connection_security_policy="mutual_tls", source_canonical_service="productpage",
                     **call) == 3
        assert value(into, "istio_requests_total", reporter="destination", response_code="503",
                     connection_security_policy="mutual_tls", **call) == 3
        tcp_call = {k: v for k, v in call.items() if not k.startswith("source_") or k == "source_principal"}
        # (inbound TCP has no peer metadata: the source labels but the principal and namespace are unknown there)
        for sidecar_text, reporter in ((out, "source"), (into, "destination")):
            assert value(sidecar_text, "istio_tcp_connections_opened_total", reporter=reporter,
                         request_protocol="tcp", **tcp_call) == 1
            assert value(sidecar_text, "istio_tcp_received_bytes_total", reporter=reporter, **tcp_call) == 6
            assert value(sidecar_text, "istio_tcp_sent_bytes_total", reporter=reporter, **tcp_call) == 11
        assert value(into, "istio_tcp_connections_closed_total", reporter="destination",
                     connection_security_policy="mutual_tls", source_workload="unknown", **tcp_call) == 1

        # the callee publishes every second (--metrics-interval 1), cumulative, seq + 1 each
        callee = f"{TELEMETRY_METRICS}.{ns}.bookinfo-reviews"

        def callee_counted() -> list[MetricsSnapshot] | None:
            mine = [snap for subj, snap in snapshots if subj == callee]
            return mine if mine and sum(s.requests for s in mine[-1].http) == 6 else None

        theirs = await eventually(callee_counted, 15)
        assert [s.seq for s in theirs] == list(range(theirs[0].seq, theirs[0].seq + len(theirs)))
        assert len({s.instance for s in theirs}) == 1
        # the caller's interval is an hour: what it sends when it stops is its one snapshot, with every count
        subject = f"{TELEMETRY_METRICS}.{ns}.bookinfo-productpage"
        assert not any(subj == subject for subj, _ in snapshots)
        # a graceful stop drains for up to 5 s (Istio's terminationDrainDuration) and then publishes; on a loaded
        # machine that can take well over 10 s, and a SIGKILL after the wait would lose the snapshot
        client.process.stop(40)
        snapshot = (await eventually(lambda: [snap for subj, snap in snapshots if subj == subject], 30))[-1]
        assert (snapshot.seq, snapshot.namespace) == (1, ns)
        by_code = {}
        for series in snapshot.http:
            labels = dict(zip(HTTP_LABELS, series.labels))
            if labels["destination_workload"] == "reviews-v2":
                by_code[labels["response_code"]] = series
        assert (by_code["200"].requests, by_code["503"].requests) == (3, 1)
        assert sum(by_code["200"].duration_ms.counts) == 3 and by_code["200"].response_bytes.sum == 21
        (tcp,) = [s for s in snapshot.tcp if s.closed]
        assert (tcp.opened, tcp.closed, tcp.received_bytes, tcp.sent_bytes) == (1, 1, 6, 11)
        # each sidecar publishes under its own identity only (proto/busauth.py)
        assert {subj for subj, snap in snapshots if snap.namespace == ns} == {subject, callee}
    finally:
        await watcher.close()
        await app.stop()
        tcp_app.close()
