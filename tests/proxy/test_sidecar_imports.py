"""What a sidecar process loads: not the libraries only other processes or rare configs need, each of which
would cost every sidecar its memory (docs/performance.md: RSS per proxy)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def test_a_sidecar_loads_neither_aiohttp_nor_cel_python_until_it_needs_them() -> None:
    """aiohttp (the telemetry service's server, which nats-py would load for WebSockets we never dial) and
    cel-python with lark (Telemetry access-log filters, loaded at the first push that has one): ~15 MB each."""
    code = ("import sys, proxy.main, runtime.bus\n"
            "print(sorted(m for m in ('aiohttp', 'celpy', 'lark') if m in sys.modules))\n"
            "import aiohttp\n"  # hidden only while nats loaded: still importable by whoever needs it
            "from proxy.telemetry.log_filter import LogFilter\n"
            "print(LogFilter('response.code >= 400') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stdout + out.stderr


def test_a_sidecar_loads_dnspython_only_with_dns_port() -> None:
    """proxy/dns/ and dnspython (~1 MB) are loaded by the sidecars that answer DNS (--dns-port), not by all."""
    code = ("import sys, proxy.main\n"
            "print(sorted(m for m in ('dns', 'proxy.dns.sidecar') if m in sys.modules))\n"
            "from proxy.main import Sidecar\n"
            "from proxy.settings import ProxyOptions\n"
            "Sidecar(ProxyOptions(service='a', service_port=80, app_port=81, dns_port=15053))\n"
            "print(sorted(m for m in ('dns', 'proxy.dns.sidecar') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['dns', 'proxy.dns.sidecar']"], out.stdout + out.stderr


def test_a_sidecar_loads_neither_rich_nor_pygments_and_logs_tracebacks_without_them() -> None:
    """structlog would import rich (and pygments) for its dev console renderer whenever it is installed (~4 MB);
    the sidecar logs JSON lines with stdlib-formatted tracebacks, and rich stays importable for the CLI."""
    code = ("import sys, proxy.main\n"
            "from runtime.log import configure\n"
            "log = configure('info', 'svc')\n"
            "try:\n"
            "    1 / 0\n"
            "except ZeroDivisionError:\n"
            "    log.exception('boom')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'pygments', 'better_exceptions'}))\n"
            "import rich.table\n"
            "print('rich ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "rich ok"], out.stdout + out.stderr
    line = json.loads(out.stderr.strip().splitlines()[-1])
    assert line["event"] == "boom" and line["service"] == "svc" and line["level"] == "error"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].rstrip().endswith("ZeroDivisionError: division by zero")


def test_a_sidecar_loads_pyjwt_and_prometheus_client_only_when_used() -> None:
    """PyJWT (a RequestAuthentication for this workload) and prometheus_client with wsgiref/html (a scrape) stay
    out of a sidecar that does not need them (~3.5 MB together); each loads, and works, when needed."""
    code = ("import sys, proxy.main, runtime.bus, nats.aio.client\n"
            "from runtime.log import configure\n"
            "configure()\n"  # log lines on stderr
            "from runtime.version import VERSION\n"
            "out = lambda: sorted(m for m in ('jwt', 'prometheus_client', 'wsgiref') if m in sys.modules)\n"
            "print(out())\n"
            "from importlib.metadata import version\n"
            "print(nats.aio.client.__version__ == version('nats-py') != '0.0.0', VERSION == version('isthmus'))\n"
            "from proto.security import JwtRule\n"
            "from proto.xds import JwtProvider\n"
            "from proxy.inbound.jwt.authn import Authenticator\n"
            "rule = JwtRule(issuer='https://issuer.example', jwks='{\"keys\": []}')\n"
            "Authenticator([JwtProvider(source='ns/ra', rule=rule)])\n"
            "from proxy.telemetry.exposition import SidecarMetrics\n"
            "print(SidecarMetrics([], []).prometheus().decode().count('# TYPE'))\n"
            "print(out())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:4] == [
        "[]", "True True", "9", "['jwt', 'prometheus_client', 'wsgiref']"], out.stdout + out.stderr


def test_isthmus_proxy_run_loads_the_proxy_commands_only() -> None:
    """A sidecar is `isthmus proxy run`: the CLI's other command modules (up, analyze, gateway, ca...: ~2.3 MB)
    are imported when their command runs or help lists them, never by a sidecar; `proxy` keeps its
    `credentials` and `log` subcommands."""
    code = ("import sys, click, isthmus.cli\n"
            "ctx = click.Context(isthmus.cli.cli)\n"
            "proxy = isthmus.cli.cli.get_command(ctx, 'proxy')\n"
            "print(proxy.get_command(ctx, 'run').name, sorted(proxy.commands))\n"
            "print(sorted(m for m in sys.modules if m.startswith('isthmus.commands.')))\n"
            "print(isthmus.cli.cli.list_commands(ctx) == sorted(isthmus.cli.COMMANDS))\n"
            "print(all(isthmus.cli.cli.get_command(ctx, name).name == name for name in isthmus.cli.COMMANDS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:4] == [
        "run ['credentials', 'log', 'run']",
        "['isthmus.commands.credentials', 'isthmus.commands.proxy', 'isthmus.commands.proxy_config', "
        "'isthmus.commands.proxy_options', 'isthmus.commands.proxy_telemetry']",
        "True", "True"], out.stdout + out.stderr


def test_a_sidecar_never_loads_cryptography_its_x509_worker_child_does() -> None:
    """`cryptography` (~7 MB: its Rust extension with OpenSSL linked in) is the X.509 worker child's
    (proxy/identity/x509_worker.py): the sidecar's identity agent, /certs, the debug subject and the stored
    certificate's loading hold PEM texts and parsed fields, never the library."""
    code = ("import sys, proxy.main, isthmus.cli, proxy.identity.agent, proxy.identity.certs, proxy.control.debug\n"
            "import proxy.identity.state_dir, proxy.identity.tls, proxy.identity.bundle, proxy.identity.ca_client\n"
            "import proxy.sidecar.control_plane\n"
            "from proxy.main import Sidecar\n"
            "from proxy.settings import ProxyOptions\n"
            "Sidecar(ProxyOptions(service='a', service_port=80, app_port=81))\n"
            "print('cryptography' in sys.modules)\n"
            "import proxy.identity.x509_worker\n"  # the child's entry point: it loads it
            "print('cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["False", "True"], out.stdout + out.stderr


def _stored_certificate(state: Path, identity: str) -> None:
    """A key, a chain and a root in --state-dir's layout, made here with `cryptography` (the tests may load it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from tests.ca import pki

    now = datetime.datetime.now(datetime.timezone.utc)
    root_key, leaf_key = pki.key(), pki.key()
    root = pki.ca_cert("sidecar test root", root_key, root_key.public_key(), now=now)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(root.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
            .sign(root_key, hashes.SHA256()))
    state.mkdir(mode=0o700)
    for name, data in (("key.pem", pki.pem(leaf_key)), ("cert-chain.pem", pki.pem(leaf)),
                       ("root-cert.pem", pki.pem(root))):
        (state / name).write_bytes(data)


def test_a_started_sidecar_with_a_certificate_has_no_cryptography_mapped(tmp_path: Path) -> None:
    """From outside, as an operator would look: `isthmus proxy run` with a certificate in --state-dir (checked by the
    X.509 worker child at start) serves /certs and /config_dump, and its memory maps hold no part of
    `cryptography` (the bus is unreachable: the sidecar idles with the identity it loaded)."""
    from isthmus.launch import free_port
    from runtime.clientconfig import ClientConfig, NatsClient, save

    identity = "spiffe://cluster.local/ns/default/sa/default"
    _stored_certificate(tmp_path / "state", identity)
    client = NatsClient(url="nats://127.0.0.1:1", user="proxy.t", password="x")  # a proxy's: nothing asked at start
    save(tmp_path / "client.yaml", ClientConfig(nats=client))
    admin = free_port()
    argv = [sys.executable, "-m", "isthmus.cli", "--config", str(tmp_path / "client.yaml"),
            "--nats", f"nats://127.0.0.1:{free_port()}", "proxy", "run", "--service", "idle", "--service-port", "9080",
            "--app-port", str(free_port()), "--inbound-port", str(free_port()), "--outbound-port", str(free_port()),
            "--admin-port", str(admin), "--state-dir", str(tmp_path / "state")]
    with open(tmp_path / "log", "w") as log:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        certs: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and certs.get("workload", {}).get("state") != "valid":
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/certs", timeout=2) as response:
                    certs = json.loads(response.read())
            except OSError:
                time.sleep(0.05)
        assert certs.get("workload", {}).get("spiffe_id") == identity and certs["workload"]["state"] == "valid", \
            (tmp_path / "log").read_text()[-2000:]
        assert certs["certificates"][0]["cert_chain"][0]["subject_alt_names"] == [{"uri": identity}]
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/config_dump", timeout=2) as response:
            assert response.status == 200
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "cryptography" not in maps and process.poll() is None
    finally:
        process.terminate()
        process.wait(10)
