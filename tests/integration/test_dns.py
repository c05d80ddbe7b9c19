"""DNS for mesh names without iptables (proxy/dns/, docs/dns.md), with the real control plane: a sidecar
run with --dns-port answers `dig` (Debian's dnsutils) for the service names of the mesh with a loopback
address per service, listens there for the service's ports, and an app reaches the service behind another
sidecar with a plain URL and no proxy settings: curl to the address dig gave, and a Python client that
resolves `reviews` through the sidecar's DNS. A service that disappears loses its name and its listener."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import itertools
import shutil
import subprocess

import dns.resolver
import pytest

from isthmus.launch import free_port
from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import AppServer, Backend

pytestmark = pytest.mark.asyncio

_namespaces = itertools.count(1)
DNS_RANGE = ipaddress.IPv4Network("127.240.0.0/12")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make deps` installs it (bench/dataplane/tools.py: dnsutils, curl)")
    return path


def _dig(port: int, name: str, *options: str) -> str:
    done = subprocess.run([tool("dig"), "@127.0.0.1", "-p", str(port), name, "+time=2", "+tries=2", *options],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def dig(port: int, name: str, *options: str) -> str:
    """dig's output, run in a thread: the test apps answer on this test's event loop."""
    return await asyncio.to_thread(_dig, port, name, *options)


async def dig_short(port: int, name: str, *options: str) -> str:
    return (await dig(port, name, "+short", *options)).strip()


async def curl(url: str) -> tuple[int, str]:
    """(exit code, body) of a plain curl: no proxy settings, nothing resolved for it (in a thread)."""
    argv = [tool("curl"), "-sS", "--noproxy", "*", "--max-time", "10", url]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=20, check=False)
    return done.returncode, done.stdout or done.stderr


def resolve_through(port: int, name: str) -> str:
    """What a Python client gets for `name` from the sidecar's DNS (dnspython's stub resolver)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], port, 5.0
    return resolver.resolve(name, "A")[0].address


async def get_by_name(dns_port: int, url_host: str, port: int, path: str = "/") -> tuple[int, bytes]:
    return await asyncio.to_thread(_get_by_name, dns_port, url_host, port, path)


def _get_by_name(dns_port: int, url_host: str, port: int, path: str = "/") -> tuple[int, bytes]:
    """`GET http://<url_host>:<port><path>` as an app does, resolving url_host through the sidecar's DNS."""
    conn = http.client.HTTPConnection(url_host, port, timeout=10)
    conn.host = resolve_through(dns_port, url_host)  # the connection goes where DNS said; Host stays the name
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", f"{url_host}:{port}")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Echo(AppServer):
    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        return False


async def test_dig_and_curl_reach_a_service_by_plain_name_through_the_sidecars_dns(mesh: ControlPlane) -> None:
    ns = f"dns{next(_namespaces)}"
    reviews_app, echo = await Backend("reviews-v1").start(), await Echo().start()
    dns_port = free_port()
    try:
        reviews = mesh.proxy("reviews", reviews_app.port, 9080, ns, "app=reviews,version=v1",
                             ("--app-tcp", f"5432={echo.port}"))
        client_app = await Backend("productpage").start()
        client = mesh.proxy("productpage", client_app.port, 9080, ns, "app=productpage",
                            ("--dns-port", str(dns_port)))
        await reviews.ready()
        await client.ready()
        fqdn = f"reviews.{ns}.svc.cluster.local"
        address = await eventually(lambda: client.config_dump()["dns"]["names"].get(fqdn), timeout=20)
        assert ipaddress.IPv4Address(address) in DNS_RANGE

        # dig, every name form, UDP and TCP
        assert await dig_short(dns_port, fqdn) == address
        assert await dig_short(dns_port, "reviews") == address  # a short name in the sidecar's namespace
        assert await dig_short(dns_port, f"reviews.{ns}") == address
        assert await dig_short(dns_port, f"reviews.{ns}.svc") == address
        assert await dig_short(dns_port, fqdn, "+tcp") == address
        assert await dig_short(dns_port, fqdn, "AAAA") == ""  # known name, no IPv6 address: NOERROR, no data
        assert "status: NOERROR" in await dig(dns_port, fqdn, "AAAA")
        assert "status: NXDOMAIN" in await dig(dns_port, f"nope.{ns}.svc.cluster.local")
        assert "status: REFUSED" in await dig(dns_port, "example.com")

        # curl to the address dig gave: Host is the address, which means the service
        code, body = await curl(f"http://{address}:9080/")
        assert (code, body) == (0, "reviews-v1")
        # an app's plain URL, its name resolved through the sidecar's DNS
        assert await get_by_name(dns_port, "reviews", 9080, "/reviews/1") == (200, b"reviews-v1")
        assert reviews_app.requests[-1][:2] == ("GET", "/reviews/1")
        # the opaque TCP port of the service: relayed as --tcp does
        reader, writer = await asyncio.open_connection(address, 5432)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
        writer.close()

        # the service goes: its name and its listeners go with it
        reviews.process.stop(5)
        await eventually(lambda: fqdn not in client.config_dump()["dns"]["names"], timeout=30)
        assert "status: NXDOMAIN" in await dig(dns_port, fqdn)
        assert "status: REFUSED" in await dig(dns_port, "reviews")
        code, _ = await curl(f"http://{address}:9080/")
        assert code == 7  # curl: failed to connect (nothing listens there any more)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(address, 5432)
    finally:
        await reviews_app.stop()
        await echo.stop()


async def test_a_serviceentry_host_resolves_to_its_own_loopback_address(mesh: ControlPlane) -> None:
    ns = f"dns{next(_namespaces)}"
    outside = await Backend("outside").start()
    dns_port = free_port()
    try:
        client_app = await Backend("productpage").start()
        client = mesh.proxy("productpage", client_app.port, 9080, ns, "app=productpage",
                            ("--dns-port", str(dns_port)))
        await client.ready()
        reply = await apply(mesh, f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: weather, namespace: {ns}}}
spec:
  hosts: [weather-{ns}.example]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{{address: 127.0.0.1, ports: {{http: {outside.port}}}}}]
""")
        assert reply["ok"], reply
        host = f"weather-{ns}.example"
        address = await eventually(lambda: client.config_dump()["dns"]["names"].get(host), timeout=20)
        assert await dig_short(dns_port, host) == address
        assert await get_by_name(dns_port, host, 8080, "/today") == (200, b"outside")
        assert outside.requests[-1][:2] == ("GET", "/today")
    finally:
        await outside.stop()
