"""What the gateway task tests share: Istio's task YAML (tests/pilot/gateway_yaml, istio.io's snips verbatim), a real
`isthmus gateway run` process, the CLI as a user runs it, curl and `openssl s_client` (clients nobody here wrote),
and httpbin's /status/<code> as the app behind a real sidecar."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from isthmus.launch import ManagedProcess, free_port, project_env
from tests.integration.conftest import LEASE_TTL, ControlPlane, apply, eventually
from tests.integration.httpclient import AppServer

TASKS = Path(__file__).resolve().parent.parent / "pilot" / "gateway_yaml"


def task(name: str) -> str:
    """An Istio task's YAML as istio.io's snips write it (tests/pilot/gateway_yaml/<name>)."""
    return (TASKS / name).read_text()


class Httpbin(AppServer):
    """httpbin as the tasks use it: /status/<code> answers that status (418 with httpbin's teapot), /hello 200
    (helloworld), /headers echoes the request head; anything else 200 with `name`. `requests` keeps each head.
    `fail_next`: that many requests for /flaky get 503 first (a flaky upstream for retries)."""

    def __init__(self, name: str = "httpbin") -> None:
        super().__init__()
        self.name = name
        self.requests: list[dict[str, str]] = []
        self.fail_next = 0

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ":" in ln)}
        if int(headers.get("content-length", "0")):
            await reader.readexactly(int(headers["content-length"]))
        self.requests.append({":method": method, ":path": path, **headers})
        code, body = 200, self.name.encode()
        if path.startswith("/flaky") and self.fail_next > 0:
            self.fail_next -= 1
            code, body, self.requests[-1]["failed"] = 503, b"", "503"
        elif path.startswith("/status/"):
            code = int(path.split("?")[0].rsplit("/", 1)[1])
            body = b"-=[ teapot ]=-" if code == 418 else b""
        elif path.startswith("/headers"):
            body = json.dumps({"headers": headers}).encode()
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (code, len(body), body))
        await writer.drain()
        return True


async def run(*argv: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A command as a user runs it (in a thread: the test's loop keeps serving the apps)."""
    return await asyncio.to_thread(subprocess.run, list(argv), capture_output=True, text=True, timeout=timeout,
                                   cwd=cwd)


async def isthmus(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """The isthmus CLI with the operator's config (ISTHMUS_CONFIG, set by the plane)."""
    done = await run(sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


async def curl(*argv: str) -> tuple[int, str]:
    """curl's status code (0: no HTTP response) and what it printed (body, then stderr)."""
    done = await run("curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", *argv, timeout=30)
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body + done.stderr


async def until_status(expected: int, *argv: str, timeout: float = 20) -> str:
    """Poll curl until it answers `expected` (a push or a secret takes a moment); what it printed last."""
    last: list[tuple[int, str]] = []

    async def check() -> bool:
        last[:] = [await curl(*argv)]
        return last[0][0] == expected
    try:
        await eventually(check, timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"curl {' '.join(argv)}: not {expected} in {timeout}s, last {last}") from None
    return last[0][1]


async def served_subject(port: int, sni: str, cafile: Path) -> str:
    """`openssl s_client -servername SNI`: the subject of the certificate the gateway served, and whether it
    verified against `cafile` (the 'Verify return code' line)."""
    done = await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni,
                     "-CAfile", str(cafile), "-verify_return_error", timeout=30)
    text = done.stdout + done.stderr
    subject = next((ln for ln in text.splitlines() if ln.startswith("subject=")), "")
    verify = next((ln.strip() for ln in text.splitlines() if "Verify return code" in ln), "")
    return f"{subject} | {verify}"


# istio.io secure-ingress snip_generate_client_and_server_certificates_and_keys_1 .. _5, verbatim
ISTIO_CERTS = """
mkdir example_certs1
openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=example Inc./CN=example.com' -keyout example_certs1/example.com.key -out example_certs1/example.com.crt
openssl req -out example_certs1/httpbin.example.com.csr -newkey rsa:2048 -nodes -keyout example_certs1/httpbin.example.com.key -subj "/CN=httpbin.example.com/O=httpbin organization"
openssl x509 -req -sha256 -days 365 -CA example_certs1/example.com.crt -CAkey example_certs1/example.com.key -set_serial 0 -in example_certs1/httpbin.example.com.csr -out example_certs1/httpbin.example.com.crt
mkdir example_certs2
openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=example Inc./CN=example.com' -keyout example_certs2/example.com.key -out example_certs2/example.com.crt
openssl req -out example_certs2/httpbin.example.com.csr -newkey rsa:2048 -nodes -keyout example_certs2/httpbin.example.com.key -subj "/CN=httpbin.example.com/O=httpbin organization"
openssl x509 -req -sha256 -days 365 -CA example_certs2/example.com.crt -CAkey example_certs2/example.com.key -set_serial 0 -in example_certs2/httpbin.example.com.csr -out example_certs2/httpbin.example.com.crt
openssl req -out example_certs1/helloworld.example.com.csr -newkey rsa:2048 -nodes -keyout example_certs1/helloworld.example.com.key -subj "/CN=helloworld.example.com/O=helloworld organization"
openssl x509 -req -sha256 -days 365 -CA example_certs1/example.com.crt -CAkey example_certs1/example.com.key -set_serial 1 -in example_certs1/helloworld.example.com.csr -out example_certs1/helloworld.example.com.crt
openssl req -out example_certs1/client.example.com.csr -newkey rsa:2048 -nodes -keyout example_certs1/client.example.com.key -subj "/CN=client.example.com/O=client organization"
openssl x509 -req -sha256 -days 365 -CA example_certs1/example.com.crt -CAkey example_certs1/example.com.key -set_serial 1 -in example_certs1/client.example.com.csr -out example_certs1/client.example.com.crt
"""


async def istio_certs(directory: Path) -> Path:
    """Run the task's openssl commands in `directory`; it is returned."""
    done = await run("sh", "-ec", ISTIO_CERTS, cwd=directory)
    assert done.returncode == 0, done.stderr
    return directory


class GatewayProcess:
    """`isthmus gateway run --name NAME --port LISTEN:PORT ...` as a user starts it, its access log in a file."""

    def __init__(self, plane: ControlPlane, name: str, ports: tuple[int, ...], *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.plane = plane
        self.listen = {port: free_port() for port in ports}
        self.admin_port = free_port()
        self.access_log = plane.state_dir / "logs" / f"{name}-{self.admin_port}.access.log"
        argv = [sys.executable, "-m", "isthmus.cli", "--config", str(plane.config_path), "--nats", plane.nats_url,
                "gateway", "run", "--name", name, "--admin-port", str(self.admin_port), "--listen-host",
                "127.0.0.1", "--lease-ttl", str(LEASE_TTL), "--access-log", str(self.access_log), *extra]
        for port, listen in self.listen.items():
            argv += ["--port", f"{listen}:{port}"]
        self.process = ManagedProcess(f"{name}-{self.admin_port}", argv,
                                      log_path=plane.state_dir / "logs" / f"{name}-{self.admin_port}.log",
                                      env=project_env({"ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL": "0.2", **(env or {})}))
        self.process.start()
        plane.proxies.append(self.process)

    def admin(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def config_dump(self) -> dict:
        return json.loads(self.admin("/config_dump")[1])

    async def ready(self, timeout: float = 40) -> "GatewayProcess":
        def check() -> bool:
            assert self.process.is_running, self.process.log_tail()
            try:
                return self.admin("/ready")[0] == 200
            except OSError:
                return False
        await eventually(check, timeout, interval=0.2)
        return self

    async def holds(self, revision: int, timeout: float = 20) -> None:
        await eventually(lambda: self.config_dump()["version"] >= revision, timeout, interval=0.1)

    def access_lines(self) -> list[str]:
        return self.access_log.read_text(errors="replace").splitlines() if self.access_log.exists() else []

    async def logged(self, needle: str, timeout: float = 10) -> str:
        """The first access-log line holding `needle`, waiting for the log's flush."""
        return await eventually(lambda: next((ln for ln in self.access_lines() if needle in ln), None), timeout)


async def apply_task(plane: ControlPlane, text: str, *proxies: GatewayProcess, namespace: str = "") -> int:
    """`kubectl apply -f -` of a task's YAML (into `namespace` when given, as `-n`); waits for the gateways."""
    if namespace:
        text = text.replace("\nmetadata:\n", f"\nmetadata:\n  namespace: {namespace}\n")
    reply = await apply(plane, text)
    assert reply["ok"], reply
    for proxy in proxies:
        await proxy.holds(reply["revision"])
    return int(reply["revision"])
