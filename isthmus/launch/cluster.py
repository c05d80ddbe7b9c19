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

    logs/nats-<i>.log, etcd-<i>.log, <service>-<r>.log
    nats-<i>/nats.conf, etcd-<i>/ (data), secrets/ (as `isthmus up`), isthmus.yaml (the operator's: every node),
    machines/<service>-<r>/ (ISTHMUS_STATE_DIR of a replica), ca-kek (the ca replicas' KEK, 0600)
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from isthmus.launch.binaries import start_etcd, start_nats
from isthmus.launch.credentials import ETCD_SERVICE_USER, MeshCredentials
from isthmus.launch.etcdauth import enable_auth
from isthmus.launch.ports import LOOPBACK, free_port
from isthmus.launch.process import ManagedProcess
from isthmus.launch.services import SERVICES, service_process, wait_ready
from runtime.clientconfig import save

CLUSTER_NAME = "isthmus"  # the NATS cluster's name and etcd's --initial-cluster-token
ROUTE_USER = "route"  # the user NATS nodes authenticate each other's routes with (never a client)


def nats_cluster_block(cluster_port: int, route_ports: list[int], route_password: str,
                       host: str = LOOPBACK) -> str:
    """nats-server's `cluster { }` block for one node: its route listener, the credentials routes must present,
    and the routes to the other nodes (nats-route://route:PASSWORD@host:port; nats-server retries them until
    the peer is up, so nodes may start in any order)."""
    routes = [f"nats-route://{ROUTE_USER}:{route_password}@{host}:{p}" for p in route_ports]
    return (f"cluster {{\n  name: {json.dumps(CLUSTER_NAME)}\n  listen: \"{host}:{cluster_port}\"\n"
            f"  authorization {{\n    user: {json.dumps(ROUTE_USER)}\n    password: {json.dumps(route_password)}\n"
            f"    timeout: 2\n  }}\n  routes: {json.dumps(routes)}\n}}\n")


def etcd_initial_cluster(peers: dict[str, int], host: str = LOOPBACK) -> str:
    """etcd's --initial-cluster: name=http://host:peer_port for every member."""
    return ",".join(f"{name}=http://{host}:{port}" for name, port in peers.items())


@dataclass
class ClusterPlane:
    state_dir: Path
    creds: MeshCredentials
    nats: list[ManagedProcess]
    etcd: list[ManagedProcess]
    operator_config: Path
    kek: Path
    lease_ttl: int = 5
    services: dict[str, list[ManagedProcess]] = field(default_factory=dict)

    @property
    def nats_url(self) -> str:
        """Every node's client URL, comma-separated (what services, the CLI and sidecars may be given)."""
        return ",".join(proc.url or "" for proc in self.nats)

    @property
    def etcd_url(self) -> str:
        return ",".join(proc.url or "" for proc in self.etcd)

    @classmethod
    def start(cls, state_dir: str | Path, *, nats_nodes: int = 3, etcd_members: int = 3, lease_ttl: int = 5,
              unsafe_no_fsync: bool = False) -> "ClusterPlane":
        """Start the NATS and etcd clusters, locked down as `isthmus up` locks down its single nodes; write
        every service's client config and the operator's (isthmus.yaml). Not from a running event loop."""
        state = Path(state_dir).resolve()
        (state / "logs").mkdir(parents=True, exist_ok=True)
        creds = MeshCredentials.create(state)
        started: list[ManagedProcess] = []
        try:
            client_ports = [free_port() for _ in range(nats_nodes)]
            cluster_ports = [free_port() for _ in range(nats_nodes)]
            route_password = secrets.token_urlsafe(24)
            nats = []
            for i, (port, cport) in enumerate(zip(client_ports, cluster_ports), 1):
                block = nats_cluster_block(cport, [p for p in cluster_ports if p != cport], route_password)
                nats.append(start_nats(state, port, wait=False, authorization=creds.nats_authorization(),
                                       name=f"nats-{i}", cluster=block))
                started.append(nats[-1])
            peers = {f"etcd-{i}": free_port() for i in range(1, etcd_members + 1)}
            initial = etcd_initial_cluster(peers)
            etcd = []
            for name, peer in peers.items():  # all before waiting: a member is healthy only with a quorum
                etcd.append(start_etcd(state, free_port(), peer, wait=False, unsafe_no_fsync=unsafe_no_fsync,
                                       jwt_keys=creds.etcd_jwt_keys, member=name, initial_cluster=initial))
                started.append(etcd[-1])
            for proc in started:
                proc.wait_ready(30.0)
            asyncio.run(enable_auth(etcd[0].url or "", creds.etcd_root, ETCD_SERVICE_USER, creds.etcd_service))
            plane = cls(state, creds, nats, etcd, state / "isthmus.yaml", state / "ca-kek", lease_ttl)
            creds.write_service_configs(plane.nats_url, plane.etcd_url)
            save(plane.operator_config, creds.client_config("operator", plane.nats_url))
            from runtime.kek import make_kek

            make_kek(plane.kek)
            return plane
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

        bus = await busmod.connect(self.nats_url, "cluster-start",
                                   auth=self.creds.client_config("operator", self.nats_url).nats)
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
