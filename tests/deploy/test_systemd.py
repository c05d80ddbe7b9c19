"""deploy/systemd/: a unit for every control-plane service, NATS, etcd, the sidecar and the gateway, with
hardening; `systemd-analyze verify` accepts them (when systemd is installed; a parse test otherwise), and the
command each runs parses with our CLI, filled with the example values its own comment documents."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from isthmus.launch import SERVICES
from tests.deploy.cli_parse import parse

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
ISTHMUS_ENV = {  # /etc/isthmus/isthmus.env as docs/install-vm.md writes it
    "ISTHMUS_NATS_URL": "nats://10.0.0.11:4222,nats://10.0.0.12:4222,nats://10.0.0.13:4222",
    "ISTHMUS_ETCD_URL": "http://10.0.0.11:2379,http://10.0.0.12:2379,http://10.0.0.13:2379",
}
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}


def units() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd keys may repeat); a line outside a section or without `=` fails."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if re.fullmatch(r"\[[A-Za-z]+\]", line):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep and re.fullmatch(r"[A-Za-z]+", key), f"{path.name}:{number}: {line!r}"
        current.setdefault(key, []).append(value)
    return sections


def test_every_service_nats_etcd_the_sidecar_and_the_gateway_have_a_unit() -> None:
    names = {p.name for p in units()}
    assert {f"isthmus-{s}.service" for s in SERVICES} <= names
    assert {"isthmus-nats.service", "isthmus-etcd.service", "isthmus-etcd-auth.service", "isthmus-sidecar@.service",
            "isthmus-gateway.service"} <= names


@pytest.mark.parametrize("path", units(), ids=lambda p: p.name)
def test_each_unit_is_hardened_and_runs_unprivileged(path: Path) -> None:
    service = parse_unit(path)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], (key, service.get(key))
    assert service.get("DynamicUser") == ["yes"] or service.get("User") == ["isthmus"]
    if service.get("Type") != ["oneshot"]:  # a long-running process writes only where it is told to
        assert "StateDirectory" in service or "ReadWritePaths" in service
        assert service.get("Restart") == ["always"]
    assert "WantedBy" in parse_unit(path)["Install"]


def documented_values(path: Path) -> dict[str, str]:
    """The `#   KEY=VALUE` example lines of a unit's comment (its EnvironmentFile's content)."""
    return dict(re.findall(r"^#\s+(ISTHMUS_[A-Z_]+)=(.+)$", path.read_text(), re.M))


def command(path: Path, cluster_dir: Path) -> list[str]:
    """ExecStart with the documented values and specifiers filled in, as systemd would run it."""
    line = parse_unit(path)["Service"]["ExecStart"][0]
    values = {**ISTHMUS_ENV, **documented_values(path)}
    line = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(values[m.group(1)]), line)
    line = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], line)  # unbraced: split into words, as systemd does
    for spec, value in {"%d": "/run/credentials/x", "%S": "/var/lib", "%i": "reviews", "%H": "host"}.items():
        line = line.replace(spec, value)
    return [arg.replace("/etc/isthmus/cluster", str(cluster_dir)) for arg in shlex.split(line)]


@pytest.mark.parametrize("path", units(), ids=lambda p: p.name)
def test_each_units_command_parses_with_our_cli(path: Path, tmp_path: Path) -> None:
    argv = command(path, tmp_path)
    program = argv[0]
    assert program.startswith("/opt/isthmus/bin/"), program
    if program.endswith("/python"):
        module = argv[argv.index("-m") + 1]
        assert module.removeprefix("services.") in SERVICES, module
        return
    assert program.endswith("/isthmus"), program
    try:
        parse(argv[1:])
    except click.ClickException as exc:
        raise AssertionError(f"{path.name}: {exc.format_message()} in {argv}") from None


def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); the parse tests above still ran")
    venv = Path(sys.executable).parent  # the units name /opt/isthmus/bin/: verify checks the program exists
    paths = []
    for unit in units():
        text = unit.read_text().replace("/opt/isthmus/bin/", f"{venv}/")
        name = unit.name.replace("@.", "@reviews.")  # a template is verified as an instance
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    result = subprocess.run([analyze, "verify", "--man=no", *paths], capture_output=True, text=True, timeout=120)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "isthmus-" in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr


def test_verify_would_catch_a_misspelt_directive(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    bad = tmp_path / "isthmus-bad.service"
    bad.write_text((UNITS / "isthmus-pilot.service").read_text().replace("ProtectSystem=", "ProtectSystm=")
                   .replace("/opt/isthmus/bin/", f"{Path(sys.executable).parent}/"))
    result = subprocess.run([analyze, "verify", "--man=no", str(bad)], capture_output=True, text=True, timeout=60)
    assert "ProtectSystm" in result.stdout + result.stderr
