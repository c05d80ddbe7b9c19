"""The Gateway (proxy/gateway/main.py) on real loopback sockets, fed a hand-built push (as pilot's would be),
against clients nobody here wrote: curl (--resolve, --cacert, --cert/--key) and openssl s_client."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from tests.proxy.http_helpers import Upstream, keep_alive_echo
from tests.proxy.tls_certs import TestCa

from proto.gateway_xds import GatewayListeners, GatewayPortConfig, GatewayServer, ServerTls, VirtualHost
from proto.xds import ClusterConfig, Endpoint, HttpRule, Push, RouteConfig, WeightedDestination, WorkloadSecurity
from proxy.gateway.main import Gateway
from proxy.settings import ProxyOptions

pytestmark = pytest.mark.skipif(not shutil.which("curl") or not shutil.which("openssl"), reason="needs curl, openssl")

APP = "productpage.default.svc.cluster.local"


@dataclass
class FakeCredential:  # proxy/gateway/secret_client.TlsCredential's fields, as the gateway reads them
    name: str
    namespace: str
    version: int
    cert_chain_pem: str
    key_pem: str
    ca_cert_pem: str = ""
    not_after: float = 0.0
    ca_version: int = 0


@dataclass
class FakeSecrets:  # the SecretClient API (current, missing, listeners, want), without the bus
    current: dict = field(default_factory=dict)
    missing: set = field(default_factory=set)
    listeners: list = field(default_factory=list)
    wanted: set = field(default_factory=set)

    def want(self, names: set[str]) -> None:
        self.wanted = set(names)

    def put(self, credential: FakeCredential) -> None:
        self.current[credential.name] = credential
        for listener in self.listeners:
            listener()

    def dump(self) -> dict:
        return {"current": sorted(self.current), "missing": sorted(self.missing)}


async def run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")


async def curl(url: str, port: int, *extra: str) -> tuple[int, str]:
    host = url.split("/")[2].split(":")[0]
    return await run("curl", "-sS", "-o", "-", "-w", "\nstatus=%{http_code}", "--max-time", "10",
                     "--resolve", f"{host}:{port}:127.0.0.1", *extra, url)


def tls(mode: str, cert: Path | None = None, key: Path | None = None, **more) -> ServerTls:
    return ServerTls(mode=mode, server_certificate=str(cert or ""), private_key=str(key or ""), **more)


def server(port: int, protocol: str, hosts: list[str], tls_: ServerTls | None = None, name: str = "") -> GatewayServer:
    return GatewayServer(gateway="default/gw", port=port, protocol=protocol, hosts=hosts, tls=tls_, name=name)


def route() -> RouteConfig:
    return RouteConfig(host=APP, version=1, source="default/bookinfo",
                       rules=[HttpRule(destinations=[WeightedDestination(host=APP, weight=100)])])


@pytest.fixture
async def gateway(tmp_path):
    options = ProxyOptions(service="istio-ingressgateway", namespace="istio-system", service_port=80, app_port=1,
                           admin_port=0, inbound_port=0, labels={"istio": "ingressgateway"}, state_dir="")
    secrets = FakeSecrets()
    gw = Gateway(options, [(0, 80), (0, 443)], "127.0.0.1", secrets)
    await gw.start_listeners()
    async with Upstream(keep_alive_echo) as app:
        gw.app_port = app.port  # for the tests
        gw.fake_secrets = secrets
        yield gw
    await gw._stop_listeners(0.2)
    gw.pool.close()


def apply(gw: Gateway, version: int, *ports: GatewayPortConfig) -> None:
    cluster = ClusterConfig(host=APP, version=1, ports=[9080],
                            endpoints=[Endpoint(address="127.0.0.1", ports={9080: gw.app_port})])
    gw.state.apply(Push(epoch="e", seq=version, version=version, full=True, clusters=[cluster],
                        gateways=[GatewayListeners(workload=gw.options.id, version=version, namespace="istio-system",
                                                   ports=list(ports))],
                        security=[own_security(gw, version)]))


def own_security(gw: Gateway, version: int = 1) -> WorkloadSecurity:
    """The default entry pilot pushes, with its listeners, for a registered gateway no policy selects."""
    return WorkloadSecurity(workload=gw.options.id, version=version, namespace="istio-system")


def vhosts(*domains: str) -> list[VirtualHost]:
    return [VirtualHost(domains=list(domains), route=route())]


async def test_the_gateway_is_not_ready_before_pilot_pushed_its_own_listeners(gateway):
    # pilot compiles a gateway's listeners once its registration is known: a push before that (routes and
    # clusters, no entry for this gateway) left traffic let in to 503 gateway_port_not_configured
    cluster = ClusterConfig(host=APP, version=1, ports=[9080],
                            endpoints=[Endpoint(address="127.0.0.1", ports={9080: gateway.app_port})])
    gateway.state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster]))
    gateway.xds.synced.set()
    assert not gateway.is_ready()
    # its listeners without its security entry (a push no pilot sends, as both come from its registration):
    # the AuthorizationPolicies that select it are unknown, so it admits nothing and is not ready
    gateway.state.apply(Push(epoch="e", seq=2, version=2, full=True, clusters=[cluster],
                             gateways=[GatewayListeners(workload=gateway.options.id, version=2)]))
    assert not gateway.is_ready()
    apply(gateway, 3)  # its entries, no Gateway selecting it: no ports, but pilot knows it
    assert gateway.is_ready()


async def test_http_routes_by_host_404_for_an_unknown_one_and_503_before_config(gateway):
    port = gateway.http[80].port
    code, out = await curl(f"http://bookinfo.example.com:{port}/productpage", port)
    assert "status=503" in out, out  # no config for the port yet
    apply(gateway, 1, GatewayPortConfig(port=80, servers=[server(80, "HTTP", ["bookinfo.example.com"])],
                                        virtual_hosts=vhosts("bookinfo.example.com")))
    code, out = await curl(f"http://bookinfo.example.com:{port}/productpage", port)
    assert "hello /productpage" in out and "status=200" in out, out
    code, out = await curl(f"http://other.example.com:{port}/", port)
    assert "status=404" in out, out


async def test_https_redirect_is_a_301_to_https(gateway):
    port = gateway.http[80].port
    apply(gateway, 1, GatewayPortConfig(port=80, servers=[
        server(80, "HTTP", ["secure.example.com"], ServerTls(https_redirect=True))]))
    code, out = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--resolve",
                          f"secure.example.com:80:127.0.0.1", "--connect-to", f"secure.example.com:80:127.0.0.1:{port}",
                          "http://secure.example.com/a?b=1")
    assert out.strip() == "301 https://secure.example.com/a?b=1", out


async def test_simple_tls_picks_the_certificate_by_sni_and_refuses_plaintext(gateway, tmp_path):
    ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    a_cert, a_key = ca.leaf("", "a", dns=("a.example.com",))
    b_cert, b_key = ca.leaf("", "b", dns=("*.b.example.com",))
    port = gateway.http[443].port
    apply(gateway, 1, GatewayPortConfig(port=443, servers=[
        server(443, "HTTPS", ["a.example.com"], tls("SIMPLE", a_cert, a_key)),
        server(443, "HTTPS", ["*.b.example.com"], tls("SIMPLE", b_cert, b_key))],
        virtual_hosts=vhosts("a.example.com", "*.b.example.com")))
    root = str(tmp_path / "root.pem")
    code, out = await curl(f"https://a.example.com:{port}/x", port, "--cacert", root)
    assert "status=200" in out and "hello /x" in out, out
    # curl checks the name: only b's certificate (*.b.example.com) passes for x.b.example.com
    code, out = await curl(f"https://x.b.example.com:{port}/y", port, "--cacert", root)
    assert "status=200" in out and "hello /y" in out, out
    code, out = await curl(f"https://c.example.com:{port}/", port, "--cacert", root)
    assert code != 0 and "status=000" in out, out  # no server for that SNI: handshake refused
    code, out = await curl(f"http://a.example.com:{port}/", port)
    assert code != 0 and "status=000" in out, out  # plaintext into a TLS port: closed
    code, out = await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "x.b.example.com",
                          "-CAfile", root, "-brief", "-verify_hostname", "x.b.example.com", "-verify_return_error")
    assert "Verification: OK" in out and "Verified peername: *.b.example.com" in out, out
    assert "TLSv1.3" in out or "TLSv1.2" in out


async def test_tls_version_bounds_apply(gateway, tmp_path):
    ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    cert, key = ca.leaf("", "a", dns=("a.example.com",))
    port = gateway.http[443].port
    apply(gateway, 1, GatewayPortConfig(port=443, servers=[
        server(443, "HTTPS", ["a.example.com"], tls("SIMPLE", cert, key, max_protocol_version="TLSV1_2",
                                                     cipher_suites=["ECDHE-ECDSA-AES128-GCM-SHA256"]))],
        virtual_hosts=vhosts("a.example.com")))
    root = str(tmp_path / "root.pem")
    code, out = await curl(f"https://a.example.com:{port}/", port, "--cacert", root, "--tlsv1.3")
    assert code != 0, out  # TLS 1.3 only from the client; the server stops at 1.2
    code, out = await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example.com",
                          "-CAfile", root, "-brief")
    assert "TLSv1.2" in out and "ECDHE-ECDSA-AES128-GCM-SHA256" in out, out


async def test_mutual_requires_a_client_certificate_and_optional_mutual_takes_either(gateway, tmp_path):
    ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    root = str(tmp_path / "root.pem")
    cert, key = ca.leaf("", "m", dns=("m.example.com", "o.example.com"))
    client_cert, client_key = ca.leaf("", "client", dns=("client.example.com",))
    port = gateway.http[443].port
    apply(gateway, 1, GatewayPortConfig(port=443, servers=[
        server(443, "HTTPS", ["m.example.com"], tls("MUTUAL", cert, key, ca_certificates=root)),
        server(443, "HTTPS", ["o.example.com"], tls("OPTIONAL_MUTUAL", cert, key, ca_certificates=root))],
        virtual_hosts=vhosts("m.example.com", "o.example.com")))
    code, out = await curl(f"https://m.example.com:{port}/", port, "--cacert", root)
    assert code != 0 and "status=000" in out, out
    code, out = await curl(f"https://m.example.com:{port}/", port, "--cacert", root, "--cert", str(client_cert),
                           "--key", str(client_key))
    assert "status=200" in out, out
    code, out = await curl(f"https://o.example.com:{port}/", port, "--cacert", root)
    assert "status=200" in out, out
    other = TestCa(tmp_path / "other") if (tmp_path / "other").mkdir() is None else None
    bad_cert, bad_key = other.leaf("", "bad", dns=("bad.example.com",))
    code, out = await curl(f"https://o.example.com:{port}/", port, "--cacert", root, "--cert", str(bad_cert),
                           "--key", str(bad_key))
    assert code != 0, out  # sent, so verified: another CA's certificate is refused


async def test_a_credential_serves_when_it_arrives_rotates_in_place_and_a_missing_one_fails_alone(gateway, tmp_path):
    ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    root = str(tmp_path / "root.pem")
    files_cert, files_key = ca.leaf("", "f", dns=("files.example.com",))
    port = gateway.http[443].port
    apply(gateway, 1, GatewayPortConfig(port=443, servers=[
        server(443, "HTTPS", ["files.example.com"], tls("SIMPLE", files_cert, files_key)),
        server(443, "HTTPS", ["cred.example.com"], ServerTls(mode="SIMPLE", credential_name="cred-secret"))],
        virtual_hosts=vhosts("files.example.com", "cred.example.com")))
    secrets = gateway.fake_secrets
    assert secrets.wanted == {"cred-secret"}
    code, out = await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "cred.example.com",
                          "-CAfile", root, "-brief")
    assert "handshake failure" in out or "alert" in out, out  # no secret yet: Envoy's handshake_failure
    code, out = await curl(f"https://files.example.com:{port}/", port, "--cacert", root)
    assert "status=200" in out, out  # the other server keeps serving

    def credential(version: int, name: str) -> FakeCredential:
        cert, key = ca.leaf("", name, dns=("cred.example.com",))
        return FakeCredential("cred-secret", "istio-system", version, cert.read_text(), key.read_text())

    secrets.put(credential(1, "c1"))
    code, out = await curl(f"https://cred.example.com:{port}/", port, "--cacert", root)
    assert "status=200" in out, out
    first = (tmp_path / "c1.crt").read_text()
    secrets.put(credential(2, "c2"))  # rotated: new handshakes get it, no restart
    code, out = await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "cred.example.com",
                          "-CAfile", root, "-showcerts")
    served = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----")]
    assert served.strip() in (tmp_path / "c2.crt").read_text()
    assert served.strip() not in first
    dump = gateway.config_dump()
    assert any(s["certificate"] == "credential cred-secret" and s["serving"] for s in dump["gateway_tls"]["servers"])
    assert "PRIVATE KEY" not in str(dump)


async def test_a_mutual_credential_serves_once_its_cacert_companion_arrives_with_the_same_primary_version(
        gateway, tmp_path):
    """Istio's `<credentialName>-cacert`: created after the primary, it changes only the CA (the primary's
    version stays): the server must rebuild and serve."""
    ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    root = str(tmp_path / "root.pem")
    cert, key = ca.leaf("", "m", dns=("m.example.com",))
    client_cert, client_key = ca.leaf("", "client", dns=("client.example.com",))
    port = gateway.http[443].port
    apply(gateway, 1, GatewayPortConfig(port=443, servers=[
        server(443, "HTTPS", ["m.example.com"], ServerTls(mode="MUTUAL", credential_name="m-cred"))],
        virtual_hosts=vhosts("m.example.com")))
    secrets = gateway.fake_secrets
    secrets.put(FakeCredential("m-cred", "istio-system", 4, cert.read_text(), key.read_text()))  # no CA yet
    client = ("--cacert", root, "--cert", str(client_cert), "--key", str(client_key))
    code, out = await curl(f"https://m.example.com:{port}/", port, *client)
    assert code != 0, out  # MUTUAL without a CA does not serve
    secrets.put(FakeCredential("m-cred", "istio-system", 4, cert.read_text(), key.read_text(), ca.root_pem,
                               ca_version=9))  # the companion arrived: same primary version
    code, out = await curl(f"https://m.example.com:{port}/", port, *client)
    assert "status=200" in out, out


async def _tls_backend(ca: TestCa, name: str):
    """A backend that terminates TLS itself (the passthrough task's nginx): answers `backend <sni>`."""
    cert, key = ca.leaf("", name, dns=(f"{name}.example.com",))
    import ssl as ssl_

    ctx = ssl_.SSLContext(ssl_.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = f"backend {name}".encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)


def tls_cluster(host: str, port: int) -> ClusterConfig:
    return ClusterConfig(host=host, version=1, ports=[443], endpoints=[Endpoint(address="127.0.0.1", ports={443: port})])


async def test_passthrough_relays_tls_by_sni_to_a_backend_that_terminates_it_and_closes_an_unmatched_sni(
        gateway, tmp_path):
    from proto.gateway_xds import TlsRule

    ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    root = str(tmp_path / "root.pem")
    nginx = await _tls_backend(ca, "nginx")
    other = await _tls_backend(ca, "other")
    try:
        port = gateway.http[443].port
        ports = {"nginx.default.svc.cluster.local": nginx.sockets[0].getsockname()[1],
                 "other.default.svc.cluster.local": other.sockets[0].getsockname()[1]}
        config = GatewayPortConfig(
            port=443, servers=[server(443, "TLS", ["nginx.example.com", "*.other.example.com"],
                                      ServerTls(mode="PASSTHROUGH"))],
            tls_routes=[TlsRule(sni_hosts=["nginx.example.com"], source="default/nginx", destinations=[
                            WeightedDestination(host="nginx.default.svc.cluster.local", weight=100)]),
                        TlsRule(sni_hosts=["*.other.example.com"], source="default/other", destinations=[
                            WeightedDestination(host="other.default.svc.cluster.local", port=443, weight=100)])])
        gateway.state.apply(Push(epoch="e", seq=1, version=1, full=True,
                                 clusters=[tls_cluster(h, p) for h, p in ports.items()],
                                 gateways=[GatewayListeners(workload=gateway.options.id, version=1, ports=[config])],
                                 security=[own_security(gateway)]))
        code, out = await curl(f"https://nginx.example.com:{port}/", port, "--cacert", root)
        assert "backend nginx" in out and "status=200" in out, out  # the backend's own certificate verified
        # a wildcard sni host; curl sends the SNI a.other.example.com, the backend's cert is for other.example.com
        code, out = await curl(f"https://a.other.example.com:{port}/", port, "--cacert", root, "-k")
        assert "backend other" in out, out
        code, out = await curl(f"https://nope.example.com:{port}/", port, "--cacert", root)
        assert code != 0 and "status=000" in out, out
    finally:
        nginx.close()
        other.close()


async def test_a_tcp_server_relays_bytes_to_its_tcp_route(gateway):
    from proto.routes import TcpRule

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        host = "tcp-echo.default.svc.cluster.local"
        cluster = ClusterConfig(host=host, version=1, ports=[9000],
                                endpoints=[Endpoint(address="127.0.0.1", ports={9000: backend.sockets[0].getsockname()[1]})])
        config = GatewayPortConfig(port=80, servers=[server(80, "TCP", ["*"])],
                                   tcp_routes=[TcpRule(destinations=[WeightedDestination(host=host, weight=100)])])
        gateway.state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster],
                                 gateways=[GatewayListeners(workload=gateway.options.id, version=1, ports=[config])],
                                 security=[own_security(gateway)]))
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http[80].port)
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.read(100), 10) == b"echo:hello\n"
        writer.close()
    finally:
        backend.close()


async def test_mutual_with_subject_alt_names_takes_only_a_client_certificate_carrying_one(gateway, tmp_path):
    ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(ca.root_pem)
    root = str(tmp_path / "root.pem")
    cert, key = ca.leaf("", "m", dns=("m.example.com",))
    good_cert, good_key = ca.leaf("", "good", dns=("client.example.com",))
    bad_cert, bad_key = ca.leaf("", "bad", dns=("intruder.example.com",))
    port = gateway.http[443].port
    apply(gateway, 1, GatewayPortConfig(port=443, servers=[
        server(443, "HTTPS", ["m.example.com"], tls("MUTUAL", cert, key, ca_certificates=root,
                                                     subject_alt_names=["client.example.com"]))],
        virtual_hosts=vhosts("m.example.com")))
    code, out = await curl(f"https://m.example.com:{port}/", port, "--cacert", root, "--cert", str(good_cert),
                           "--key", str(good_key))
    assert "status=200" in out, out
    code, out = await curl(f"https://m.example.com:{port}/", port, "--cacert", root, "--cert", str(bad_cert),
                           "--key", str(bad_key))
    assert code != 0 and "status=000" in out, out


async def test_istio_mutual_uses_the_workload_certificate_and_requires_a_mesh_client_certificate(gateway, tmp_path):
    from proxy.identity.tls import TlsContexts

    mesh_ca = TestCa(tmp_path)
    (tmp_path / "root.pem").write_text(mesh_ca.root_pem)
    root = str(tmp_path / "root.pem")
    port = gateway.http[443].port
    apply(gateway, 1, GatewayPortConfig(port=443, servers=[
        server(443, "HTTPS", ["*"], ServerTls(mode="ISTIO_MUTUAL"))], virtual_hosts=vhosts("*")))
    spiffe = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    code, out = await curl(f"https://mesh.example.com:{port}/", port, "-k")
    assert code != 0, out  # no workload certificate yet: nothing to serve with
    gateway.xds.synced.set()
    assert not gateway.is_ready()  # config, but an ISTIO_MUTUAL server waits for the workload certificate
    gateway.identity.provider.current = TlsContexts(
        server=mesh_ca.context(spiffe, "gw", server=True), client=mesh_ca.context(spiffe, "gwc", server=False),
        spiffe_id=spiffe, serial="1", bundle_version=1)
    client_cert, client_key = mesh_ca.leaf("spiffe://cluster.local/ns/default/sa/sleep", "sleep")
    code, out = await curl(f"https://mesh.example.com:{port}/", port, "-k", "--cert", str(client_cert),
                           "--key", str(client_key))
    assert "status=200" in out, out
    assert gateway.is_ready()
    code, out = await curl(f"https://mesh.example.com:{port}/", port, "-k")
    assert code != 0 and "status=000" in out, out  # a client certificate from the mesh is required


async def test_a_tls_server_that_terminates_relays_the_decrypted_bytes_by_its_tcp_route(gateway, tmp_path):
    import ssl as ssl_

    from proto.routes import TcpRule

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    ca = TestCa(tmp_path)
    cert, key = ca.leaf("", "t", dns=("tcp.example.com",))
    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        host = "tcp-echo.default.svc.cluster.local"
        cluster = ClusterConfig(host=host, version=1, ports=[9000],
                                endpoints=[Endpoint(address="127.0.0.1", ports={9000: backend.sockets[0].getsockname()[1]})])
        config = GatewayPortConfig(port=443, servers=[server(443, "TLS", ["tcp.example.com"], tls("SIMPLE", cert, key))],
                                   tcp_routes=[TcpRule(destinations=[WeightedDestination(host=host, weight=100)])])
        gateway.state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster],
                                 gateways=[GatewayListeners(workload=gateway.options.id, version=1, ports=[config])],
                                 security=[own_security(gateway)]))
        client = ssl_.create_default_context(cadata=ca.root_pem)
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http[443].port, ssl=client,
                                                       server_hostname="tcp.example.com")
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.read(100), 10) == b"echo:hello\n"
        writer.close()
    finally:
        backend.close()


async def test_a_tcp_server_runs_the_gateways_authorization_policies_and_admits_nothing_before_them(gateway):
    # Istio's AuthorizationPolicies selecting a gateway apply to its TCP and PASSTHROUGH connections too (Envoy's
    # network RBAC filter): the relays checked none, and before the gateway's security entry took every one
    from proto.routes import TcpRule
    from proto.security import AuthzRule
    from proto.xds import AuthzPolicy

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http[80].port)
        writer.write(b"hello\n")
        try:
            return await asyncio.wait_for(reader.read(100), 10)
        except ConnectionError:
            return b""
        finally:
            writer.close()

    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        host = "tcp-echo.default.svc.cluster.local"
        cluster = ClusterConfig(host=host, version=1, ports=[9000],
                                endpoints=[Endpoint(address="127.0.0.1", ports={9000: backend.sockets[0].getsockname()[1]})])
        config = GatewayPortConfig(port=80, servers=[server(80, "TCP", ["*"])],
                                   tcp_routes=[TcpRule(destinations=[WeightedDestination(host=host, weight=100)])])
        listeners = GatewayListeners(workload=gateway.options.id, version=1, ports=[config])
        # its listeners without its security entry: the policies that select it are unknown
        gateway.state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster], gateways=[listeners]))
        assert await exchange() == b""
        deny = WorkloadSecurity(workload=gateway.options.id, version=2, namespace="istio-system",
                                authorization=[AuthzPolicy(name="istio-system/deny-local", action="DENY", rules=[
                                    msgspec.convert({"from": [{"source": {"ipBlocks": ["127.0.0.1"]}}]}, AuthzRule)])])
        gateway.state.apply(Push(epoch="e", seq=2, version=2, full=True, clusters=[cluster], gateways=[listeners],
                                 security=[deny]))
        assert await exchange() == b""
        assert gateway.tcp[80].denied == 2
        gateway.state.apply(Push(epoch="e", seq=3, version=3, full=True, clusters=[cluster], gateways=[listeners],
                                 security=[own_security(gateway, 3)]))
        assert await exchange() == b"echo:hello\n"
    finally:
        backend.close()
