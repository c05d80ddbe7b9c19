"""The benchmark on a locked-down plane, as `isthmus up` runs it: who connects with what.

    start_control_bus(state) -> (process, NatsClient)
        the harness's own nats-server, for its commands to the workers and their events (bench.cp.>); a
        password of its own (given to workers in the environment, never in argv). The plane under test is
        left exactly as `isthmus up` configures it, with no bench user in it, and its nats-server's CPU
        figures carry none of the harness's traffic.
    await issue(nats_url, operator, count) -> (credentials, seconds)
        `count` proxy credentials for namespace `bench`, service account `default`, asked one by one on
        `isthmus.bus.creds.issue` with the operator's client config (at most ISSUE_IN_FLIGHT at once), as
        `proxy run` holding the operator's config mints its own. Done before the timed part; its rate is
        reported. Each simulated proxy connects with its own, so every connection passes the auth callout.
    write_creds(path, credentials) / read_creds(path)
        a worker's share, as a JSON list of client configs' `nats` sections, mode 0600.

Who holds what: the operator's config (driver: config API, registry events; the services' health),
one proxy credential per simulated proxy (workers), one more for the driver (registrations and heartbeats
of `bench` workloads on the identity-scoped registry subjects, and its tap on isthmus.xds.push), etcd's
service user (the driver's watch of lease expiries), the control bus's password (driver and workers).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import msgspec
import nats

from bench.controlplane import mesh
from isthmus.launch import ManagedProcess, start_nats
from proto.busauth import BusCredsReply, BusCredsRequest
from proto.subjects import BUS_CREDS_ISSUE
from runtime import bus as busmod
from runtime.clientconfig import NatsClient

CONTROL_PASSWORD_ENV = "ISTHMUS_BENCH_CONTROL_PASSWORD"
CONTROL_USER = "bench"
ISSUE_IN_FLIGHT = 32  # issue requests outstanding at once (the auth service answers them one at a time)


def start_control_bus(state: Path) -> tuple[ManagedProcess, NatsClient]:
    password = secrets.token_urlsafe(24)
    block = f'authorization {{\n  user: "{CONTROL_USER}"\n  password: "{password}"\n}}\n'
    proc = start_nats(state / "bench-control", authorization=block)
    return proc, NatsClient(url=proc.url or "", user=CONTROL_USER, password=password)


def control_client(url: str) -> NatsClient:
    """A worker's client config for the control bus (the password from the environment)."""
    return NatsClient(url=url, user=CONTROL_USER, password=os.environ.get(CONTROL_PASSWORD_ENV, ""))


async def issue(nats_url: str, operator: NatsClient, count: int) -> tuple[list[NatsClient], float]:
    bus = await busmod.connect(nats_url, "bench-issue", auth=operator)
    gate = asyncio.Semaphore(ISSUE_IN_FLIGHT)
    request = BusCredsRequest(namespace=mesh.NAMESPACE, service_account=mesh.SERVICE_ACCOUNT)

    async def one() -> NatsClient:
        async with gate:
            reply = await bus.call(BUS_CREDS_ISSUE, request, BusCredsReply, timeout=60)
        if not reply.ok:
            raise RuntimeError(f"the auth service refused proxy credentials: {reply.error}")
        return NatsClient(url=nats_url, user=reply.user, password=reply.password, inbox_prefix=reply.inbox_prefix,
                          tls_ca=operator.tls_ca)

    try:
        t0 = time.monotonic()
        issued = await asyncio.gather(*(one() for _ in range(count)))
        return list(issued), time.monotonic() - t0
    finally:
        await bus.close()


async def _quiet(exc: Exception) -> None:
    """nats-py logs every error with a traceback; the refusal here is the expected outcome."""


async def anonymous_refused(nats_url: str) -> bool:
    """Whether the plane's bus refuses a connection without credentials (a check that it is locked down)."""
    try:
        client = await nats.connect(nats_url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0,
                                    error_cb=_quiet)
    except Exception:  # nats-py raises what the server said (Authorization Violation), or gives up
        return True
    await client.close()
    return False


def write_creds(path: Path, credentials: list[NatsClient]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, msgspec.json.encode(credentials))
    finally:
        os.close(fd)
    return path


def read_creds(path: Path) -> list[NatsClient]:
    return msgspec.json.decode(Path(path).read_bytes(), type=list[NatsClient])
