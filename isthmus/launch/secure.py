"""nats-server and etcd started locked down, as `isthmus up` runs them, for code that starts a plane
synchronously (the test fixtures, the data-plane bench): the roles' users and the auth callout on the
bus (TLS too when asked), etcd's authentication on, every service's client config written, and the
operator's at <state-dir>/isthmus.yaml. Start the services with `service_process(...,
credentials=plane.creds)`, including "auth" when sidecars are to get bus credentials."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from isthmus.launch.binaries import start_etcd, start_nats
from isthmus.launch.bustls import make_bus_tls
from isthmus.launch.credentials import ETCD_SERVICE_USER, MeshCredentials
from isthmus.launch.etcdauth import enable_auth
from isthmus.launch.process import ManagedProcess
from runtime.clientconfig import save


@dataclass
class SecurePlane:
    nats: ManagedProcess
    etcd: ManagedProcess
    creds: MeshCredentials
    operator_config: Path  # <state-dir>/isthmus.yaml, mode 0600


def start_secure(state_dir: str | Path, *, nats_port: int = 0, etcd_port: int = 0, tls: bool = False,
                 unsafe_no_fsync: bool = False) -> SecurePlane:
    """Start both (free ports when 0) and lock them down; not from inside a running event loop."""
    state = Path(state_dir)
    creds = MeshCredentials.create(state)
    bus_tls = None
    if tls:
        ca, cert, key = make_bus_tls(state)
        creds.nats_ca, bus_tls = str(ca), (cert, key)
    nats = start_nats(state, nats_port, authorization=creds.nats_authorization(), tls=bus_tls)
    try:
        etcd = start_etcd(state, etcd_port, etcd_port + 1 if etcd_port else 0, unsafe_no_fsync=unsafe_no_fsync,
                          jwt_keys=creds.etcd_jwt_keys)
    except BaseException:
        nats.stop()
        raise
    try:
        asyncio.run(enable_auth(etcd.url or "", creds.etcd_root, ETCD_SERVICE_USER, creds.etcd_service))
    except BaseException:
        etcd.stop()
        nats.stop()
        raise
    creds.write_service_configs(nats.url or "", etcd.url or "")
    operator = save(state / "isthmus.yaml", creds.client_config("operator", nats.url or ""))
    return SecurePlane(nats, etcd, creds, operator)
