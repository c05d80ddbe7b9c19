"""The clustered topology (isthmus/launch/cluster.py: 3 NATS nodes, 3 etcd members, 2 replicas of every
service) with the demo's ingress gateway and workloads, their sidecars on different NATS nodes; traffic
gateway -> frontend's sidecar -> reviews' sidecar under a steady paced load while one process at a time is
killed with SIGKILL: a NATS node, an etcd member, the pilot leader, a registry replica, a ca replica.

Must hold (no proxy is killed, so no request may fail): 0 failed requests per fault; a new pilot leader
within a few lease TTLs; a config applied during each fault ACKed by every proxy; every stored resource
still there at the end. The figures go to test-artifacts/cluster-faults.json (docs/ha.md shows one run).
Faults accumulate (nothing is restarted): the last fault runs on 2 NATS nodes, 2 etcd members, 1 replica each.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from examples.bookinfo.ingress import NAME as GATEWAY_NAME
from examples.bookinfo.ingress import Ingress, gateway_argv, wait_ingress
from examples.bookinfo.workloads import Workload, start_workloads, wait_converged, wait_sidecars_ready
from isthmus.launch import ManagedProcess, Supervisor, free_port, project_env
from isthmus.launch.cluster import ClusterPlane
from isthmus.launch.credentials import ETCD_SERVICE_USER
from proto.subjects import CONFIG_APPLY, XDS_STATUS
from proto.xds import ProxyStatusReply, ProxyStatusRequest
from runtime import bus as busmod
from runtime.clientconfig import ENV as CONFIG_ENV
from runtime.settings import etcd_endpoints
from runtime.store import CONFIG_PREFIX, LEADER_PREFIX, Store, grpc_target
from tests.integration.httpclient import Client

pytestmark = pytest.mark.asyncio

LEASE_TTL = 2  # seconds: leader and registration leases, short so a failover shows within a test
LOAD_RPS = 150  # the paced load's rate (at most: a loaded 2-core machine may serve fewer)
LOAD_WORKERS = 6
FAULT_WINDOW = 5.0  # seconds of load per fault; the kill comes KILL_AFTER seconds in
KILL_AFTER = 1.0
CONVERGE_TIMEOUT = 30.0  # a config applied during a fault must be ACKed by every proxy within this
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "cluster-faults.json"

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cluster-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cluster-frontend, namespace: default}
spec:
  hosts: ["*"]
  gateways: [cluster-gateway]
  http:
  - route:
    - destination: {host: frontend, port: {number: 9080}}
"""


def reviews_policy(seconds: int) -> str:
    """A DestinationRule every proxy holds (reviews' cluster policy); each fault applies a new connectTimeout."""
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  trafficPolicy: {{connectionPool: {{tcp: {{connectTimeout: {seconds}s}}}}}}
"""


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


async def paced_load(port: int, duration: float, rps: float = LOAD_RPS, workers: int = LOAD_WORKERS) -> LoadResult:
    """GET / on the gateway from `workers` keep-alive connections, paced to `rps` in all, for `duration` seconds.
    A request fails when the gateway does not answer 200, or the frontend reports reviews did not answer 200
    (the frontend answers 200 either way, as bookinfo's productpage does)."""
    result = LoadResult()
    loop = asyncio.get_running_loop()
    began = loop.time()
    interval = workers / rps

    async def worker(offset: float) -> None:
        client = Client("127.0.0.1", port, timeout=5.0)
        due = began + offset
        try:
            while due < began + duration:
                await asyncio.sleep(max(0.0, due - loop.time()))
                due += interval
                result.sent += 1
                try:
                    response = await client.request("GET", "/", {"host": "bookinfo.example"})
                    reviews = json.loads(response.body).get("reviews", {}) if response.status == 200 else {}
                    if response.status != 200 or reviews.get("status") != 200:
                        result.failed += 1
                        result.errors.append(f"{response.status} {bytes(response.body)[:200]!r}")
                    else:
                        result.versions.add(reviews.get("version", ""))
                except (OSError, asyncio.TimeoutError, ConnectionError, ValueError) as exc:
                    result.failed += 1
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    await client.close()
        finally:
            await client.close()

    await asyncio.gather(*(worker(i * interval / workers) for i in range(workers)))
    result.seconds = loop.time() - began
    return result


@dataclass
class Topology:
    plane: ClusterPlane
    supervisor: Supervisor
    workloads: list[Workload]
    ingress: Ingress
    figures: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, bytes] = field(default_factory=dict)  # the etcd keys of what the test applied

    @property
    def operator(self) -> Any:
        return self.plane.operator

    async def store(self) -> Store:
        return await Store.connect(*grpc_target(etcd_endpoints(self.plane.etcd_url)), wait=10,
                                   user=ETCD_SERVICE_USER, password=self.plane.etcd_service_password)

    async def apply(self, text: str, attempts_for: float = 15.0) -> tuple[int, int]:
        """Apply through the config API; retried while pilot fails over. (revision, attempts)."""
        bus = await busmod.connect(self.plane.nats_url, "test-cluster-apply", auth=self.operator)
        try:
            deadline = time.monotonic() + attempts_for
            attempts = 0
            while True:
                attempts += 1
                try:
                    reply = json.loads(await bus.request(CONFIG_APPLY, text.encode(), timeout=5))
                    assert reply["ok"], reply
                    return reply["revision"], attempts
                except busmod.BusError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await bus.close()

    async def acked_by_all(self, revision: int) -> dict[str, int]:
        """Wait until pilot reports every proxy (3 sidecars and the gateway) ACKed `revision` or newer and each
        holds it (/config_dump); the versions pilot reports, by proxy."""
        bus = await busmod.connect(self.plane.nats_url, "test-cluster-status", auth=self.operator)
        try:
            deadline = time.monotonic() + CONVERGE_TIMEOUT
            last: Any = None
            while time.monotonic() < deadline:
                try:
                    last = await bus.call(XDS_STATUS, ProxyStatusRequest(), ProxyStatusReply, 3)
                    live = [p for p in last.proxies if p.updated_at >= time.time() - 120]
                    if (len(live) >= len(self.workloads) + 1
                            and all(p.ok and p.version >= revision for p in live)):
                        await wait_converged(self.workloads, revision, timeout=5)
                        await wait_ingress(self.ingress, revision, timeout=5)
                        return {p.proxy_id: p.version for p in live}
                except busmod.BusError as exc:
                    last = exc
                await asyncio.sleep(0.1)
            raise AssertionError(f"revision {revision} not ACKed by every proxy in {CONVERGE_TIMEOUT}s: {last!r}")
        finally:
            await bus.close()

    async def leader(self, service: str) -> str:
        store = await self.store()
        try:
            entry = await store.get(f"{LEADER_PREFIX}{service}")
            return entry.value.decode() if entry else ""
        finally:
            await store.close()

    def replica(self, service: str, instance: str) -> ManagedProcess:
        return next(p for p in self.plane.services[service] if p.name == instance)

    async def fault(self, name: str, victim: ManagedProcess, timeout_seconds: int) -> dict[str, Any]:
        """Load for FAULT_WINDOW seconds; SIGKILL `victim` KILL_AFTER seconds in; then apply a change and wait
        for every proxy's ACK of it. The figures, also kept in self.figures[name]."""
        load = asyncio.ensure_future(paced_load(self.ingress.port, FAULT_WINDOW))
        await asyncio.sleep(KILL_AFTER)
        assert victim.popen is not None and victim.is_running, victim
        victim.popen.kill()
        killed = time.monotonic()
        await asyncio.to_thread(victim.popen.wait)
        revision, attempts = await self.apply(reviews_policy(timeout_seconds))
        applied = time.monotonic()
        await self.acked_by_all(revision)
        figures = {"victim": victim.name, "apply_s": round(applied - killed, 2), "apply_attempts": attempts,
                   "acked_by_all_proxies_s": round(time.monotonic() - killed, 2)}
        result = await load
        figures.update(requests=result.sent, failed=result.failed, rps=round(result.rps), errors=result.errors[:5])
        self.figures[name] = figures
        return figures


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    began = time.monotonic()
    plane = ClusterPlane.start(tmp_path_factory.mktemp("cluster"), lease_ttl=LEASE_TTL)
    saved = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(plane.operator_config)  # the sidecars mint their bus credentials with it
    supervisor = Supervisor(report=lambda line: None)  # tracks and stops; run() is never called: no restarts
    try:
        asyncio.run(plane.start_services())
        nodes = [proc.url or "" for proc in plane.nats]
        logs = plane.state_dir / "logs"
        # each workload's sidecar on its own NATS node (nats-py learns the others from it: connect_urls)
        workloads = [*start_workloads(nodes[0], supervisor, logs, [("frontend", "v1")]),
                     *start_workloads(nodes[1], supervisor, logs, [("reviews", "v1")]),
                     *start_workloads(nodes[2], supervisor, logs, [("reviews", "v2")])]
        port, admin = free_port(), free_port()
        gateway = supervisor.add(ManagedProcess(GATEWAY_NAME, gateway_argv(nodes[2], port, free_port(), admin),
                                                log_path=logs / "gateway.log", env=project_env()))
        topology = Topology(plane, supervisor, workloads, Ingress(gateway, port, 0, admin))

        async def ready() -> None:
            revision, _ = await topology.apply(GATEWAY + reviews_policy(10))
            await wait_sidecars_ready(workloads)
            await wait_ingress(topology.ingress, revision)
            await topology.acked_by_all(revision)

        asyncio.run(ready())
        topology.figures["startup_s"] = round(time.monotonic() - began, 1)
        yield topology
    finally:
        supervisor.stop_all()
        plane.stop()
        if saved is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = saved


async def test_traffic_crosses_gateway_and_two_sidecars_on_different_nats_nodes(topology: Topology) -> None:
    result = await paced_load(topology.ingress.port, 2.0)
    assert result.sent >= 50 and result.failed == 0, (result.sent, result.errors[:5])
    assert result.versions == {"v1", "v2"}, result.versions  # both reviews sidecars, each on its own NATS node
    store = await topology.store()
    try:
        entries, _ = await store.list(CONFIG_PREFIX)
    finally:
        await store.close()
    topology.applied = {e.key: e.value for e in entries}
    assert len(topology.applied) == 3, sorted(topology.applied)  # the Gateway, its VirtualService, the policy
    topology.figures["baseline"] = {"requests": result.sent, "failed": 0, "rps": round(result.rps)}


async def test_killing_a_nats_node_fails_no_request_and_config_still_reaches_every_proxy(topology: Topology) -> None:
    figures = await topology.fault("nats_node", topology.plane.nats[1], 11)  # reviews v1's sidecar's node
    assert figures["failed"] == 0, figures


async def test_killing_an_etcd_member_fails_no_request_and_config_still_reaches_every_proxy(
        topology: Topology) -> None:
    figures = await topology.fault("etcd_member", topology.plane.etcd[0], 12)  # the first: every client's pick
    assert figures["failed"] == 0, figures


async def test_killing_the_pilot_leader_elects_the_other_within_the_lease_and_fails_no_request(
        topology: Topology) -> None:
    leader = await topology.leader("pilot")
    assert leader in ("pilot-1", "pilot-2"), leader
    other = "pilot-2" if leader == "pilot-1" else "pilot-1"
    task = asyncio.ensure_future(topology.fault("pilot_leader", topology.replica("pilot", leader), 13))
    await asyncio.sleep(KILL_AFTER)
    killed = time.monotonic()
    while await topology.leader("pilot") != other:
        assert time.monotonic() - killed < LEASE_TTL * 3 + 10, "no new pilot leader"
        await asyncio.sleep(0.05)
    elected = time.monotonic() - killed
    figures = await task
    figures["new_leader_s"] = round(elected, 2)
    assert figures["failed"] == 0, figures
    assert elected <= LEASE_TTL * 2 + 3, elected  # the lease's TTL, plus a campaign round (ttl/3) and load


async def test_killing_a_registry_replica_keeps_every_endpoint_and_fails_no_request(topology: Topology) -> None:
    leader = await topology.leader("registry") or "registry-1"  # the leader: the one that publishes events
    figures = await topology.fault("registry_replica", topology.replica("registry", leader), 14)
    assert figures["failed"] == 0, figures
    await asyncio.sleep(LEASE_TTL * 2)  # registrations kept alive through the other replica, not expired
    front = next(w for w in topology.workloads if w.service == "frontend")
    client = Client("127.0.0.1", front.admin_port)
    try:
        dump = json.loads((await client.request("GET", "/config_dump")).body)
    finally:
        await client.close()
    healthy = [e for c in dump["clusters"] if c["host"] == "reviews.default.svc.cluster.local"
               for e in c.get("endpoints", ()) if e.get("healthy", True)]
    assert len(healthy) == 2, dump["clusters"]


async def test_killing_a_ca_replica_fails_no_request(topology: Topology) -> None:
    figures = await topology.fault("ca_replica", topology.replica("ca", "ca-1"), 15)
    assert figures["failed"] == 0, figures


async def test_no_stored_resource_is_lost_and_the_figures_are_recorded(topology: Topology) -> None:
    store = await topology.store()
    try:
        entries, _ = await store.list(CONFIG_PREFIX)
    finally:
        await store.close()
    now = {e.key: e.value for e in entries}
    assert topology.applied, "the first test records what was stored"
    lost = sorted(set(topology.applied) - set(now))
    assert lost == [], lost
    policy = next(v for k, v in now.items() if "/DestinationRule/" in k)
    assert b"15s" in policy, policy  # the change applied during the last fault is the one stored
    topology.figures["stored_resources_lost"] = len(lost)
    topology.figures["topology"] = {"nats_nodes": 3, "etcd_members": 3, "replicas_per_service": 2,
                                    "proxies": len(topology.workloads) + 1, "lease_ttl_s": LEASE_TTL,
                                    "load_rps_target": LOAD_RPS, "fault_window_s": FAULT_WINDOW,
                                    "python": sys.version.split()[0], "cpus": os.cpu_count()}
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(topology.figures, indent=2) + "\n")
