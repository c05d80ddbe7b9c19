"""The command lines of a clustered control plane, from one source: the loopback cluster of the tests
(isthmus/launch/cluster.py) runs them as processes, docker-compose.yml as containers (tests/deploy checks the
file's commands are these), deploy/systemd/ and docs/install-vm.md on machines. Only the addresses differ.

Commands start with `isthmus` (the console script) or `python` (the interpreter); `local()` turns them into
argv for this checkout's interpreter.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from isthmus.launch.services import SERVICES, service_argv


@dataclass(frozen=True)
class Layout:
    """Where each node listens and is reached. Lists are per node / member, in order.

    directory: the credentials directory (`isthmus cluster init --dir`); data: where etcd members keep data
    (<data>/<member>); nats_client: host:port clients reach each NATS node at; nats_listen: host:port it binds
    (default: nats_client); nats_routes: host:port of each node's route listener as the others reach it;
    nats_route_listen: what it binds (default: nats_routes); etcd_client / etcd_peer: URLs each member is
    reached at; etcd_listen_client / etcd_listen_peer: what it binds (default: the same)."""

    directory: str
    data: str
    nats_client: tuple[str, ...]
    nats_routes: tuple[str, ...]
    etcd_client: tuple[str, ...]
    etcd_peer: tuple[str, ...]
    nats_listen: tuple[str, ...] = ()
    nats_route_listen: tuple[str, ...] = ()
    etcd_listen_client: tuple[str, ...] = ()
    etcd_listen_peer: tuple[str, ...] = ()

    @property
    def nats_url(self) -> str:
        return ",".join(f"nats://{a}" for a in self.nats_client)

    @property
    def etcd_url(self) -> str:
        return ",".join(self.etcd_client)

    def etcd_name(self, i: int) -> str:
        return f"etcd-{i + 1}"

    def nats_name(self, i: int) -> str:
        return f"nats-{i + 1}"


def init_command(layout: Layout) -> list[str]:
    return ["isthmus", "cluster", "init", "--dir", layout.directory, "--nats", layout.nats_url,
            "--etcd", layout.etcd_url]


def nats_command(layout: Layout, i: int) -> list[str]:
    routes = [arg for route in layout.nats_routes for arg in ("--route", route)]
    return ["isthmus", "cluster", "nats", "--dir", layout.directory, "--name", layout.nats_name(i),
            "--listen", (layout.nats_listen or layout.nats_client)[i],
            "--cluster-listen", (layout.nats_route_listen or layout.nats_routes)[i], *routes]


def etcd_command(layout: Layout, i: int) -> list[str]:
    initial = ",".join(f"{layout.etcd_name(j)}={peer}" for j, peer in enumerate(layout.etcd_peer))
    return ["isthmus", "cluster", "etcd", "--dir", layout.directory, "--name", layout.etcd_name(i),
            "--data-dir", f"{layout.data}/{layout.etcd_name(i)}",
            "--client-url", layout.etcd_client[i], "--peer-url", layout.etcd_peer[i],
            "--listen-client-url", (layout.etcd_listen_client or layout.etcd_client)[i],
            "--listen-peer-url", (layout.etcd_listen_peer or layout.etcd_peer)[i],
            "--initial-cluster", initial]


def etcd_auth_command(layout: Layout) -> list[str]:
    return ["isthmus", "cluster", "etcd-auth", "--dir", layout.directory, "--etcd", layout.etcd_url]


def service_command(layout: Layout, name: str) -> list[str]:
    """A control-plane service; its credentials come from ISTHMUS_CONFIG=<dir>/secrets/<name>.yaml."""
    assert name in SERVICES, name
    return ["python", *service_argv(name, layout.nats_url, layout.etcd_url)[1:]]  # as `isthmus up` runs it


def local(command: list[str]) -> list[str]:
    """argv for this checkout: `isthmus` -> python -m isthmus.cli, `python` -> this interpreter."""
    if command[0] == "isthmus":
        return [sys.executable, "-P", "-m", "isthmus.cli", *command[1:]]  # -P: as service_argv
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return command
