"""`isthmus proxy credentials list|revoke` against the real bus and store (issue 10: per-proxy credentials
can be revoked): a revoked proxy is cut at once by nats-server (a kick through the system account), not
at the session bound, and cannot come back; the list never shows a secret; the sweep deletes revoked and
idle records after their bounds and leaves live ones."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from isthmus.launch import project_env
from proto.busauth import BusCredsRecord, BusCredsReply
from runtime import bus as busmod
from runtime import bus_connect
from runtime.clientconfig import NatsClient
from services.auth.service import SESSION_SECONDS
from tests.integration.conftest import ControlPlane, eventually

pytestmark = pytest.mark.asyncio
SWEEP_INTERVAL = "0.5"  # seconds between sweeps in this module's auth service (default 60)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Only what these tests need: the bus, etcd and the auth service, sweeping every half second."""
    saved = os.environ.get("ISTHMUS_BUS_CREDS_SWEEP_INTERVAL")
    os.environ["ISTHMUS_BUS_CREDS_SWEEP_INTERVAL"] = SWEEP_INTERVAL
    cp = ControlPlane(tmp_path_factory.mktemp("buscreds"))
    try:
        cp.start_service("auth")
        yield cp
    finally:
        cp.stop()
        if saved is None:
            os.environ.pop("ISTHMUS_BUS_CREDS_SWEEP_INTERVAL", None)
        else:
            os.environ["ISTHMUS_BUS_CREDS_SWEEP_INTERVAL"] = saved


async def issue(plane: ControlPlane, namespace: str = "shop", sa: str = "cart") -> BusCredsReply:
    return await plane.issue_credentials(namespace, sa)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", *args], env=project_env(), capture_output=True,
                          text=True, timeout=60)


def auth_of(creds: BusCredsReply) -> NatsClient:
    return NatsClient(user=creds.user, password=creds.password, inbox_prefix=creds.inbox_prefix)


async def test_a_revoked_proxy_is_disconnected_at_once_and_cannot_reconnect(plane: ControlPlane) -> None:
    creds = await issue(plane)
    other = await issue(plane, "shop", "web")  # another proxy: untouched
    gone = asyncio.Event()

    async def closed() -> None:
        gone.set()

    proxy = await nats.connect(plane.nats_url, allow_reconnect=False, closed_cb=closed,
                               **busmod.connect_options(auth_of(creds)))
    bystander = await nats.connect(plane.nats_url, allow_reconnect=False, **busmod.connect_options(auth_of(other)))
    try:
        await proxy.flush()
        began = time.monotonic()
        result = await asyncio.to_thread(cli, "proxy", "credentials", "revoke", creds.user)
        assert result.returncode == 0, result
        assert result.stdout == f"bus credential {creds.user} revoked; 1 open connection(s) closed\n", result
        await asyncio.wait_for(gone.wait(), 10)  # the session bound would be SESSION_SECONDS (600 s)
        assert time.monotonic() - began < 10 < SESSION_SECONDS
        assert proxy.is_closed
        with pytest.raises(Exception, match="Authorization Violation"):  # refused at the callout
            await nats.connect(plane.nats_url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2,
                               **busmod.connect_options(auth_of(creds)))
        await bystander.flush(timeout=2)
        assert bystander.is_connected
    finally:
        for client in (proxy, bystander):
            await client.close()
    assert "closed a revoked user's connections" in (await asyncio.to_thread(plane.services["auth"].log_tail, 200))


async def test_a_proxy_that_reconnects_after_revocation_is_refused(plane: ControlPlane) -> None:
    """nats-py reconnects by itself after the kick: each attempt goes through the callout and is refused."""
    creds = await issue(plane)
    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(str(exc))

    proxy = await nats.connect(plane.nats_url, reconnect_time_wait=0.2, max_reconnect_attempts=-1, error_cb=record,
                               **busmod.connect_options(auth_of(creds)))
    try:
        await proxy.flush()
        assert cli("proxy", "credentials", "revoke", creds.user.removeprefix("proxy.")).returncode == 0  # the bare id
        await eventually(lambda: any("authorization violation" in e.lower() for e in errors), 10)
        assert not proxy.is_connected
    finally:
        await proxy.close()


async def test_list_shows_each_credential_and_its_state_and_never_a_secret(plane: ControlPlane) -> None:
    live, revoked = await issue(plane, "list", "a"), await issue(plane, "list", "b")
    client = await nats.connect(plane.nats_url, allow_reconnect=False, **busmod.connect_options(auth_of(live)))
    await client.close()  # the callout let it in once: last seen now
    assert cli("proxy", "credentials", "revoke", f"proxy.{revoked.user.removeprefix('proxy.')}").returncode == 0
    table = cli("proxy", "credentials", "list", "-n", "list")
    assert table.returncode == 0, table
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["USER", "NAMESPACE", "SERVICE-ACCOUNT", "ISSUED", "ISSUED-BY", "LAST-SEEN", "EXPIRES",
                                "STATE"]
    [row_live] = [line for line in lines if live.user in line]
    [row_revoked] = [line for line in lines if revoked.user in line]
    assert " list " in row_live and " operator " in row_live and "s ago" in row_live, row_live
    assert row_live.rstrip().endswith("active") and " never " in row_live, row_live  # never expires
    assert "revoked" in row_revoked and row_revoked.count("never") == 2, row_revoked  # never seen, never expires
    as_json = cli("proxy", "credentials", "list", "-n", "list", "-o", "json")
    records = {c["user"]: c for c in json.loads(as_json.stdout)}
    assert records[revoked.user]["revoked"] is True and records[live.user]["last_seen"] > 0
    for text in (table.stdout, table.stderr, as_json.stdout, cli("proxy", "credentials", "list", "-o", "yaml").stdout):
        assert live.password not in text and revoked.password not in text
        assert "secret" not in text and "password" not in text
    entry = await (store := await plane.store()).get(f"/isthmus/bus/creds/{live.user.removeprefix('proxy.')}")
    await store.close()
    assert entry is not None and json.loads(entry.value)["secret_sha256"] not in as_json.stdout


async def test_revoking_an_unknown_or_malformed_credential_says_which(plane: ControlPlane) -> None:
    unknown = cli("proxy", "credentials", "revoke", "proxy.0123456789abcdef")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: no credential 'proxy.0123456789abcdef'"), unknown.stderr
    assert unknown.stderr.count("\n") == 1
    malformed = cli("proxy", "credentials", "revoke", "../../etc")
    assert malformed.returncode == 2 and "'../../etc' is not a proxy credential" in malformed.stderr, malformed.stderr


async def put_record(plane: ControlPlane, cred_id: str, **fields: object) -> str:
    now = time.time()
    record = BusCredsRecord(**{"id": cred_id, "namespace": "sweep", "service_account": "sa", "secret_sha256": "0" * 64,
                               "created": now, **fields})  # type: ignore[arg-type]
    store = await plane.store()
    try:
        await store.put(f"/isthmus/bus/creds/{cred_id}", busmod.encode(record))
    finally:
        await store.close()
    return f"/isthmus/bus/creds/{cred_id}"


async def test_the_sweep_deletes_revoked_and_idle_records_after_their_bounds_and_keeps_live_ones(
        plane: ControlPlane) -> None:
    now = time.time()
    month = 30 * 86400  # ISTHMUS_BUS_CREDS_IDLE's default
    old_revoked = await put_record(plane, "a" * 16, revoked=True, revoked_at=now - SESSION_SECONDS - 5,
                                   created=now - 7200)
    new_revoked = await put_record(plane, "b" * 16, revoked=True, revoked_at=now - SESSION_SECONDS + 120,
                                   created=now - 7200)
    live = await put_record(plane, "c" * 16, last_seen=now - 60, created=now - 2 * month)
    idle = await put_record(plane, "d" * 16, last_seen=now - month - 60, created=now - 2 * month)
    expired = await put_record(plane, "e" * 16, expires=now - SESSION_SECONDS - 5, created=now - 7200)
    store = await plane.store()
    try:
        async def keys() -> set[str]:
            return set(await store.keys("/isthmus/bus/creds/"))

        deadline = time.monotonic() + 15
        while {old_revoked, idle, expired} & await keys():
            assert time.monotonic() < deadline, await keys()
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # three more passes: the others stay
        assert {new_revoked, live} <= await keys()
    finally:
        await store.close()
    log = await asyncio.to_thread(plane.services["auth"].log_tail, 200)
    assert "bus credential swept" in log and "idle" in log


async def test_the_auth_system_user_may_list_and_kick_and_nothing_else(plane: ControlPlane) -> None:
    system = plane.creds.client_config("auth-system", plane.nats_url).nats
    assert oct(plane.creds.system_config.stat().st_mode & 0o777) == "0o600"
    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(str(exc).lower())

    client = await nats.connect(plane.nats_url, allow_reconnect=False, error_cb=record,
                                **busmod.connect_options(system))
    try:
        reply = json.loads((await client.request("$SYS.REQ.SERVER.PING.CONNZ", b'{"user": "nobody"}', timeout=5)).data)
        assert reply["data"]["connections"] == []
        for subject in ("$SYS.REQ.SERVER.PING.VARZ", "$SYS.REQ.SERVER.PING.RELOAD", "isthmus.config.apply"):
            await client.publish(subject, b"{}")
            await eventually(lambda: any(f'permissions violation for publish to "{subject.lower()}"' in e
                                         for e in errors), 5)
        await client.subscribe("$SYS.>")
        await eventually(lambda: any('permissions violation for subscription to "$sys.>"' in e for e in errors), 5)
    finally:
        await client.close()


async def test_a_revoked_client_says_why_once_and_backs_off(plane: ControlPlane,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A sidecar whose credential was revoked logged only "bus disconnected" and retried every 0.25 s for
    ever: four callout refusals a second, each a line in nats-server's and the auth service's logs. It now
    says once that the bus refused its credentials (naming the user), and its retries back off to
    REFUSED_WAIT_MAX."""
    creds = await issue(plane, "backoff", "sa")
    logs: list[dict] = []

    class Recorder:
        def __getattr__(self, level: str):  # type: ignore[no-untyped-def]
            return lambda event, **fields: logs.append({"event": event, "level": level, **fields})

    monkeypatch.setattr(bus_connect, "log", Recorder())  # connect() logs the refusal

    def refusals() -> int:
        tail = plane.services["auth"].log_tail(2000)
        return sum(1 for line in tail.splitlines() if "bus connection refused" in line and creds.user in line)

    bus = await busmod.connect(plane.nats_url, "revoked-test", auth=auth_of(creds))
    try:
        assert (await asyncio.to_thread(cli, "proxy", "credentials", "revoke", creds.user)).returncode == 0
        await eventually(lambda: any(e["event"] == "bus refused our credentials" for e in logs), 10)
        await asyncio.sleep(1.0)  # the first quick retries
        before = await asyncio.to_thread(refusals)
        await asyncio.sleep(6.0)  # 0.25 s apart this would be ~24 refusals; backed off to 5 s, at most 3
        during = await asyncio.to_thread(refusals) - before
    finally:
        await bus.close()
    assert during <= 4, during
    said = [e for e in logs if e["event"] == "bus refused our credentials"]
    assert len(said) == 1 and said[0]["level"] == "warning" and said[0]["user"] == creds.user, said
    assert "revoked" in said[0]["why"] and creds.password not in repr(logs)


async def test_a_credential_prefix_larger_than_grpc_default_4mib_still_lists(plane: ControlPlane) -> None:
    """gRPC's 4 MiB default on a received message made `isthmus proxy credentials list` (and every token
    join, which counts the token's joins) fail once the records passed it, about 16,000 credentials, far
    below MAX_CREDENTIALS (100,000): "Received message larger than max". Five 1 MiB values stand in."""
    store = await plane.store()
    keys = [f"/isthmus/bus/creds/big-{i}" for i in range(5)]  # not records: the list skips them
    try:
        for key in keys:
            await store.put(key, b"x" * (1024 * 1024))
        entries, _ = await store.list("/isthmus/bus/creds/")
        assert sum(len(e.value) for e in entries) > 4 * 1024 * 1024
        live = await issue(plane, "big", "sa")
        listed = await asyncio.to_thread(cli, "proxy", "credentials", "list", "-n", "big")
        assert listed.returncode == 0, listed.stderr
        assert live.user in listed.stdout
    finally:
        for key in keys:
            await store.delete(key)
        await store.close()


async def test_two_auth_replicas_joining_one_token_at_once_take_its_uses_once(plane: ControlPlane) -> None:
    """Joins were counted by listing the records that name the token, then writing the new one: two auth
    replicas (a queue group) answering joins of a one-use token at the same moment both saw none and both
    issued a credential. The count is now a compare-and-swap on /isthmus/bus/joins/<token id>."""
    from proto.ca import TokenRecord
    from services.auth.creds import JOINS, Credentials, Refused

    now = time.time()
    token = TokenRecord(id="f" * 16, namespace="race", service_account="sa", secret_sha256="0" * 64, created=now,
                        expires=now + 3600, uses=1, max_uses=1)
    stores = [await plane.store() for _ in range(4)]  # four replicas, each its own etcd client
    try:
        results = await asyncio.gather(*(Credentials(store).issue("race", "sa", 0, now, token, "join")
                                         for store in stores), return_exceptions=True)
        issued = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, Refused)]
        assert len(issued) == 1 and len(refused) == 3, results
        assert "already joined 1 time(s)" in str(refused[0])
        counter = await stores[0].get(JOINS + token.id)
        assert counter is not None and counter.value == b"1" and counter.lease  # it ends with the token
    finally:
        for store in stores:
            await store.close()


async def test_revoking_a_token_names_the_proxies_that_joined_with_it(plane: ControlPlane) -> None:
    """A token revoked after its holder joined leaves the holder's bus credential valid (it never expires, and
    it renews its certificate): `token revoke` said only "revoked", and no list could tell which credential
    the token made. It now warns naming them, and `proxy credentials list --token ID` shows them."""
    from proxy.control.buscreds import obtain

    if "ca" not in plane.services:
        await plane.start_service_async("ca")
    created = await asyncio.to_thread(cli, "token", "create", "-n", "thief", "--service-account", "sa")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    token_id = token.split(".")[0]
    joined = await obtain(plane.nats_url, None, "thief", "sa", token=token)
    revoked = await asyncio.to_thread(cli, "token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == f"token {token_id} revoked\n"
    assert revoked.stderr.startswith("warning: 1 proxy bus credential(s) joined with this token and stay valid")
    assert joined.user in revoked.stderr and token not in revoked.stderr + revoked.stdout
    listed = await asyncio.to_thread(cli, "proxy", "credentials", "list", "--token", token_id, "-o", "json")
    assert [(c["user"], c["token_id"]) for c in json.loads(listed.stdout)] == [(joined.user, token_id)]
    assert (await asyncio.to_thread(cli, "proxy", "credentials", "revoke", joined.user)).returncode == 0
    again = await asyncio.to_thread(cli, "token", "revoke", token_id)  # nothing left to name
    assert again.returncode == 0 and again.stderr == "", again.stderr


async def test_a_service_started_with_the_operators_config_says_in_one_line_it_needs_its_own(
        plane: ControlPlane, tmp_path: Path) -> None:
    """A ca replica "on another machine" started with the only config the docs had named, the operator's
    isthmus.yaml (no etcd section), crashed with a traceback: `etcdserver: user name is empty`."""
    began = time.monotonic()
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.registry", "--nats", plane.nats_url, "--etcd", plane.etcd_url,
                         "--state-dir", str(tmp_path)],
        env=project_env({"ISTHMUS_CONFIG": str(plane.config_path)}), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    line = json.loads(result.stderr)
    assert line["event"] == "the registry cannot start" and "no etcd credentials" in line["error"], line
    assert "secrets/<service>.yaml" in line["error"]
    assert time.monotonic() - began < 20  # at once: not after the connect retries


async def test_revoking_twice_says_it_was_already_revoked(plane: ControlPlane) -> None:
    """The second revoke printed "revoked; 0 open connection(s) closed", as if it were the first."""
    creds = await issue(plane, "twice", "sa")
    first = await asyncio.to_thread(cli, "proxy", "credentials", "revoke", creds.user)
    assert first.stdout.startswith(f"bus credential {creds.user} revoked;"), first
    second = await asyncio.to_thread(cli, "proxy", "credentials", "revoke", creds.user)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(f"bus credential {creds.user} was already revoked "), second.stdout
    assert second.stdout.rstrip().endswith("ago; 0 open connection(s) closed"), second.stdout


async def test_a_proxy_credential_waits_for_a_stopped_auth_service_instead_of_being_called_unknown(
        plane: ControlPlane) -> None:
    """Found by an attack: with the auth service stopped (SIGSTOP, or restarting), nats-server's callout goes
    unanswered and it refuses the connection as it refuses an unknown user; `proxy run` then said its valid
    token was unknown (and a saved credential refused) and exited. A refusal as slow as the callout timeout
    is now waited out like an absent bus; a fast refusal still fails at once."""
    import signal

    from proxy.control import buscreds

    creds = await issue(plane, "stopped", "sa")
    auth = plane.services["auth"]
    os.kill(auth.pid, signal.SIGSTOP)
    try:
        connecting = asyncio.ensure_future(buscreds._connect(plane.nats_url, auth_of(creds)))
        await asyncio.sleep(6.0)  # unanswered callouts (2 s each)
        assert not connecting.done(), connecting.result() if not connecting.exception() else connecting.exception()
    finally:
        os.kill(auth.pid, signal.SIGCONT)
    bus = await asyncio.wait_for(connecting, 20)
    await bus.close()
    started = time.monotonic()
    with pytest.raises(buscreds.CredentialsError, match="refused"):  # unknown: answered, so at once
        await buscreds._connect(plane.nats_url, NatsClient(user="proxy.0123456789abcdef", password="x" * 43))
    assert time.monotonic() - started < buscreds.CONNECT_WAIT / 2

