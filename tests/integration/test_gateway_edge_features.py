"""The ingress gateway's telemetry and the traffic-management and security features at the edge, through a real
`isthmus gateway run`, config applied through the config API, and curl:

- its access log lines, `istio_requests_total` with reporter="source" and the gateway as source_workload on its
  /stats/prometheus, and a trace: the request's sampled traceparent -> the gateway's span -> the sidecar's span;
- a VirtualService bound to the gateway with a fault abort, a retry, CORS and a mirror, each seen taking effect;
- an AuthorizationPolicy, a RequestAuthentication (JWT at the edge, Istio's sample issuer and tokens) and a
  RateLimit selecting `istio: ingressgateway`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil

import pytest
import pytest_asyncio

from tests.integration.authz_tokens import DEMO_JWT, ISTIO_JWKS, JwksServer
from tests.integration.conftest import ControlPlane, Sidecar, eventually, fqdn
from tests.integration.gateway_edge import GatewayProcess, Httpbin, apply_task, curl, task, until_status
from tests.integration.test_tracing import FAST, SpanSink

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.skipif(not shutil.which("curl"), reason="curl")]


class Edge:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.app, self.mirror_app = Httpbin("httpbin"), Httpbin("httpbin-mirror")

    async def start(self) -> "Edge":
        await self.app.start()
        await self.mirror_app.start()
        self.sidecar: Sidecar = self.plane.proxy("httpbin", self.app.port, 8000, "default", "app=httpbin",
                                                 ("--service-account", "httpbin"), env=FAST)
        self.mirror: Sidecar = self.plane.proxy("httpbin-mirror", self.mirror_app.port, 8000, "default",
                                                "app=httpbin-mirror")
        self.gateway = GatewayProcess(self.plane, "istio-ingressgateway", (80,), env=FAST)
        await asyncio.gather(self.sidecar.ready(60), self.mirror.ready(60))
        await self.gateway.ready()
        await eventually(lambda: all(any(c["host"] == fqdn(s, "default") and c.get("endpoints")
                                         for c in self.gateway.config_dump()["clusters"])
                                     for s in ("httpbin", "httpbin-mirror")), timeout=30)
        await apply_task(self.plane, task("httpbin-gateway.yaml"), self.gateway)
        self.port = self.gateway.listen[80]
        self.host = ("--resolve", f"httpbin.example.com:{self.port}:127.0.0.1")
        await until_status(200, *self.host, self.url("/status/200"))
        return self

    def url(self, path: str) -> str:
        return f"http://httpbin.example.com:{self.port}{path}"

    async def stop(self) -> None:
        await self.app.stop()
        await self.mirror_app.stop()


@pytest.fixture(scope="module", autouse=True)
def short_jwks_refresh():  # type: ignore[no-untyped-def]
    """Before the module's plane starts: pilot fetches each jwksUri every second (docs/security.md)."""
    saved = os.environ.get("ISTHMUS_JWKS_REFRESH_INTERVAL")
    os.environ["ISTHMUS_JWKS_REFRESH_INTERVAL"] = "1"
    yield
    if saved is None:
        os.environ.pop("ISTHMUS_JWKS_REFRESH_INTERVAL", None)
    else:
        os.environ["ISTHMUS_JWKS_REFRESH_INTERVAL"] = saved


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edge(short_jwks_refresh, plane: ControlPlane):  # type: ignore[no-untyped-def]
    world = await Edge(plane).start()
    yield world
    await world.stop()


async def test_the_gateways_access_log_metrics_and_trace(edge: Edge) -> None:
    sink = await SpanSink().start(edge.plane)
    try:
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        code, _ = await curl(*edge.host, "-H", f"traceparent: 00-{trace_id}-{parent}-01", edge.url("/status/200"))
        assert code == 200
        spans = await sink.trace(trace_id, 2)
        by = {span.local_endpoint.service_name: span for _, span in spans}
        gateway = by["istio-ingressgateway.istio-system"]
        server = by["httpbin.default"]
        assert gateway.kind == "CLIENT" and gateway.parent_id == parent  # the caller's span is the gateway's parent
        assert server.kind == "SERVER" and server.parent_id == gateway.id  # the gateway's span is the sidecar's
        subjects = {subject for subject, _ in spans}
        assert any(s.endswith(".istio-system.istio-ingressgateway-service-account") for s in subjects), subjects
    finally:
        await sink.stop()
    line = await edge.gateway.logged('"GET /status/200 HTTP/1.1" 200')
    assert "outbound|8000||httpbin.default.svc.cluster.local" in line and '"httpbin.example.com' in line, line

    def series() -> str | None:
        text = edge.gateway.admin("/stats/prometheus")[1].decode()
        return next((ln for ln in text.splitlines() if ln.startswith("istio_requests_total{")
                     and 'response_code="200"' in ln), None)
    metric = await eventually(series)
    assert 'reporter="source"' in metric and 'source_workload="istio-ingressgateway"' in metric, metric
    assert 'source_workload_namespace="istio-system"' in metric, metric
    assert 'destination_service="httpbin.default.svc.cluster.local"' in metric, metric


EDGE_ROUTES = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "httpbin.example.com"
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /fault
    fault:
      abort:
        httpStatus: 555
        percentage:
          value: 100
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
  - match:
    - uri:
        prefix: /flaky
    retries:
      attempts: 3
      perTryTimeout: 5s
      retryOn: 5xx
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
  - match:
    - uri:
        prefix: /status
    corsPolicy:
      allowOrigins:
      - exact: https://shop.example.com
      allowMethods:
      - GET
      maxAge: "24h"
    mirror:
      host: httpbin-mirror
      port:
        number: 8000
    mirrorPercentage:
      value: 100.0
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
"""

EDGE_POLICIES = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-at-the-edge
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwksUri: "%s"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: edge-deny
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/status/299"]
  - from:
    - source:
        notRequestPrincipals: ["*"]
    to:
    - operation:
        paths: ["/status/201"]
---
apiVersion: isthmus.io/v1alpha1
kind: RateLimit
metadata:
  name: edge-limit
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  match:
  - uri: {prefix: /status/204}
  tokenBucket:
    maxTokens: 2
    tokensPerFill: 2
    fillInterval: 1h
"""


async def test_faults_retries_cors_and_mirroring_at_the_gateway(edge: Edge) -> None:
    await apply_task(edge.plane, EDGE_ROUTES, edge.gateway)
    # fault abort: answered by the gateway, the app never asked
    seen = len(edge.app.requests)
    code, out = await curl(*edge.host, edge.url("/fault/x"))
    assert code == 555 and "fault filter abort" in out and len(edge.app.requests) == seen, out
    # retry: two 503s then 200, all through the gateway's one request
    edge.app.fail_next = 2
    code, _ = await curl(*edge.host, edge.url("/flaky"))
    assert code == 200 and edge.app.fail_next == 0
    assert [r.get("failed") for r in edge.app.requests if r[":path"] == "/flaky"][-3:] == ["503", "503", None]
    # CORS preflight answered at the gateway for an allowed origin, not for another
    preflight = ("-X", "OPTIONS", "-D", "-", "-o", "/dev/null", "-H", "Access-Control-Request-Method: GET")
    code, out = await curl(*edge.host, *preflight, "-H", "Origin: https://shop.example.com", edge.url("/status/200"))
    assert code == 200 and "access-control-allow-origin: https://shop.example.com" in out.lower(), out
    assert "access-control-max-age: 86400" in out.lower(), out
    code, out = await curl(*edge.host, *preflight, "-H", "Origin: https://evil.example.com", edge.url("/status/200"))
    assert "access-control-allow-origin" not in out.lower(), out
    # mirror: httpbin-mirror gets a copy, Host suffixed -shadow (Envoy's)
    code, _ = await curl(*edge.host, edge.url("/status/202?mirrored=1"))
    assert code == 202
    copy = await eventually(lambda: next((r for r in edge.mirror_app.requests if r[":path"] == "/status/202?mirrored=1"),
                                         None))
    assert copy["host"].startswith("httpbin.example.com-shadow"), copy


async def test_authorization_jwt_and_rate_limits_at_the_gateway(edge: Edge) -> None:
    jwks = JwksServer(ISTIO_JWKS)
    try:
        await apply_task(edge.plane, EDGE_POLICIES % jwks.url, edge.gateway)
        await until_status(403, *edge.host, edge.url("/status/299"))  # DENY by path
        code, out = await curl(*edge.host, edge.url("/status/299"))
        assert "RBAC: access denied" in out, out
        # JWT at the edge: a bad token 401, no token where a principal is required 403, Istio's demo token passes
        code, out = await curl(*edge.host, "-H", "Authorization: Bearer not.a.jwt", edge.url("/status/200"))
        assert code == 401, out
        assert (await curl(*edge.host, edge.url("/status/201")))[0] == 403
        await until_status(201, *edge.host, "-H", f"Authorization: Bearer {DEMO_JWT}", edge.url("/status/201"))
        assert (await curl(*edge.host, edge.url("/status/200")))[0] == 200  # no token, no rule: allowed
        # a RateLimit selecting the gateway: two tokens an hour for /status/204, then 429 from the gateway
        seen = len(edge.app.requests)
        codes = [(await curl(*edge.host, edge.url("/status/204")))[0] for _ in range(3)]
        assert codes == [204, 204, 429] and len(edge.app.requests) == seen + 2, codes
    finally:
        jwks.stop()
