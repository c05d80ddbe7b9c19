"""The bookinfo demo as a newcomer runs it, against the real control plane: a demo starts from its own
config whatever an earlier walk-through left (and says what it reset), and a second demo with
`--user jason` joins as a client only, so the walk-through's "route by header" step shows v2 for jason
while the first demo's config and logs stay its own. Every hop between the demo's sidecars is mutual TLS,
and the live line says so. The first demo's ingress gateway answers from outside the mesh with the frontend's
page (bookinfo-gateway.yaml), and a client demo starts no gateway of its own."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from isthmus.launch import ManagedProcess, free_port, project_env
from runtime import bus as busmod
from tests.integration.conftest import ControlPlane, apply, delete, eventually
from tests.integration.httpclient import Client, Response

pytestmark = [pytest.mark.asyncio, pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")]
ROOT = Path(__file__).resolve().parents[2]
BOOKINFO = ROOT / "examples" / "bookinfo"
TOTALS = re.compile(r"total \d+ \(v1=(\d+) v2=(\d+) v3=(\d+) errors=(\d+)\)")
MTLS = re.compile(r"\| (mTLS: .*)$", re.M)
ALL_MTLS = "mTLS: 4/4 sidecars hold a certificate, all hops mutual TLS"


def demo(plane: ControlPlane, log_dir: Path, name: str, *extra: str) -> ManagedProcess:
    argv = [sys.executable, "-m", "examples.bookinfo.demo", "--nats", plane.nats_url, "--log-dir", str(log_dir),
            "--rate", "20", *extra]
    return ManagedProcess(name, argv, log_path=log_dir.parent / f"{name}.out", env=project_env(), cwd=ROOT).start()


def output(proc: ManagedProcess) -> str:
    assert proc.log_path is not None
    return proc.log_path.read_text()


def totals(proc: ManagedProcess) -> list[tuple[int, int, int, int]]:
    """(v1, v2, v3, errors) counted since the demo began, from every status line printed so far."""
    return [(int(m[1]), int(m[2]), int(m[3]), int(m[4])) for m in TOTALS.finditer(output(proc))]


async def counted_next(proc: ManagedProcess, seconds: int, timeout: float = 60.0) -> dict[str, int]:
    """What the demo counts over its next `seconds` status lines (after the line being printed now)."""
    start = len(totals(proc)) + 1  # the line under way may count requests from before

    def printed() -> bool:
        if not proc.is_running:
            raise AssertionError(f"{proc.name} exited:\n{output(proc)}")
        return len(totals(proc)) >= start + seconds

    await eventually(printed, timeout)
    lines = totals(proc)
    begin, end = lines[start - 1], lines[start - 1 + seconds]
    return dict(zip(("v1", "v2", "v3", "errors"), (b - a for a, b in zip(begin, end))))


def mtls_said(proc: ManagedProcess) -> list[str]:
    """The mTLS part of every status line printed so far (examples/bookinfo/mtls.py)."""
    return MTLS.findall(output(proc))


GATEWAY_LEFTOVER = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
"""


async def curl(*argv: str) -> tuple[int, str]:
    """curl's exit code and output (a client nobody here wrote)."""
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "--max-time", "10", *argv,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def get(port: int, path: str) -> Response:
    client = Client("127.0.0.1", port)
    try:
        return await client.request("GET", path, {"host": f"127.0.0.1:{port}"})
    finally:
        await client.close()


async def config_of(plane: ControlPlane, kind: str) -> list[dict]:
    bus = await plane.bus("test-demo")
    try:
        reply = json.loads(await bus.request("isthmus.config.get", json.dumps({"kind": kind}).encode(), timeout=10))
    finally:
        await bus.close()
    assert reply["ok"], reply
    return reply["resources"]


async def test_a_demo_resets_what_a_walk_through_left_and_a_second_one_joins_as_a_client(
        mesh: ControlPlane, tmp_path: Path) -> None:
    # what the walk-through's last steps leave behind: a RateLimit and a fault on the demo's own VirtualService
    for name in ("destination-rule-reviews.yaml", "virtual-service-reviews-test-abort.yaml", "ratelimit-reviews.yaml"):
        assert (await apply(mesh, (BOOKINFO / name).read_text()))["ok"]
    # ... and a deny-all an authorization walk-through left in the demo's namespace
    assert (await apply(mesh, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                              "metadata: {name: allow-nothing, namespace: default}\nspec: {}\n"))["ok"]
    # ... and a gateway walk-through's Gateway on the ingress gateway, whose `*` route would merge with the demo's
    assert (await apply(mesh, GATEWAY_LEFTOVER))["ok"]
    log_dir = tmp_path / "logs"
    ingress_port, https_port = free_port(), free_port()
    first = demo(mesh, log_dir, "first", "--ingress-port", str(ingress_port), "--ingress-https-port", str(https_port))
    second = None
    try:
        # "as user jason" is the last hint line: everything the checks below read is printed by then
        await eventually(lambda: "as user jason" in output(first) or not first.is_running, 90)
        said = output(first)
        assert ("$ isthmus apply -f examples/bookinfo/destination-rule-reviews.yaml "
                "-f examples/bookinfo/virtual-service-reviews-80-10-10.yaml") in said, said
        assert "deleted RateLimit default/reviews" in said, said
        assert "deleted AuthorizationPolicy default/allow-nothing" in said, said
        assert "VirtualService default/reviews was changed since: back to the demo's 80/10/10 split" in said, said
        assert "deleted Gateway default/httpbin-gateway" in said, said
        assert "deleted VirtualService default/httpbin" in said, said
        assert "gateway.networking.istio.io/bookinfo-gateway created" in said, said
        assert await config_of(mesh, "RateLimit") == []

        # from outside the mesh, through the ingress gateway, as the README's curl: the frontend's page; reviews
        # is not exposed (404 from the gateway: no route of bookinfo-gateway's VirtualService matches)
        assert f"  ingress gateway: curl -s http://127.0.0.1:{ingress_port}/  (from outside the mesh" in said, said
        assert f"Gateway port 80 on 127.0.0.1:{ingress_port}" in said, said
        for path in ("/", "/productpage"):
            page = await get(ingress_port, path)
            assert page.status == 200, page.text
            assert json.loads(page.text)["service"] == "frontend" and json.loads(page.text)["reviews"]["status"] == 200
        hidden = await get(ingress_port, "/reviews")
        assert hidden.status == 404 and "VirtualService default/bookinfo" in hidden.text, hidden.text
        gateway_log = log_dir / "demo-istio-ingressgateway.log"
        await eventually(lambda: "outbound|9080||frontend.default.svc.cluster.local" in gateway_log.read_text(),
                         10)  # its access log (written in batches)

        # HTTPS at the gateway with the demo's certificate (`isthmus create secret tls`, credentialName), as the
        # demo's line says: curl trusts it with --cacert, and not without
        ca = tmp_path / "demo-certs" / "example.com.crt"
        assert "secret/bookinfo-credential created" in said, said
        assert (f"  ingress gateway, HTTPS: curl -s --cacert {ca} --resolve bookinfo.example.com:{https_port}:127.0.0.1 "
                f"https://bookinfo.example.com:{https_port}/productpage") in said, said
        resolve = ["--resolve", f"bookinfo.example.com:{https_port}:127.0.0.1",
                   f"https://bookinfo.example.com:{https_port}/productpage"]
        code, text = await curl("--cacert", str(ca), *resolve)
        assert code == 0 and json.loads(text)["service"] == "frontend", (code, text)
        code, text = await curl(*resolve)
        assert code == 60, (code, text)  # curl: the peer's certificate cannot be verified with the system's CAs
        counts = await counted_next(first, 2)
        assert counts["errors"] == 0 and counts["v1"] > 0, output(first)
        assert totals(first)[0][3] == 0, output(first)  # no 429 from a leftover, from the first second

        # mutual TLS between every pair of sidecars, and the live line says so (each sidecar's /certs and
        # inbound counters); a plaintext connection to a reviews sidecar's inbound port (PERMISSIVE: served)
        # turns the line, so it cannot say "all hops" when one was not
        await eventually(lambda: mtls_said(first) and mtls_said(first)[-1] == ALL_MTLS, 30)
        inbound = int(re.search(r"reviews-v1 +app 127\.0\.0\.1:\d+ +sidecar inbound :(\d+)", output(first))[1])
        plain = Client("127.0.0.1", inbound)
        try:
            assert (await plain.request("GET", "/reviews", {"host": "reviews"})).status == 200
        finally:
            await plain.close()
        await eventually(lambda: mtls_said(first)[-1] == "mTLS: 4/4 sidecars hold a certificate, "
                                                         "1 plaintext connection accepted", 30)

        # the README's authorization step: only the frontend's identity may GET from reviews; the demo's
        # traffic (frontend -> reviews over mTLS) flows on, the plaintext caller gets 403 and a log line
        policy = (BOOKINFO / "authorization-policy-reviews.yaml").read_text()
        assert (await apply(mesh, policy))["ok"]

        async def plaintext_status() -> tuple[int, str]:
            client = Client("127.0.0.1", inbound)
            try:
                answer = await client.request("GET", "/reviews", {"host": "reviews"})
                return answer.status, answer.text
            finally:
                await client.close()

        async def refused() -> bool:
            return await plaintext_status() == (403, "RBAC: access denied")
        await eventually(refused, 30)
        counts = await counted_next(first, 2)
        assert counts["errors"] == 0 and counts["v1"] + counts["v2"] + counts["v3"] > 0, output(first)
        sidecar_log = log_dir / "demo-sidecar-reviews-v1.log"
        await eventually(lambda: "rbac_access_denied_matched_policy[none]" in sidecar_log.read_text(), 10)
        reply = await delete(mesh, "AuthorizationPolicy", "reviews-from-frontend")
        assert reply["ok"], reply

        async def served() -> bool:
            return (await plaintext_status())[0] == 200
        await eventually(served, 30)

        jason = (BOOKINFO / "virtual-service-reviews-jason-v2.yaml").read_text()
        reply = await apply(mesh, jason)
        assert reply["ok"], reply
        second = demo(mesh, log_dir, "second", "--user", "jason")
        await eventually(lambda: "traffic:" in output(second) or not second.is_running, 60)
        assert "joining the mesh as a client only" in output(second), output(second)
        assert "ingress gateway" not in output(second), output(second)  # the first demo's serves
        await eventually(lambda: "  dashboard: http" in output(second).split("traffic:", 1)[1], 10)  # a client's too
        await eventually(lambda: mtls_said(second) and mtls_said(second)[-1] == "mTLS: 1/1 sidecars hold a "
                         "certificate, all hops mutual TLS", 30)
        jasons = await counted_next(second, 2)
        assert jasons["v2"] > 0 and jasons["v1"] == jasons["v3"] == jasons["errors"] == 0, output(second)
        others = await counted_next(first, 2)  # the rest go to v1, as the walk-through says
        assert others["v1"] > 0 and others["v2"] == others["v3"] == others["errors"] == 0, output(first)
        [vs] = [r for r in await config_of(mesh, "VirtualService") if r["metadata"]["name"] == "reviews"]
        assert vs["spec"]["http"][0]["match"][0]["headers"]["end-user"] == {"exact": "jason"}  # not re-applied

        # each demo logs to its own files: the client's sidecar never wrote into the first demo's
        assert (log_dir / "demo-jason-frontend-v1.log").exists()
        assert (log_dir / "demo-jason-sidecar-frontend-v1.log").exists()
        assert (log_dir / "demo-sidecar-frontend-v1.log").read_text().count("--- ") == 1
    finally:
        for proc in (second, first):
            if proc is not None:
                proc.stop(15)
