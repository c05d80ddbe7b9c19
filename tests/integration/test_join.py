"""`isthmus join` with the real control plane (isthmus/commands/join.py): it redeems a bootstrap token for the
workload's bus credentials and writes the sidecar's files under a temporary root; the sidecar started exactly as
the written unit's ExecStart says (its EnvironmentFile, LoadCredential and StateDirectory honoured) registers and
serves, by plain name through its DNS, and after a restart with the same one-use token, too. A token the bus does
not know is refused in one line."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from isthmus.join_files import read_env
from isthmus.launch import ManagedProcess, free_port, project_env
from runtime.clientconfig import ENV as CONFIG_ENV
from tests.integration.conftest import ControlPlane, eventually
from tests.integration.httpclient import Backend


def isthmus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = project_env(env)
    environment.pop(CONFIG_ENV, None)  # a workload's machine has no operator config
    environment.pop("ISTHMUS_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "isthmus.cli", *args], capture_output=True, text=True,
                          timeout=90, env=environment)


def create_token(plane: ControlPlane, service_account: str) -> str:
    done = subprocess.run([sys.executable, "-m", "isthmus.cli", "--config", str(plane.config_path), "--nats",
                           plane.nats_url, "token", "create", "-n", "default", "--service-account", service_account],
                          capture_output=True, text=True, timeout=60, env=project_env())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def unit_command(root: Path, name: str) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the written unit's ExecStart for instance `name`, as systemd would run it: the
    EnvironmentFile's variables ($VAR split into words), %d holding the LoadCredential token, %S under `root`."""
    text = (root / "etc/systemd/system/isthmus-sidecar@.service").read_text().replace("%i", name)
    keys = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    env = read_env(root / keys["EnvironmentFile"].lstrip("/"))
    credential, source = keys["LoadCredential"].split(":", 1)
    creds = root / "run/credentials" / f"isthmus-sidecar@{name}.service"
    creds.mkdir(parents=True, exist_ok=True)
    (creds / credential).write_bytes((root / source.lstrip("/")).read_bytes())
    line = keys["ExecStart"].replace("%d", str(creds)).replace("%S", str(root / "var/lib"))
    line = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], line)
    return shlex.split(line), env


@pytest.mark.asyncio
async def test_join_then_the_units_command_registers_serves_by_name_and_restarts(mesh: ControlPlane,
                                                                                tmp_path: Path) -> None:
    app = await Backend("reviews-joined").start()
    root = tmp_path / "root"
    ports = {flag: free_port() for flag in ("--inbound-port", "--outbound-port", "--admin-port", "--dns-port")}
    token = create_token(mesh, "reviews")
    (tmp_path / "token").write_text(token + "\n")
    try:
        done = isthmus("join", "--token-file", str(tmp_path / "token"), "--control-plane", mesh.nats_url,
                       "--service", "reviews", "--service-port", "9080", "--app-port", str(app.port),
                       "--labels", "app=reviews,version=v1", "--root", str(root), "--systemd",
                       *(str(x) for pair in ports.items() for x in pair))
        assert done.returncode == 0, done.stderr
        saved = (root / "var/lib/isthmus-sidecar-reviews/bus-client.yaml").read_text()
        password = re.search(r"password: *['\"]?([^'\"\s]+)", saved)
        assert password, saved
        out = done.stdout + done.stderr
        assert token not in out and token.split(".")[1] not in out and password.group(1) not in out
        assert "would run: systemctl enable --now isthmus-sidecar@reviews.service" in done.stdout

        argv, env = unit_command(root, "reviews")
        assert argv[1:3] == ["proxy", "run"] and "--token-file" in argv
        admin = ports["--admin-port"]
        for attempt in ("first start", "restart with the spent token"):
            environment = {**project_env(), **env}
            environment.pop(CONFIG_ENV, None)  # the sidecar has only what join wrote
            proc = ManagedProcess(f"joined-reviews-{attempt[:5]}", argv, log_path=tmp_path / f"{attempt[:5]}.log",
                                  env=environment)
            proc.start()
            mesh.proxies.append(proc)
            try:
                await _serves_by_name(admin, ports["--dns-port"], proc, attempt)
            finally:
                proc.stop(5)
        assert len(app.requests) >= 2
    finally:
        await app.stop()


async def _serves_by_name(admin: int, dns_port: int, proc: ManagedProcess, attempt: str) -> None:
    """The joined sidecar is ready, holds its own registration as an endpoint of reviews, and an app on its
    machine reaches reviews by plain name: `reviews` from the sidecar's DNS, then http://reviews:9080/."""
    import http.client
    import json

    def get(host: str, port: int, path: str, host_header: str = "") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": host_header} if host_header else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    async def ready() -> bool:
        assert proc.is_running, f"{attempt}: the sidecar exited:\n{proc.log_tail()}"
        try:
            return (await asyncio.to_thread(get, "127.0.0.1", admin, "/ready"))[0] == 200
        except OSError:
            return False

    await eventually(ready, timeout=40)

    def endpoints() -> int:
        dump = json.loads(get("127.0.0.1", admin, "/config_dump")[1])
        return sum(len(c.get("endpoints", ())) for c in dump["clusters"]
                   if c["host"] == "reviews.default.svc.cluster.local")

    await eventually(lambda: endpoints() >= 1, timeout=30)

    def resolve() -> str:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], dns_port, 3
        try:
            return str(resolver.resolve("reviews", "A")[0])
        except dns.exception.DNSException:
            return ""  # not yet: the name comes with pilot's push

    address = await eventually(lambda: resolve(), timeout=20)
    status, body = await asyncio.to_thread(get, address, 9080, "/by-name", "reviews:9080")
    assert (status, body) == (200, b"reviews-joined"), (attempt, status, body, proc.log_tail())


@pytest.mark.asyncio
async def test_a_token_the_bus_does_not_know_is_refused_in_one_line(mesh: ControlPlane, tmp_path: Path) -> None:
    unknown = "0123456789abcdef." + "A" * 43
    done = isthmus("join", "--token", unknown, "--control-plane", mesh.nats_url, "--service", "ratings",
                   "--service-port", "9080", "--app-port", str(free_port()), "--root", str(tmp_path), "--wait", "5")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and mesh.nats_url.split(",")[0] in lines[-1], done.stderr
    assert "token" in lines[-1] and "A" * 43 not in done.stdout + done.stderr
    assert not (tmp_path / "etc/isthmus/sidecar-ratings.env").exists()  # nothing written for a refused join


def test_a_bus_with_tls_needs_its_ca_and_says_tls_without_it(tmp_path_factory: pytest.TempPathFactory,
                                                                    tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path_factory.mktemp("isthmus-tls"), tls=True)
    try:
        for name in ("auth", "ca"):
            plane.start_service(name)
        token = create_token(plane, "reviews")
        common = ["--token", token, "--control-plane", plane.nats_url, "--service", "reviews", "--service-port",
                  "9080", "--app-port", str(free_port()), "--inbound-port", str(free_port()), "--outbound-port",
                  str(free_port()), "--admin-port", str(free_port()), "--wait", "1"]
        without = isthmus("join", *common, "--root", str(tmp_path / "a"))
        assert without.returncode == 1, without.stdout + without.stderr
        last = without.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot reach the bus at") and "CERTIFICATE_VERIFY_FAILED" in last.upper(), last
        done = isthmus("join", *common, "--root", str(tmp_path / "b"), "--tls-ca", plane.operator.tls_ca)
        assert done.returncode == 0, done.stderr
        saved = (tmp_path / "b/var/lib/isthmus-sidecar-reviews/bus-client.yaml").read_text()
        assert str(tmp_path / "b/var/lib/isthmus-sidecar-reviews/bus-ca.pem") in saved
    finally:
        plane.stop()
