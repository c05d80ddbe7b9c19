"""docker-compose.yml and the Dockerfile, as far as a machine without a container engine can check them:
the committed file is what isthmus/launch/compose.py generates from the commands the loopback cluster runs
(isthmus/launch/topology.py), Debian's `docker-compose config` accepts it, every `isthmus` command in it
parses with our CLI (flags, values, callbacks), and the Dockerfile copies files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from isthmus.launch import SERVICES
from isthmus.launch.compose import CLUSTER, LAYOUT, NODES, REPLICAS, compose, render
from isthmus.launch.topology import etcd_command, nats_command, service_command
from tests.deploy.cli_parse import parse

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_the_committed_file_is_the_generated_one() -> None:
    assert COMPOSE.read_text() == render(), "regenerate: python -m isthmus.launch.compose > docker-compose.yml"


def test_docker_compose_config_accepts_it() -> None:
    program = shutil.which("docker-compose")
    if program is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    result = subprocess.run([program, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_it_runs_three_nats_nodes_three_etcd_members_and_two_replicas_of_every_service() -> None:
    spec = services()
    for i in range(NODES):
        assert spec[f"nats-{i + 1}"]["command"] == nats_command(LAYOUT, i)
        assert spec[f"etcd-{i + 1}"]["command"] == etcd_command(LAYOUT, i)
    for name in SERVICES:
        for replica in range(1, REPLICAS + 1):
            assert spec[f"{name}-{replica}"]["command"] == service_command(LAYOUT, name)
            assert spec[f"{name}-{replica}"]["environment"]["ISTHMUS_CONFIG"] == f"{CLUSTER}/secrets/{name}.yaml"
    sidecars = [s for s in spec if s.endswith("-sidecar")]
    assert len(sidecars) == 4 and all(spec[s]["network_mode"] == f"service:{s.removesuffix('-sidecar')}"
                                      for s in sidecars)
    assert "istio-ingressgateway" in spec and spec["istio-ingressgateway"]["ports"] == ["8080:8080"]
    nodes = {cmd[cmd.index("--nats") + 1] for s in [*sidecars, "istio-ingressgateway"]
             for cmd in [spec[s]["command"]]}
    assert len(nodes) == NODES  # the proxies are spread over every NATS node


def test_prometheus_scrapes_both_telemetry_replicas_with_a_config_that_exists() -> None:
    volume = services()["prometheus"]["volumes"][0]
    config = yaml.safe_load((ROOT / volume.split(":")[0]).read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"telemetry-{r}:20001" for r in range(1, REPLICAS + 1)]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_every_isthmus_command_in_it_parses_with_our_cli(tmp_path: Path) -> None:
    (tmp_path / "cluster").mkdir()
    checked = 0
    for name, spec in services().items():
        command = spec.get("command")
        if not command or command[0] != "isthmus":
            continue
        args = [str(a).replace(CLUSTER, str(tmp_path / "cluster")) for a in command[1:]]  # --dir must exist
        try:
            parse(args)
        except click.ClickException as exc:
            raise AssertionError(f"{name}: {exc.format_message()}") from None
        checked += 1
    assert checked >= 3 + 3 + 2 + 4 + 2  # nats, etcd, init/etcd-auth, sidecars, gateway/config


def test_the_parse_check_refuses_a_bad_command(tmp_path: Path) -> None:
    with pytest.raises(click.ClickException):
        parse(["proxy", "run", "--service", "x", "--no-such-flag"])
    with pytest.raises(click.ClickException):
        parse(["--nats", "http://not-nats", "proxy", "run", "--service", "x"])


def test_python_commands_name_modules_that_exist() -> None:
    for name, spec in services().items():
        command = spec.get("command") or []
        if command[:2] == ["python", "-m"]:
            module = command[2]
            assert (ROOT / module.replace(".", "/")).with_suffix(".py").is_file() or \
                (ROOT / module.replace(".", "/") / "__main__.py").is_file(), (name, module)


def test_the_dockerfile_copies_files_that_exist_and_every_package_pip_installs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[[i for i, line in enumerate(text.splitlines()) if line.startswith("FROM")][0]] == \
        "FROM python:3.11-slim"
    copied = [src for line in re.findall(r"^COPY (.+)$", text, re.M) for src in line.split()[:-1]]
    missing = [src for src in copied if not (ROOT / src).exists()]
    assert missing == [], missing
    packages = {p.rstrip("*") for p in re.findall(r'"([a-z]+)\*"', (ROOT / "pyproject.toml").read_text())}
    assert packages <= set(copied), packages - set(copied)  # `pip install .` finds every package
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert "USER isthmus" in text  # not root in the containers
    spec = compose()["services"]
    assert {s["image"] for n, s in spec.items() if n != "prometheus"} == {"isthmus:latest"}
