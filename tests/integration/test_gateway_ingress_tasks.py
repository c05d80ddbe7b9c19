"""Istio's ingress tasks end to end through the user's path: a real `isthmus gateway run --name
istio-ingressgateway`, the tasks' YAML applied unchanged through the config API, secrets made with the task's
openssl commands and stored with `isthmus create secret`, and curl / `openssl s_client` as the clients.

  "Ingress gateways"                            test_ingress_gateways_task
  "Secure gateways" (SIMPLE, rotation, SNI, MUTUAL) test_secure_gateways_task
  "Ingress gateway without TLS termination"     test_ingress_gateway_without_tls_termination_task
  httpsRedirect                                 test_an_http_server_with_https_redirect_answers_301
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import time
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integration.conftest import ControlPlane, Sidecar, eventually, fqdn
from tests.integration.gateway_edge import (GatewayProcess, Httpbin, apply_task, curl, isthmus, istio_certs,
                                            run, served_subject, task, until_status)

pytestmark = [pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="curl, openssl")]


class Edge:
    """httpbin (port 8000) and helloworld (port 5000) behind real sidecars in `default`, as the tasks deploy
    them, and the ingress gateway on Gateway ports 80 and 443."""

    def __init__(self, plane: ControlPlane, certs: Path) -> None:
        self.plane, self.certs = plane, certs
        self.httpbin_app, self.helloworld_app = Httpbin("httpbin"), Httpbin("helloworld")
        self.httpbin: Sidecar | None = None

    async def start(self) -> "Edge":
        await self.httpbin_app.start()
        await self.helloworld_app.start()
        self.httpbin_log = self.plane.state_dir / "logs" / "httpbin-access.log"
        self.httpbin = self.plane.proxy("httpbin", self.httpbin_app.port, 8000, "default", "app=httpbin",
                                        ("--service-account", "httpbin", "--access-log", str(self.httpbin_log)),
                                        env={"ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL": "0.2"})
        self.helloworld = self.plane.proxy("helloworld", self.helloworld_app.port, 5000, "default",
                                           "app=helloworld,version=v1")
        self.gateway = GatewayProcess(self.plane, "istio-ingressgateway", (80, 443))
        await asyncio.gather(self.httpbin.ready(60), self.helloworld.ready(60), istio_certs(self.certs))
        await self.gateway.ready()
        await eventually(lambda: self.gateway.config_dump() and any(
            c["host"] == fqdn("httpbin", "default") and c.get("endpoints") for c in self.gateway.config_dump()["clusters"]),
            timeout=30)
        self.http, self.https = self.gateway.listen[80], self.gateway.listen[443]
        return self

    async def stop(self) -> None:
        await self.httpbin_app.stop()
        await self.helloworld_app.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edge(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    world = await Edge(plane, tmp_path_factory.mktemp("certs")).start()
    yield world
    await world.stop()


async def test_ingress_gateways_task(edge: Edge) -> None:
    await apply_task(edge.plane, task("httpbin-gateway.yaml"), edge.gateway)
    port = edge.http
    resolve = ("--resolve", f"httpbin.example.com:{port}:127.0.0.1")
    # snip_accessing_ingress_services_1: curl -s -I -HHost:httpbin.example.com http://$INGRESS_HOST:$INGRESS_PORT/status/200
    out = await until_status(200, "-I", "-HHost:httpbin.example.com", f"http://127.0.0.1:{port}/status/200")
    assert edge.httpbin_app.requests[-1][":path"] == "/status/200", out
    assert (await curl(*resolve, f"http://httpbin.example.com:{port}/status/200"))[0] == 200
    assert (await curl(*resolve, f"http://httpbin.example.com:{port}/delay/1"))[0] == 200
    # snip_accessing_ingress_services_2: a path the VirtualService does not route
    seen = len(edge.httpbin_app.requests)
    assert (await curl("-I", "-HHost:httpbin.example.com", f"http://127.0.0.1:{port}/headers"))[0] == 404
    # a host no Gateway server names
    assert (await curl("--resolve", f"other.example.com:{port}:127.0.0.1", f"http://other.example.com:{port}/status/200"))[0] == 404
    assert len(edge.httpbin_app.requests) == seen  # neither reached the app
    line = await edge.gateway.logged('"HEAD /headers HTTP/1.1" 404 NR')
    assert '"httpbin.example.com"' in line, line

    # the gateway -> sidecar hop is mutual TLS: the sidecar's inbound took TLS, and its access log names the
    # gateway's certificate identity as the downstream peer
    assert edge.httpbin is not None
    inbound = json.loads(edge.httpbin.admin("/server_info")[1])["inbound_mtls"]["listeners"]["inbound"]
    assert inbound["tls"] >= 1, inbound
    line = await eventually(lambda: next((ln for ln in (edge.httpbin_log.read_text().splitlines()
                                                         if edge.httpbin_log.exists() else [])
                                          if '"GET /delay/1 HTTP/1.1" 200' in ln), None))
    assert "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account" in line, line


BROWSER = """
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  selector:
    istio: ingressgateway # use Istio default gateway implementation
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "*"
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /headers
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
"""  # snip_accessing_ingress_services_using_a_browser_1, verbatim


async def test_ingress_gateways_task_for_a_browser(edge: Edge) -> None:
    # "Accessing ingress services using a browser": any host, /headers, no Host header to set
    await apply_task(edge.plane, BROWSER, edge.gateway)
    out = await until_status(200, f"http://127.0.0.1:{edge.http}/headers")
    assert f'"host": "127.0.0.1:{edge.http}"' in out, out
    assert (await curl(f"http://127.0.0.1:{edge.http}/status/200"))[0] == 404  # only /headers is routed now


async def test_secure_gateways_task(edge: Edge) -> None:
    c1, c2, port = edge.certs / "example_certs1", edge.certs / "example_certs2", edge.https
    await isthmus(edge.plane, "create", "-n", "istio-system", "secret", "tls", "httpbin-credential",
                  f"--key={c1}/httpbin.example.com.key", f"--cert={c1}/httpbin.example.com.crt")
    await apply_task(edge.plane, task("secure-simple.yaml"), edge.gateway)
    httpbin = ("-HHost:httpbin.example.com", "--resolve", f"httpbin.example.com:{port}:127.0.0.1")
    teapot = f"https://httpbin.example.com:{port}/status/418"
    out = await until_status(418, *httpbin, "--cacert", f"{c1}/example.com.crt", teapot)
    assert "-=[ teapot ]=-" in out, out
    assert (await curl(f"http://127.0.0.1:{port}/status/418"))[0] == 0  # TLS is required on the port

    # the certificate rotated in place: `create secret tls` again with example_certs2; new connections get it
    # within seconds, the gateway process the same
    pid = edge.gateway.process.pid
    start = time.monotonic()
    await isthmus(edge.plane, "create", "-n", "istio-system", "secret", "tls", "httpbin-credential",
                  f"--key={c2}/httpbin.example.com.key", f"--cert={c2}/httpbin.example.com.crt")
    await until_status(418, *httpbin, "--cacert", f"{c2}/example.com.crt", teapot, timeout=10)
    assert time.monotonic() - start < 10
    code, out = await curl(*httpbin, "--cacert", f"{c1}/example.com.crt", teapot)
    # the old CA no longer verifies what is served (snip _10: curl (35), the signature does not check out)
    assert code == 0 and "curl: (35)" in out, out
    served = await served_subject(port, "httpbin.example.com", c2 / "example.com.crt")
    assert "CN = httpbin.example.com" in served and "(ok)" in served, served
    assert edge.gateway.process.is_running and edge.gateway.process.pid == pid

    # several hosts on 443 by SNI (snip_configure_a_tls_ingress_gateway_for_multiple_hosts_1 .. _5, _8, _9)
    await isthmus(edge.plane, "delete", "-n", "istio-system", "secret", "httpbin-credential")
    await isthmus(edge.plane, "create", "-n", "istio-system", "secret", "tls", "httpbin-credential",
                  f"--key={c1}/httpbin.example.com.key", f"--cert={c1}/httpbin.example.com.crt")
    await isthmus(edge.plane, "create", "-n", "istio-system", "secret", "tls", "helloworld-credential",
                  f"--key={c1}/helloworld.example.com.key", f"--cert={c1}/helloworld.example.com.crt")
    await apply_task(edge.plane, task("secure-multi-host.yaml"), edge.gateway)
    await until_status(200, "-HHost:helloworld.example.com", "--resolve", f"helloworld.example.com:{port}:127.0.0.1",
                       "--cacert", f"{c1}/example.com.crt", f"https://helloworld.example.com:{port}/hello")
    assert edge.helloworld_app.requests[-1][":path"] == "/hello"
    out = await until_status(418, *httpbin, "--cacert", f"{c1}/example.com.crt", teapot)
    assert "-=[ teapot ]=-" in out
    hello = await served_subject(port, "helloworld.example.com", c1 / "example.com.crt")
    assert "CN = helloworld.example.com" in hello and "Verify return code: 0 (ok)" in hello, hello
    bin_ = await served_subject(port, "httpbin.example.com", c1 / "example.com.crt")
    assert "CN = httpbin.example.com" in bin_ and "Verify return code: 0 (ok)" in bin_, bin_

    # MUTUAL (snip_configure_a_mutual_tls_ingress_gateway_1 .. _5): the secret as the task makes it with
    # `kubectl create secret generic` (tls.key, tls.crt and ca.crt in one)
    await isthmus(edge.plane, "delete", "-n", "istio-system", "secret", "httpbin-credential")
    await isthmus(edge.plane, "create", "-n", "istio-system", "secret", "generic", "httpbin-credential",
                  f"--from-file=tls.key={c1}/httpbin.example.com.key",
                  f"--from-file=tls.crt={c1}/httpbin.example.com.crt", f"--from-file=ca.crt={c1}/example.com.crt")
    await apply_task(edge.plane, task("secure-mutual.yaml"), edge.gateway)
    client = ("--cert", f"{c1}/client.example.com.crt", "--key", f"{c1}/client.example.com.key")
    out = await until_status(418, *httpbin, "--cacert", f"{c1}/example.com.crt", *client, teapot)
    assert "-=[ teapot ]=-" in out
    # snip _4: without a client certificate the handshake is refused, nothing reaches the app. (Envoy's client
    # reads the certificate_required alert; with the default --tls-transport aiofastnet curl sees the
    # connection closed, "Empty reply": proxy/tls/acceptor.py)
    failed = handshake_failures(edge)
    seen = len(edge.httpbin_app.requests)
    code, out = await curl(*httpbin, "--cacert", f"{c1}/example.com.crt", teapot)
    assert code == 0 and len(edge.httpbin_app.requests) == seen, out
    await eventually(lambda: handshake_failures(edge) > failed)

    # the same CA as Istio's `<credentialName>-cacert` companion secret
    await isthmus(edge.plane, "delete", "-n", "istio-system", "secret", "httpbin-credential")
    await isthmus(edge.plane, "create", "-n", "istio-system", "secret", "tls", "httpbin-credential",
                  f"--key={c1}/httpbin.example.com.key", f"--cert={c1}/httpbin.example.com.crt")
    await isthmus(edge.plane, "create", "-n", "istio-system", "secret", "generic", "httpbin-credential-cacert",
                  f"--from-file=ca.crt={c1}/example.com.crt")
    await until_status(418, *httpbin, "--cacert", f"{c1}/example.com.crt", *client, teapot)
    assert (await curl(*httpbin, "--cacert", f"{c1}/example.com.crt", teapot))[0] == 0
    listed = (await isthmus(edge.plane, "get", "secrets", "-n", "istio-system")).stdout
    assert "httpbin-credential " in listed and "httpbin-credential-cacert" in listed and "BEGIN" not in listed


def handshake_failures(edge: Edge) -> int:
    return sum(port.get("handshake_failed", 0) for port in json.loads(edge.gateway.admin("/server_info")[1])["tls"].values())


class TlsServer:
    """The task's my-nginx: a server that terminates TLS itself with nginx.example.com's certificate and
    answers every request with nginx's welcome page."""

    async def start(self, cert: Path, key: Path) -> "TlsServer":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.handshakes = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.handshakes += 1
            try:
                await reader.readuntil(b"\r\n\r\n")
                body = b"<title>Welcome to nginx!</title>"
                writer.write(b"HTTP/1.1 200 OK\r\nserver: nginx\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
        self.server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


NGINX_CERTS = """
mkdir example_certs
openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=example Inc./CN=example.com' -keyout example_certs/example.com.key -out example_certs/example.com.crt
openssl req -out example_certs/nginx.example.com.csr -newkey rsa:2048 -nodes -keyout example_certs/nginx.example.com.key -subj "/CN=nginx.example.com/O=some organization"
openssl x509 -req -sha256 -days 365 -CA example_certs/example.com.crt -CAkey example_certs/example.com.key -set_serial 0 -in example_certs/nginx.example.com.csr -out example_certs/nginx.example.com.crt
"""


async def test_ingress_gateway_without_tls_termination_task(edge: Edge, tmp_path: Path) -> None:
    done = await run("sh", "-ec", NGINX_CERTS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    certs = tmp_path / "example_certs"
    nginx = await TlsServer().start(certs / "nginx.example.com.crt", certs / "nginx.example.com.key")
    # my-nginx behind its sidecar: the Service's port 443 (protocol TCP) served as opaque TCP to the app
    sidecar = edge.plane.proxy("my-nginx", nginx.port, 443, "default", "run=my-nginx", ("--app-tcp", f"443={nginx.port}"))
    try:
        await sidecar.ready(60)
        await eventually(lambda: any(c["host"] == fqdn("my-nginx", "default") and c.get("endpoints")
                                     for c in edge.gateway.config_dump()["clusters"]), timeout=30)
        await apply_task(edge.plane, task("passthrough-nginx.yaml"), edge.gateway)
        port = edge.https
        # snip_configure_an_ingress_gateway_6
        argv = ("-v", "--resolve", f"nginx.example.com:{port}:127.0.0.1", "--cacert", f"{certs}/example.com.crt",
                f"https://nginx.example.com:{port}")
        out = await until_status(200, *argv)
        assert "Welcome to nginx!" in out and "subject: CN=nginx.example.com; O=some organization" in out, out
        assert "SSL certificate verify ok" in out, out
        assert nginx.handshakes >= 1
        subject = await served_subject(port, "nginx.example.com", certs / "example.com.crt")
        assert "CN = nginx.example.com" in subject and "(ok)" in subject, subject
        # an SNI no tls route names: closed, never relayed
        before = nginx.handshakes
        code, out = await curl("--resolve", f"other.example.com:{port}:127.0.0.1", "-k", f"https://other.example.com:{port}")
        assert code == 0 and nginx.handshakes == before, out
    finally:
        nginx.server.close()


REDIRECT = """
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: redirect-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http-redirect
      protocol: HTTP
    hosts:
    - uk.bookinfo.com
    tls:
      httpsRedirect: true # sends 301 redirect for http requests
"""


async def test_an_http_server_with_https_redirect_answers_301(edge: Edge) -> None:
    # the server of Istio's Gateway reference example (networking/gateway: uk.bookinfo.com, httpsRedirect)
    await apply_task(edge.plane, REDIRECT, edge.gateway)
    seen = len(edge.httpbin_app.requests)
    out = await until_status(301, "-I", "-HHost:uk.bookinfo.com", f"http://127.0.0.1:{edge.http}/reviews?x=1")
    assert "location: https://uk.bookinfo.com/reviews?x=1" in out.lower(), out
    code, out = await curl("-I", "--resolve", f"uk.bookinfo.com:{edge.http}:127.0.0.1",
                           f"http://uk.bookinfo.com:{edge.http}/productpage")
    assert code == 301 and f"location: https://uk.bookinfo.com:{edge.http}/productpage" in out.lower(), out
    assert len(edge.httpbin_app.requests) == seen
