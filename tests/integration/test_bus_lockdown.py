"""The bus and the store are locked down (issue 10): real nats-server with the roles' users and the auth
callout (services/auth), real etcd with authentication on, as `isthmus up` runs them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nats
import nats.errors
import pytest

from isthmus.launch import free_port, project_env, start_nats
from isthmus.launch.bustls import make_bus_tls
from isthmus.launch.credentials import ETCD_SERVICE_USER, MeshCredentials
from proto.busauth import BusCredsReply, BusCredsRevokeReply, BusCredsRevokeRequest
from proto.ca import TokenCreateRequest, TokenRecord
from proto.subjects import (
    BUS_CREDS_ISSUE,
    BUS_CREDS_REVOKE,
    CA_BUNDLE,
    CA_BUNDLE_UPDATES,
    CA_SIGN,
    CA_TOKEN_CREATE,
    CONFIG_APPLY,
    REGISTRY_DEREGISTER,
    REGISTRY_HEARTBEAT,
    REGISTRY_REGISTER,
    XDS_PUSH,
    XDS_SNAPSHOT,
)
from proxy.control.buscreds import CredentialsError, mint_ca_token, obtain
from runtime import bus as busmod
from runtime.clientconfig import NatsClient
from runtime.store import Store, StoreError
from tests.integration.conftest import ControlPlane, eventually, reviews_doc

pytestmark = pytest.mark.asyncio


class Violations:
    """Collects what nats-server reports to a client (nats-py's error callback)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def record(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def seen(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text.lower() in e.lower() for e in self.errors):  # nats-py lower-cases the server's text
            assert time.monotonic() < deadline, f"no {text!r} among {self.errors}"
            await asyncio.sleep(0.05)


async def issue(plane: ControlPlane, namespace: str = "a", sa: str = "web") -> BusCredsReply:
    return await plane.issue_credentials(namespace, sa)


async def connect_as(plane: ControlPlane, creds: BusCredsReply, errors: Violations | None = None, **kw: object):
    auth = NatsClient(user=creds.user, password=creds.password, inbox_prefix=creds.inbox_prefix)
    return await nats.connect(plane.nats_url, allow_reconnect=False, error_cb=(errors or Violations()).record,
                              **busmod.connect_options(auth), **kw)


async def refused(url: str, **options: object) -> str:
    with pytest.raises(Exception) as info:
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2, **options)
    return str(info.value)


async def test_an_anonymous_connection_is_refused(plane: ControlPlane) -> None:
    assert "Authorization Violation" in await refused(plane.nats_url)
    assert "Authorization Violation" in await refused(plane.nats_url, user="operator", password="wrong")
    assert "Authorization Violation" in await refused(plane.nats_url, user="proxy.0123456789abcdef", password="x")


async def test_a_proxy_cannot_publish_a_push_or_a_config_change(plane: ControlPlane) -> None:
    creds = await issue(plane)
    errors = Violations()
    proxy = await connect_as(plane, creds, errors)
    watcher = await plane.nats_client("proxy")  # another proxy: would receive a push
    pushes: list[bytes] = []

    async def on_push(msg) -> None:  # type: ignore[no-untyped-def]
        pushes.append(msg.data)

    await watcher.subscribe(XDS_PUSH, cb=on_push)
    await watcher.flush()
    try:
        await proxy.publish(XDS_PUSH, b'{"forged": true}')
        await errors.seen(f'permissions violation for publish to "{XDS_PUSH}"')
        with pytest.raises(nats.errors.TimeoutError):  # pilot never sees it, so nothing answers
            await proxy.request(CONFIG_APPLY, reviews_doc("VirtualService", "lock", "  hosts: [reviews]").encode(),
                                timeout=1)
        await errors.seen(f'permissions violation for publish to "{CONFIG_APPLY}"')
        await watcher.flush()
        assert pushes == []
    finally:
        await proxy.close()
        await watcher.close()


async def test_a_proxy_cannot_make_a_service_answer_onto_a_subject_it_may_not_publish(plane: ControlPlane) -> None:
    """nats-server's allow_responses lets a service publish to any reply subject it was sent: a proxy that
    names XDS_PUSH (or the bundle updates, the config API, the callout...) as the reply subject of a request
    it may send would have the service publish there for it (found by an attack: every proxy then resynced
    on a snapshot the ca or pilot "pushed"). Services answer only inbox reply subjects; others are dropped."""
    creds = await issue(plane)
    proxy = await connect_as(plane, creds)
    watcher = await plane.nats_client("proxy")  # every other sidecar listens here
    heard: list[tuple[str, bytes]] = []

    async def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
        heard.append((msg.subject, msg.data))

    for subject in (XDS_PUSH, CA_BUNDLE_UPDATES):
        await watcher.subscribe(subject, cb=on_msg)
    await watcher.flush()
    try:
        for request in (CA_BUNDLE, CA_SIGN, XDS_SNAPSHOT):
            for reply_to in (XDS_PUSH, CA_BUNDLE_UPDATES):
                await proxy.publish(request, b'{"proxy_id": "x"}', reply=reply_to)
        await proxy.flush()
        # the same requests with the proxy's own inbox are answered: the services were up to hear the others
        for request in (CA_BUNDLE, CA_SIGN, XDS_SNAPSHOT):
            assert (await proxy.request(request, b'{"proxy_id": "x"}', timeout=10)).data
        await watcher.flush()
        await asyncio.sleep(0.5)
        assert heard == []
    finally:
        await proxy.close()
        await watcher.close()


async def test_a_proxy_cannot_read_another_proxys_signing_reply(plane: ControlPlane) -> None:
    a, b = await issue(plane, "a", "web"), await issue(plane, "b", "db")
    errors = Violations()
    spy = await connect_as(plane, a, errors)
    victim = await connect_as(plane, b)  # the plane's real ca answers its signing request
    stolen: list[bytes] = []

    async def steal(msg) -> None:  # type: ignore[no-untyped-def]
        stolen.append(msg.data)

    try:
        for pattern in (f"{b.inbox_prefix}.>", "_INBOX.>", ">"):
            await spy.subscribe(pattern, cb=steal)
            await errors.seen(f'permissions violation for subscription to "{pattern}"')
        reply = await victim.request(CA_SIGN, b'{"csr_pem": "x"}', timeout=10)
        assert json.loads(reply.data)["ok"] is False  # the ca's answer (this CSR is refused) reached b...
        await spy.flush()
        assert stolen == []  # ...and nobody else
        # and a proxy cannot answer on a service's subject in the ca's place
        await spy.subscribe(CA_SIGN, cb=steal)
        await errors.seen(f'permissions violation for subscription to "{CA_SIGN}"')
    finally:
        for client in (spy, victim):
            await client.close()


async def test_a_proxy_registers_and_heartbeats_only_workloads_of_its_own_identity(plane: ControlPlane) -> None:
    errors = Violations()
    proxy = await connect_as(plane, await issue(plane, "a", "web"), errors)
    other = await connect_as(plane, await issue(plane, "b", "db"))

    def register(namespace: str, workload_id: str, sa: str = "web") -> bytes:
        return json.dumps({"workload": {"id": workload_id, "service": "svc", "namespace": namespace,
                                        "service_account": sa}, "ttl": 30}).encode()

    async def ask(client, subject: str, payload: bytes) -> dict:  # type: ignore[no-untyped-def]
        return json.loads((await client.request(subject, payload, timeout=5)).data)

    try:
        own = await ask(proxy, f"{REGISTRY_REGISTER}.a.web", register("a", "mine"))
        assert own["ok"], own
        for namespace, sa in (("b", "web"), ("a", "db")):  # another identity's workload, on our own subject
            reply = await ask(proxy, f"{REGISTRY_REGISTER}.a.web", register(namespace, "theirs", sa))
            assert reply["ok"] is False and "these credentials are for namespace 'a'" in reply["error"], reply
        with pytest.raises(nats.errors.TimeoutError):  # another identity's subject: dropped by nats-server
            await proxy.request(f"{REGISTRY_REGISTER}.b.db", register("b", "theirs", "db"), timeout=1)
        await errors.seen(f'permissions violation for publish to "{REGISTRY_REGISTER}.b.db"')
        with pytest.raises(nats.errors.TimeoutError):  # and the plain subject is not for proxies
            await proxy.request(REGISTRY_REGISTER, register("a", "plain"), timeout=1)
        await errors.seen(f'permissions violation for publish to "{REGISTRY_REGISTER}"')
        # b's proxy cannot keep a's lease alive or deregister a's workload, even on its own subjects
        beat = {"workload_id": "mine", "namespace": "a", "service": "svc", "lease_id": own["lease_id"]}
        reply = await ask(other, f"{REGISTRY_HEARTBEAT}.b.db", json.dumps(beat).encode())
        assert reply["ok"] is False and "cannot touch a workload of namespace 'a'" in reply["error"], reply
        gone = {"workload_id": "mine", "namespace": "a", "service": "svc", "lease_id": own["lease_id"]}
        reply = await ask(other, f"{REGISTRY_DEREGISTER}.b.db", json.dumps(gone).encode())
        assert reply["ok"] is False, reply
        assert (await ask(proxy, f"{REGISTRY_HEARTBEAT}.a.web", json.dumps(beat).encode()))["ok"]
        assert (await ask(proxy, f"{REGISTRY_DEREGISTER}.a.web", json.dumps(gone).encode()))["ok"]
    finally:
        await proxy.close()
        await other.close()


async def test_a_proxy_cannot_register_over_a_workload_of_another_identity(plane: ControlPlane) -> None:
    """Same namespace, another service account: registering the same workload key would replace its entry (and
    its lease) with one naming the attacker's identity, which client sidecars would then accept in mTLS (found
    by an attack; heartbeat and deregistration were already checked against the stored workload)."""
    owner = await connect_as(plane, await issue(plane, "same", "db"))
    attacker = await connect_as(plane, await issue(plane, "same", "web"))

    def register(workload_id: str, sa: str, address: str) -> bytes:
        return json.dumps({"workload": {"id": workload_id, "service": "svc", "namespace": "same",
                                        "service_account": sa, "address": address}, "ttl": 30}).encode()

    async def ask(client, subject: str, payload: bytes) -> dict:  # type: ignore[no-untyped-def]
        return json.loads((await client.request(subject, payload, timeout=5)).data)

    try:
        theirs = await ask(owner, f"{REGISTRY_REGISTER}.same.db", register("w1", "db", "127.0.0.2"))
        assert theirs["ok"], theirs
        reply = await ask(attacker, f"{REGISTRY_REGISTER}.same.web", register("w1", "web", "127.0.0.66"))
        assert reply["ok"] is False and "service account 'db'" in reply["error"], reply
        store = await plane.store()
        try:
            entry = await store.get("/isthmus/registry/same/svc/w1")
        finally:
            await store.close()
        assert entry is not None and json.loads(entry.value)["address"] == "127.0.0.2"
        beat = {"workload_id": "w1", "namespace": "same", "service": "svc", "lease_id": theirs["lease_id"]}
        assert (await ask(owner, f"{REGISTRY_HEARTBEAT}.same.db", json.dumps(beat).encode()))["ok"]
        # the owner may register it again (a restart), and the attacker its own workloads
        assert (await ask(owner, f"{REGISTRY_REGISTER}.same.db", register("w1", "db", "127.0.0.2")))["ok"]
        assert (await ask(attacker, f"{REGISTRY_REGISTER}.same.web", register("w2", "web", "127.0.0.66")))["ok"]
    finally:
        await owner.close()
        await attacker.close()


async def test_a_service_account_with_dots_registers_on_its_own_subject(plane: ControlPlane) -> None:
    """Kubernetes service accounts are DNS-1123 subdomains: `web.v2` is one, and the ca signs it. Its registry
    subject has a token more (`...register.<ns>.web.v2`), which the registry's `*.*` never received: such a
    sidecar could not register on a locked-down bus (found by an attack)."""
    creds = await issue(plane, "dots", "web.v2")
    proxy = await connect_as(plane, creds)
    body = json.dumps({"workload": {"id": "d1", "service": "svc", "namespace": "dots", "service_account": "web.v2"},
                       "ttl": 30}).encode()
    try:
        reply = json.loads((await proxy.request(f"{REGISTRY_REGISTER}.dots.web.v2", body, timeout=5)).data)
        assert reply["ok"], reply
        other = json.dumps({"workload": {"id": "d2", "service": "svc", "namespace": "dots", "service_account": "web"},
                            "ttl": 30}).encode()  # the subject still binds it: another service account is refused
        reply = json.loads((await proxy.request(f"{REGISTRY_REGISTER}.dots.web.v2", other, timeout=5)).data)
        assert reply["ok"] is False and "service account 'web.v2'" in reply["error"], reply
    finally:
        await proxy.close()


async def test_bus_credentials_are_issued_only_for_names_the_ca_would_sign(plane: ControlPlane) -> None:
    """A name goes into the proxy's subject permissions: `>` or `*` as a service account would let its holder
    register as every service account of the namespace (found by an attack: the ca refused these names for a
    token, the auth service issued credentials for them)."""
    bus = await plane.bus("test-issue")
    try:
        for namespace, sa in (("a", ">"), ("a", "*"), (">", "web"), ("a", "b c"), ("a.b", "web"), ("a", "Web"),
                              ("a", "web\u202e"), ("a", "a" * 254)):
            raw = json.dumps({"namespace": namespace, "service_account": sa}).encode()  # past BusCredsRequest's bounds
            reply = busmod.decode(await bus.request(BUS_CREDS_ISSUE, raw), BusCredsReply)
            assert reply.ok is False and ("DNS-1123" in reply.error or "length <= 253" in reply.error), \
                (namespace, sa, reply)
        assert (await issue(plane, "a", "web.v2")).ok  # a subdomain service account is fine (Kubernetes')
    finally:
        await bus.close()


async def test_revoked_proxy_credentials_are_refused(plane: ControlPlane) -> None:
    creds = await issue(plane)
    await (await connect_as(plane, creds)).close()  # good until revoked
    bus = await plane.bus("test-revoke")
    try:
        reply = await bus.call(BUS_CREDS_REVOKE, BusCredsRevokeRequest(user=creds.user), BusCredsRevokeReply)
        assert reply.ok, reply
    finally:
        await bus.close()
    auth = NatsClient(user=creds.user, password=creds.password, inbox_prefix=creds.inbox_prefix)
    assert "Authorization Violation" in await refused(plane.nats_url, **busmod.connect_options(auth))


async def test_a_proxy_cannot_issue_credentials(plane: ControlPlane) -> None:
    errors = Violations()
    proxy = await connect_as(plane, await issue(plane), errors)
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await proxy.request(BUS_CREDS_ISSUE, b'{"namespace": "x", "service_account": "y"}', timeout=1)
        await errors.seen(f'permissions violation for publish to "{BUS_CREDS_ISSUE}"')
    finally:
        await proxy.close()


async def put_token(plane: ControlPlane, namespace: str, sa: str, *, uses: int = 1, expires_in: float = 600,
                    revoked: bool = False) -> str:
    """A bootstrap token as the ca stores it (services/ca/tokens.py: <16 hex>.<43 base64url>, secret hashed)."""
    token_id, secret = os.urandom(8).hex(), "s" * 43
    now = time.time()
    record = TokenRecord(id=token_id, namespace=namespace, service_account=sa,
                         secret_sha256=hashlib.sha256(secret.encode()).hexdigest(), created=now,
                         expires=now + expires_in, uses=uses, max_uses=max(uses, 1), revoked=revoked)
    store = await plane.store()
    try:
        await store.put(f"/isthmus/ca/tokens/{token_id}", busmod.encode(record))
    finally:
        await store.close()
    return f"{token_id}.{secret}"


async def test_a_bootstrap_token_joins_with_credentials_bound_to_its_namespace(plane: ControlPlane) -> None:
    token = await put_token(plane, "shop", "cart")
    auth = await obtain(plane.nats_url, None, "ignored", "ignored", token)
    assert auth.user.startswith("proxy.") and auth.inbox_prefix.endswith(auth.user.removeprefix("proxy."))
    store = await plane.store()
    try:
        entry = await store.get(f"/isthmus/bus/creds/{auth.user.removeprefix('proxy.')}")
        assert entry is not None and json.loads(entry.value)["namespace"] == "shop"
        assert json.loads(entry.value)["service_account"] == "cart"
    finally:
        await store.close()
    client = await nats.connect(plane.nats_url, allow_reconnect=False, **busmod.connect_options(auth))
    await client.close()
    # each refusal says why: the join answers a token its holder was given, the callout refuses an unknown one
    for bad, reason in ((await put_token(plane, "shop", "cart", uses=0), "is used up"),
                        (await put_token(plane, "shop", "cart", revoked=True), "was revoked"),
                        (await put_token(plane, "shop", "cart", expires_in=-1), "expired"),
                        ("0123456789abcdef." + "x" * 43, "does not know this bootstrap token")):
        with pytest.raises(CredentialsError, match=reason):
            await obtain(plane.nats_url, None, "shop", "cart", bad)


async def test_a_bootstrap_token_joins_at_most_as_often_as_its_uses(plane: ControlPlane) -> None:
    """Joining does not spend a token (the ca does, on signing), so without a bound one unspent one-use token
    minted credentials without end (found by an attack: 200 in 1.3 s, each kept in etcd until revoked, until
    MAX_CREDENTIALS refused every proxy's join). A token pays for `uses` joins: its `uses` proxies."""
    token = await put_token(plane, "shop", "cart", uses=2)
    first = await obtain(plane.nats_url, None, "shop", "cart", token)
    second = await obtain(plane.nats_url, None, "shop", "cart", token)  # at the bound: still joins
    assert first.user != second.user
    with pytest.raises(CredentialsError, match="already joined 2 time"):  # one over
        await obtain(plane.nats_url, None, "shop", "cart", token)
    # the credentials it did pay for keep working, and another token is not affected
    client = await nats.connect(plane.nats_url, allow_reconnect=False, **busmod.connect_options(second))
    await client.close()
    assert (await obtain(plane.nats_url, None, "shop", "cart", await put_token(plane, "shop", "cart"))).user


async def test_a_bootstrap_token_is_minted_over_the_operators_connection_not_the_proxys(plane: ControlPlane) -> None:
    ca = await plane.nats_client("ca")  # stands in for the ca: answers token creation
    asked: list[dict] = []

    async def create(msg) -> None:  # type: ignore[no-untyped-def]
        asked.append(json.loads(msg.data))
        await msg.respond(b'{"ok": true, "id": "0123456789abcdef", "token": "minted"}')

    await ca.subscribe(CA_TOKEN_CREATE, cb=create)
    await ca.flush()
    errors = Violations()
    proxy = await connect_as(plane, await issue(plane), errors)
    try:
        # "minted" from the stand-in, or a real token when a ca another test of this module started answers first;
        # the bus given as a cluster's comma-separated nodes, one of them down: the live one mints
        assert await mint_ca_token(f"nats://127.0.0.1:{free_port()},{plane.nats_url}", plane.operator, "shop", "cart")
        request = busmod.decode(json.dumps(asked[0]).encode(), TokenCreateRequest)
        assert (request.namespace, request.service_account, request.uses) == ("shop", "cart", 1)
        with pytest.raises(nats.errors.TimeoutError):  # the proxy's own credentials may not
            await proxy.request(CA_TOKEN_CREATE, b'{"namespace": "shop", "service_account": "cart"}', timeout=1)
        await errors.seen(f'permissions violation for publish to "{CA_TOKEN_CREATE}"')
        assert len(asked) == 1
    finally:
        await proxy.close()
        await ca.close()


async def test_a_proxy_with_neither_token_nor_config_exits_1_saying_how_to_get_one(plane: ControlPlane,
                                                                                   tmp_path: Path) -> None:
    env = project_env()
    env.pop("ISTHMUS_CONFIG", None)
    env.pop("ISTHMUS_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, "proxy", "run",
                             "--service", "lone", "--service-port", "9080", "--app-port", "9",
                             *(arg for name in ("inbound", "outbound", "admin")
                               for arg in (f"--{name}-port", str(free_port())))],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no bus credentials" in lines[0] and "isthmus token create" in lines[0], lines
    assert "--token-file" in lines[0], lines  # the way docs/cli.md recommends passing a token (kept out of `ps`)


def cli(plane: ControlPlane, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


async def test_the_operator_config_applies_config_from_flag_env_and_working_directory(plane: ControlPlane,
                                                                                    tmp_path: Path) -> None:
    doc = tmp_path / "vs.yaml"
    doc.write_text(reviews_doc("VirtualService", "lock", "  hosts: [reviews]\n  http:\n  - route:\n"
                                                         "    - destination: {host: reviews}\n"))
    env = project_env()
    env.pop("ISTHMUS_CONFIG", None)
    env.pop("ISTHMUS_NATS_URL", None)
    result = cli(plane, "apply", "-f", str(doc), env=env, cwd=tmp_path)  # no config anywhere: refused
    assert result.returncode == 1 and "error:" in result.stderr, result
    result = cli(plane, "--config", str(plane.config_path), "apply", "-f", str(doc), env=env, cwd=tmp_path)
    assert result.returncode == 0, result
    result = cli(plane, "get", "virtualservices", "-n", "lock", env={**env, "ISTHMUS_CONFIG": str(plane.config_path)},
                 cwd=tmp_path)
    assert result.returncode == 0 and "reviews" in result.stdout, result
    (tmp_path / ".isthmus").mkdir()
    (tmp_path / ".isthmus" / "isthmus.yaml").write_bytes(plane.config_path.read_bytes())
    result = cli(plane, "delete", "-f", str(doc), env=env, cwd=tmp_path)  # ./.isthmus/isthmus.yaml
    assert result.returncode == 0, result
    assert oct(plane.config_path.stat().st_mode & 0o777) == "0o600"


async def test_etcd_refuses_wrong_or_missing_credentials(plane: ControlPlane) -> None:
    host, port = plane.etcd_url.removeprefix("http://").split(":")
    began = time.monotonic()
    with pytest.raises(StoreError, match="authentication failed"):
        await Store.connect(host, int(port), wait=30, user=ETCD_SERVICE_USER, password="wrong")
    assert time.monotonic() - began < 10  # refused at once, not retried until `wait` runs out
    began = time.monotonic()
    with pytest.raises(StoreError, match="no etcd credentials"):  # at connect, not at the first read
        await Store.connect(host, int(port), wait=30)
    assert time.monotonic() - began < 10
    service = await plane.store()  # the services' user: reads and writes under /isthmus/ only
    try:
        await service.put("/isthmus/test/lock", b"1")
        with pytest.raises(Exception, match="permission denied"):
            await service.put("/elsewhere", b"1")
    finally:
        await service.close()


async def test_nats_tls_refuses_a_plaintext_client_and_serves_one_with_the_ca(tmp_path: Path) -> None:
    creds = MeshCredentials.create(tmp_path)
    ca, cert, key = make_bus_tls(tmp_path)
    creds.nats_ca = str(ca)
    server = start_nats(tmp_path, authorization=creds.nats_authorization(), tls=(cert, key))
    url = server.url or ""
    try:
        operator = creds.client_config("operator", url).nats
        assert operator.tls_ca == str(ca)
        plain = NatsClient(user="operator", password=operator.password, inbox_prefix=operator.inbox_prefix)
        await refused(url, **busmod.connect_options(plain))
        other = make_bus_tls(tmp_path / "other")[0]  # a CA that did not sign the server's certificate
        wrong = NatsClient(user="operator", password=operator.password, tls_ca=str(other))
        await refused(url, **busmod.connect_options(wrong))
        bus = await busmod.connect(url, "test-tls", auth=operator, wait=10)
        try:
            assert bus.client.connected_url is not None
            sub = await bus.client.subscribe("isthmus.config.events")
            await bus.flush()
            await sub.unsubscribe()
        finally:
            await bus.close()
    finally:
        server.stop()


async def test_revoking_a_running_sidecars_credential_cuts_it_off_the_bus_at_once(mesh: ControlPlane,
                                                                                  tmp_path: Path) -> None:
    """A real `proxy run` (it minted its own credential with the operator's config): `isthmus proxy
    credentials revoke` closes its bus connection within seconds, not at the 600 s session bound, and each
    reconnect it then tries is refused at the callout as revoked."""
    sidecar = await mesh.proxy("revokee", free_port(), namespace="rvk").ready()
    env = project_env()
    listed = cli(mesh, "proxy", "credentials", "list", "-n", "rvk", "-o", "json", env=env, cwd=tmp_path)
    [cred] = json.loads(listed.stdout)
    assert cred["issued_by"] == "operator" and cred["last_seen"] > 0 and not cred.get("revoked"), cred  # -o omits defaults
    began = time.monotonic()
    result = cli(mesh, "proxy", "credentials", "revoke", cred["user"], env=env, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith(f"bus credential {cred['user']} revoked; "), result
    assert int(result.stdout.split("; ")[1].split()[0]) >= 1, result.stdout  # its connection(s) closed
    log = await eventually(lambda: "bus disconnected" in sidecar.process.log_tail(400), 10)
    assert log and time.monotonic() - began < 10
    await eventually(lambda: f"{cred['user']} was revoked" in mesh.services["auth"].log_tail(400), 10)
    # and the sidecar says why it is off the bus (it said only "bus disconnected"), naming its user
    said = await eventually(lambda: [line for line in sidecar.process.log_tail(400).splitlines()
                                     if "bus refused our credentials" in line], 10)
    assert cred["user"] in said[0], said
    listed = cli(mesh, "proxy", "credentials", "list", "-n", "rvk", "-o", "json", env=env, cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["revoked"] is True
