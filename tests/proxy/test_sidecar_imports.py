"""What a sidecar process loads: not the libraries only other processes or rare configs need, each of which
would cost every sidecar its memory (docs/performance.md: RSS per proxy)."""

from __future__ import annotations

import json
import subprocess
import sys


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
