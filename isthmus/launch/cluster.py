"""A clustered control plane as processes on loopback: the topology docker-compose.yml and
docs/install-vm.md run on several machines, here on one, for the tests (tests/integration/
test_cluster_faults.py) and for trying it out.

    3 nats-server nodes     one NATS cluster (routes between every pair, route user and password), each with
                            the bus's users, permissions and auth callout exactly as `isthmus up` writes them
                            (MeshCredentials.nats_authorization); clients get every node's URL, comma-separated
    3 etcd members          one etcd cluster (--initial-cluster on loopback peer ports), JWT auth tokens signed
                            with one key (a token from one member is valid on the others), auth enabled once
    2 replicas per service  auth, registry, pilot, ca, telemetry: each replica its own state directory (a
                            "machine"), the ca's signing key shared sealed in etcd under one KEK file
                            (ISTHMUS_CA_KEK_FILE), each telemetry replica its own dashboard port

Start it from synchronous code (not inside a running event loop): `plane = ClusterPlane.start(dir)`, then
`await plane.start_services()`; `plane.stop()` stops everything in reverse. The layout under dir:

    logs/nats-<i>.log, etcd-<i>.log, <service>-<r>.log, cluster-init.log, cluster-etcd-auth.log
    cluster/        what `isthmus cluster init` writes: secrets/ (as `isthmus up`), nats/<node>.conf,
                    isthmus.yaml (the operator's: every node's URL), ca-kek (the ca replicas' KEK, 0600)
    data/etcd-<i>/  each member's data
    machines/<service>-<r>/ (ISTHMUS_STATE_DIR of a replica)
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from isthmus.launch.binaries import _etcd_probe, _nats_probe
from isthmus.launch.credentials import MeshCredentials
from isthmus.launch.errors import LaunchError
from isthmus.launch.ports import LOOPBACK, free_port
from isthmus.launch.process import ManagedProcess
from isthmus.launch.services import SERVICES, project_env, service_process, wait_ready
from isthmus.launch.topology import Layout, etcd_auth_command, etcd_command, init_command, local, nats_command
from runtime.clientconfig import NatsClient, load

CLUSTER_NAME = "isthmus"  # the NATS cluster's name and etcd's --initial-cluster-token
ROUTE_USER = "route"  # the user NATS nodes authenticate each other's routes with (never a client)


def nats_cluster_block(listen: str, routes: list[str], route_password: str) -> str:
    """nats-server's `cluster { }` block for one node: its route listener (HOST:PORT), the credentials routes
    must present, and the routes to the other nodes (HOST:PORT each, made nats-route://route:PASSWORD@HOST:PORT;
    nats-server retries them until the peer is up, so nodes may start in any order; a route to itself is
    recognised and dropped, so every node may be given the same list)."""
    routes = [f"nats-route://{ROUTE_USER}:{route_password}@{r}" for r in routes]
    return (f"cluster {{\n  name: {json.dumps(CLUSTER_NAME)}\n  listen: {json.dumps(listen)}\n"
            f"  authorization {{\n    user: {json.dumps(ROUTE_USER)}\n    password: {json.dumps(route_password)}\n"
            f"    timeout: 2\n  }}\n  routes: {json.dumps(routes)}\n}}\n")


@dataclass
class ClusterPlane:
    state_dir: Path
    layout: Layout
    creds: MeshCredentials  # secrets_dir only: the passwords are in the files `isthmus cluster init` wrote
    nats: list[ManagedProcess]
    etcd: list[ManagedProcess]
    operator_config: Path
    kek: Path
    lease_ttl: int = 5
    services: dict[str, list[ManagedProcess]] = field(default_factory=dict)

    @property
    def nats_url(self) -> str:
        """Every node's client URL, comma-separated (what services, the CLI and sidecars may be given)."""
        return self.layout.nats_url

    @property
    def etcd_url(self) -> str:
        return self.layout.etcd_url

    @property
    def operator(self) -> NatsClient:
        """The operator's bus credentials (isthmus.yaml)."""
        return load(self.operator_config).nats

    @property
    def etcd_service_password(self) -> str:
        return str(json.loads((self.creds.secrets_dir / "etcd.json").read_text())["service"])

    @classmethod
    def start(cls, state_dir: str | Path, *, nats_nodes: int = 3, etcd_members: int = 3,
              lease_ttl: int = 5) -> "ClusterPlane":
        """Start the NATS and etcd clusters with the commands of isthmus/launch/topology.py (`isthmus cluster
        init`, `nats`, `etcd`, `etcd-auth`), locked down as `isthmus up` locks down its single nodes. Not from
        a running event loop."""
        state = Path(state_dir).resolve()
        (state / "logs").mkdir(parents=True, exist_ok=True)
        nats_ports = [(free_port(), free_port()) for _ in range(nats_nodes)]
        etcd_ports = [(free_port(), free_port()) for _ in range(etcd_members)]
        layout = Layout(directory=str(state / "cluster"), data=str(state / "data"),
                        nats_client=tuple(f"{LOOPBACK}:{c}" for c, _ in nats_ports),
                        nats_routes=tuple(f"{LOOPBACK}:{r}" for _, r in nats_ports),
                        etcd_client=tuple(f"http://{LOOPBACK}:{c}" for c, _ in etcd_ports),
                        etcd_peer=tuple(f"http://{LOOPBACK}:{p}" for _, p in etcd_ports))
        env = project_env()
        _run(local(init_command(layout)), env, state / "logs" / "cluster-init.log")
        started: list[ManagedProcess] = []
        try:
            nats = []
            for i, (port, _) in enumerate(nats_ports):
                nats.append(ManagedProcess(layout.nats_name(i), local(nats_command(layout, i)), env=env,
                                           log_path=state / "logs" / f"{layout.nats_name(i)}.log",
                                           url=f"nats://{layout.nats_client[i]}", probe=_nats_probe(port)).start())
                started.append(nats[-1])
            etcd = []
            for i, (port, _) in enumerate(etcd_ports):  # all before waiting: a member is healthy only with a quorum
                etcd.append(ManagedProcess(layout.etcd_name(i), local(etcd_command(layout, i)), env=env, url=layout.etcd_client[i],
                                           log_path=state / "logs" / f"{layout.etcd_name(i)}.log",
                                           probe=_etcd_probe(port)).start())
                started.append(etcd[-1])
            for proc in started:
                proc.wait_ready(30.0)
            _run(local(etcd_auth_command(layout)), env, state / "logs" / "cluster-etcd-auth.log")
            root = Path(layout.directory)
            return cls(state, layout, MeshCredentials(root / "secrets"), nats, etcd, root / "isthmus.yaml",
                       root / "ca-kek", lease_ttl)
        except BaseException:
            for proc in reversed(started):
                proc.stop(2.0)
            raise

    def service_replica(self, name: str, replica: int) -> ManagedProcess:
        """A (not started) replica of one service on its own "machine": state directory machines/<name>-<r>,
        log logs/<name>-<r>.log, instance name <name>-<r> on the bus and in etcd's leader keys."""
        proc = service_process(name, self.nats_url, self.etcd_url, self.state_dir,
                               ["--lease-ttl", str(self.lease_ttl)], credentials=self.creds)
        machine = self.state_dir / "machines" / f"{name}-{replica}"
        machine.mkdir(parents=True, exist_ok=True)
        proc.name = f"{name}-{replica}"
        proc.log_path = self.state_dir / "logs" / f"{name}-{replica}.log"
        assert proc.env is not None
        proc.env.update(ISTHMUS_STATE_DIR=str(machine), ISTHMUS_INSTANCE=f"{name}-{replica}",
                        ISTHMUS_CA_KEK_FILE=str(self.kek), ISTHMUS_DASHBOARD_PORT=str(free_port()),
                        ISTHMUS_DASHBOARD_BIND=LOOPBACK)
        return proc

    async def start_services(self, replicas: int = 2, timeout: float = 60.0) -> None:
        """Every service's replicas: the first of each, then the others (the first ca seals the signing key
        into etcd; the others read it), each waited on through isthmus.health.<name>."""
        from runtime import bus as busmod

        bus = await busmod.connect(self.nats_url, "cluster-start", auth=self.operator)
        try:
            for replica in range(1, replicas + 1):
                procs = [self.service_replica(name, replica).start() for name in SERVICES]
                for proc, name in zip(procs, SERVICES):
                    self.services.setdefault(name, []).append(proc)
                for proc, name in zip(procs, SERVICES):
                    await wait_ready(bus, name, timeout, process=proc)
        finally:
            await bus.close()

    def stop(self) -> None:
        for procs in reversed(list(self.services.values())):
            for proc in procs:
                proc.stop(5.0)
        for proc in [*reversed(self.etcd), *reversed(self.nats)]:
            proc.stop(5.0)


def _run(argv: list[str], env: dict[str, str], log: Path, timeout: float = 90.0) -> None:
    """Run one command to its end, its output to `log`; LaunchError with the output when it fails."""
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise LaunchError(f"{' '.join(argv[2:5])} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
