"""WorkloadGroup with the real control plane: two VMs of reviews bound to one group (`proxy run --workload-group`)
get its template's labels on their endpoints and run its httpGet probe; when one's health path starts failing,
its endpoint goes unhealthy in pilot's push (the frontend's /config_dump shows it) and requests go to the
healthy one; when it recovers, traffic returns."""

from __future__ import annotations

import asyncio
import collections

import pytest

from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend, Client

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
NS = "wgroup"
HOST = f"reviews.{NS}.svc.cluster.local"


class HealthApp(Backend):
    """Answers /healthz with 200, or 503 while `failing`; anything else with its name."""

    def __init__(self, name: str, host: str, port: int = 0) -> None:
        super().__init__(name)
        self.host, self.fixed_port, self.failing = host, port, False
        self.probes: list[dict[str, str]] = []

    async def start(self):  # type: ignore[no-untyped-def]
        self.server = await asyncio.start_server(self._serve, self.host, self.fixed_port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        if path != "/healthz":
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            self.requests.append(("GET", path, headers))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(self.name), self.name.encode()))
            await writer.drain()
            return True
        self.probes.append({k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)})
        status = b"503 Service Unavailable" if self.failing else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        return False


def group(port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: reviews, namespace: {NS}}}
spec:
  metadata:
    labels: {{class: vm}}
  template:
    serviceAccount: default
    labels: {{app: reviews, tier: template}}
  probe:
    periodSeconds: 1
    timeoutSeconds: 1
    failureThreshold: 2
    successThreshold: 1
    httpGet: {{path: /healthz, port: {port}, httpHeaders: [{{name: X-Probe, value: isthmus}}]}}
"""


async def test_a_failing_probe_takes_the_endpoint_out_and_recovery_brings_it_back(mesh: ControlPlane) -> None:
    a = await HealthApp("a", "127.0.0.1").start()
    b = await HealthApp("b", "127.0.0.2", a.port).start()  # the same app port on another "machine"
    front = await Backend("frontend").start()
    reply = await apply(mesh, group(a.port))
    assert reply["ok"], reply
    sidecar_a = mesh.proxy("reviews", a.port, 9080, NS, "version=a", ("--workload-group", "reviews"))
    sidecar_b = mesh.proxy("reviews", a.port, 9080, NS, "version=b",
                           ("--workload-group", f"{NS}/reviews", "--app-host", "127.0.0.2"))
    frontend = mesh.proxy("frontend", front.port, 9080, NS, "app=frontend")
    client = Client("127.0.0.1", frontend.outbound_port)
    try:
        for sidecar in (sidecar_a, sidecar_b, frontend):
            await sidecar.ready()

        def endpoints() -> list[dict]:
            return [e for c in frontend.config_dump()["clusters"] if c["host"] == HOST for e in c.get("endpoints", ())]

        await eventually(lambda: len(endpoints()) == 2 and all(e.get("healthy", True) for e in endpoints()), 30)
        for e in endpoints():  # the template's labels, the group's metadata labels, the workload's own on top
            assert e["labels"]["class"] == "vm" and e["labels"]["tier"] == "template"
            assert e["labels"]["app"] == "reviews" and e["labels"]["version"] in ("a", "b")
        assert sidecar_a.config_dump()["security"]["probe"] == {"source": f"{NS}/reviews", "kind": "http"}
        await eventually(lambda: a.probes and b.probes, 10)  # each sidecar probes its own app
        assert a.probes[-1]["user-agent"] == "istio-probe/1.0" and a.probes[-1]["x-probe"] == "isthmus"

        async def spread(n: int) -> collections.Counter[str]:
            seen: collections.Counter[str] = collections.Counter()
            for _ in range(n):
                response = await client.request("GET", "http://reviews:9080/r")
                seen[response.text if response.status == 200 else str(response.status)] += 1
            return seen

        assert set(await spread(10)) == {"a", "b"}

        a.failing = True  # a's health path fails: after 2 failed probes its lease carries unhealthy
        await eventually(lambda: [e.get("healthy", True) for e in endpoints()].count(False) == 1, 30)
        unhealthy = next(e for e in endpoints() if not e.get("healthy", True))
        assert unhealthy["labels"]["version"] == "a"
        assert await spread(20) == collections.Counter({"b": 20})

        a.failing = False  # recovered: one passing probe (successThreshold 1) and it is back
        await eventually(lambda: all(e.get("healthy", True) for e in endpoints()) and len(endpoints()) == 2, 30)
        assert set(await spread(10)) == {"a", "b"}
    finally:
        await client.close()
        for app in (a, b, front):
            await app.stop()


async def test_a_sidecar_naming_a_missing_group_is_not_registered(mesh: ControlPlane) -> None:
    app = await Backend("lost").start()
    sidecar = mesh.proxy("lost", app.port, 9080, NS, "", ("--workload-group", "nosuchgroup"))
    try:
        await eventually(lambda: "cannot find WorkloadGroup wgroup/nosuchgroup" in sidecar.process.log_tail(), 30)
        assert not any(c["host"] == f"lost.{NS}.svc.cluster.local" and c.get("endpoints")
                       for c in sidecar.config_dump()["clusters"])
    finally:
        await app.stop()
