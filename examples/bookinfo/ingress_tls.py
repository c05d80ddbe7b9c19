"""HTTPS at the demo's ingress gateway, as Istio's "Secure Gateways" task sets it up: a CA of the demo's own
(`example.com`, as the task's example_certs1/example.com.crt) signs a certificate for bookinfo.example.com (and
127.0.0.1, so a client without --resolve works too); `isthmus create secret tls bookinfo-credential -n
istio-system` stores it in the ca's secret store, and bookinfo-gateway.yaml's port-443 server (SIMPLE) names it
with credentialName. Made anew at every demo start under <dir> (the CA's certificate is what `curl --cacert`
takes; the key files are mode 0600): the secret is replaced, a rotation the gateway takes without a restart."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from isthmus.launch import LaunchError, project_env
from isthmus.launch.bustls import ca_and_server, key_pem, write_private

HOST = "bookinfo.example.com"
SECRET = "bookinfo-credential"  # bookinfo-gateway.yaml's credentialName
NAMESPACE = "istio-system"  # the gateway's: credentialName secrets live in the gateway workload's namespace
LIFETIME = datetime.timedelta(days=90)


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """(example.com.crt, bookinfo.example.com.crt, bookinfo.example.com.key) under `directory`, made anew."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, leaf, key = ca_and_server("Isthmus demo", "example.com", HOST, [HOST], LIFETIME)
    paths = directory / "example.com.crt", directory / f"{HOST}.crt", directory / f"{HOST}.key"
    write_private(paths[0], ca.public_bytes(serialization.Encoding.PEM), 0o644)
    write_private(paths[1], leaf.public_bytes(serialization.Encoding.PEM), 0o644)
    write_private(paths[2], key_pem(key))
    return paths


def create_secret_argv(nats_url: str, cert: Path, key: Path) -> list[str]:
    return [sys.executable, "-m", "isthmus.cli", "--nats", nats_url, "create", "secret", "tls", SECRET,
            "-n", NAMESPACE, "--cert", str(cert), "--key", str(key)]


async def create_secret(nats_url: str, cert: Path, key: Path, timeout: float = 30.0) -> str:
    """Run `isthmus create secret tls` as a user does; its output. LaunchError with it when it fails."""
    proc = await asyncio.create_subprocess_exec(*create_secret_argv(nats_url, cert, key), env=project_env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise LaunchError(f"`isthmus create secret tls {SECRET}` did not finish within {timeout:g}s") from None
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise LaunchError(f"`isthmus create secret tls {SECRET}` failed: {text}")
    return text


async def https_status(port: int, ca: Path, timeout: float = 2.0) -> int:
    """The status of `GET /` from the gateway's HTTPS port, verified against `ca` with SNI bookinfo.example.com."""
    context = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=HOST), timeout)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def wait_https(port: int, ca: Path, timeout: float = 30.0) -> None:
    """Until the gateway serves the demo's certificate and answers 200 on `port` (it fetches the secret from the
    ca after the Gateway names it); LaunchError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = ""
    while loop.time() < deadline:
        try:
            status = await https_status(port, ca)
            if status == 200:
                return
            last = f"status {status}"
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ValueError, IndexError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.2)
    raise LaunchError(f"the ingress gateway did not serve HTTPS on 127.0.0.1:{port} within {timeout:g}s ({last})")
