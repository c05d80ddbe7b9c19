"""The sidecar's workload identity against the real ca, nats-server and etcd: a token buys the first
certificate and /certs shows it; refusals exit 1 with the ca's reason; renewal with the certificate as
proof; a restart with --state-dir needs no token."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isthmus.launch import free_port, project_env
from proto.ca import RotateRootReply, TokenCreateReply, TokenCreateRequest, TokenListReply, TrustBundle
from proxy.identity.agent import IdentityAgent, IdentityConfig
from proxy.identity.tls import check_peer_identity
from runtime import bus as busmod
from tests.integration.conftest import ControlPlane, Sidecar, eventually, role_for

pytestmark = pytest.mark.asyncio
TD = "cluster.local"


async def token(plane: ControlPlane, ns: str, sa: str, uses: int = 1) -> tuple[str, str]:
    """(token, id) made as `isthmus token create` makes it."""
    bus = await plane.bus("test-token")  # the operator creates tokens
    try:
        reply = await bus.call("isthmus.ca.token.create",
                               TokenCreateRequest(namespace=ns, service_account=sa, uses=uses), TokenCreateReply, 10)
    finally:
        await bus.close()
    assert reply.ok, reply.error
    return reply.token, reply.id


async def bus_call(plane: ControlPlane, subject: str, reply_type: type) -> object:
    bus = await plane.bus("test-identity", role_for(subject))
    try:
        return busmod.decode(await bus.request(subject, b"{}", 10), reply_type)
    finally:
        await bus.close()


def certs(sidecar: Sidecar) -> dict:
    status, body = sidecar.admin("/certs")
    assert status == 200, body
    return json.loads(body)


def leaf(dump: dict) -> dict | None:
    chains = [c["cert_chain"] for c in dump["certificates"] if c["cert_chain"]]
    return chains[0][0] if chains else None


async def has_cert(sidecar: Sidecar, timeout: float = 20.0) -> dict:
    def check() -> dict | None:
        if not sidecar.process.is_running:
            raise AssertionError(f"sidecar exited:\n{sidecar.process.log_tail()}")
        try:
            return leaf(certs(sidecar))
        except OSError:  # the admin port is not up yet
            return None
    return await eventually(check, timeout)


def run_proxy(plane: ControlPlane, ns: str, sa: str, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`isthmus proxy run` in the foreground, for the runs that must exit."""
    argv = [sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, "proxy", "run", "--service", "idt",
            "--namespace", ns, "--service-account", sa, "--service-port", "9080", "--app-port", str(free_port()),
            "--inbound-port", str(free_port()), "--outbound-port", str(free_port()), "--admin-port", str(free_port()),
            *extra]
    env = project_env()
    env.pop("ISTHMUS_TOKEN", None)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


async def test_a_proxy_with_a_token_gets_its_certificate_and_certs_shows_it(mesh: ControlPlane) -> None:
    secret, token_id = await token(mesh, "idt1", "cart")
    sidecar = mesh.proxy("cart", free_port(), namespace="idt1",
                         extra=("--service-account", "cart", "--token", secret))
    await sidecar.ready()
    cert = await has_cert(sidecar)
    assert cert["subject_alt_names"] == [{"uri": f"spiffe://{TD}/ns/idt1/sa/cart"}]
    assert int(cert["days_until_expiration"]) == 0 or int(cert["days_until_expiration"]) >= 0
    dump = certs(sidecar)
    bundle = await bus_call(mesh, "isthmus.ca.bundle", TrustBundle)
    from cryptography import x509

    roots = [format(x509.load_pem_x509_certificate(p.encode()).serial_number, "x") for p in bundle.roots_pem]
    assert [root["serial_number"] for root in dump["certificates"][0]["ca_cert"]] == roots
    assert dump["workload"]["state"] == "valid" and dump["workload"]["serial_number"] == cert["serial_number"]
    assert cert["valid_from"] < cert["expiration_time"]
    listed = await bus_call(mesh, "isthmus.ca.token.list", TokenListReply)
    assert [t.uses for t in listed.tokens if t.id == token_id] == [0]  # the token paid for it
    assert "minted_token=False" in sidecar.process.log_tail() or "no token given" not in sidecar.process.log_tail()


async def test_a_proxy_without_a_token_mints_one_for_its_own_identity(mesh: ControlPlane) -> None:
    """The path every other integration test's sidecars take (they pass no token)."""
    sidecar = mesh.proxy("mint", free_port(), namespace="idt2", extra=("--service-account", "minty"))
    started = time.monotonic()
    await sidecar.ready()
    cert = await has_cert(sidecar)
    took = time.monotonic() - started
    assert cert["subject_alt_names"] == [{"uri": f"spiffe://{TD}/ns/idt2/sa/minty"}]
    assert took < 15, took  # generous on a loaded machine; it is well under a second alone
    assert "no token given" in sidecar.process.log_tail()  # logged as the local convenience it is


async def test_a_bad_token_exits_1_with_the_reason(mesh: ControlPlane) -> None:
    """The token is checked when the sidecar joins the bus, before the ca sees it (docs/security.md)."""
    result = run_proxy(mesh, "idt3", "cart", "--token", "0123456789abcdef." + "A" * 43)  # well-formed, unknown
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the bus at ") and "does not know this bootstrap token" in line, result.stderr


async def test_a_used_up_token_exits_1_with_the_reason(mesh: ControlPlane) -> None:
    secret, _ = await token(mesh, "idt4", "cart")
    sidecar = mesh.proxy("cart", free_port(), namespace="idt4", extra=("--service-account", "cart", "--token", secret))
    await has_cert(sidecar)
    result = run_proxy(mesh, "idt4", "cart", "--token", secret)
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the control plane refused the bootstrap token: token ") and " is used up" in line, \
        result.stderr


async def test_a_token_file_works_like_a_token(mesh: ControlPlane, tmp_path: Path) -> None:
    secret, _ = await token(mesh, "idt5", "cart")
    (tmp_path / "token").write_text(secret + "\n")
    sidecar = mesh.proxy("cart", free_port(), namespace="idt5",
                         extra=("--service-account", "cart", "--token-file", str(tmp_path / "token")))
    cert = await has_cert(sidecar)
    assert cert["subject_alt_names"] == [{"uri": f"spiffe://{TD}/ns/idt5/sa/cart"}]


async def test_a_token_for_another_namespace_gives_no_identity_in_this_one(mesh: ControlPlane) -> None:
    """The ca signs only the token's identity (ns b), whatever the CSR asks; the proxy in ns a refuses to run
    as someone else and exits 1 naming both."""
    secret, _ = await token(mesh, "idt-b", "cart")
    result = run_proxy(mesh, "idt-a", "cart", "--token", secret)
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"spiffe://{TD}/ns/idt-b/sa/cart" in line and f"spiffe://{TD}/ns/idt-a/sa/cart" in line, line
    assert "isthmus token create --namespace idt-a --service-account cart" in line


async def test_renewal_uses_the_certificate_not_the_spent_token(mesh: ControlPlane) -> None:
    """A 60 s certificate (the ca's minimum) renewed when 95% of its life remains, i.e. after ~3 s: the
    single-use token is spent, so only the certificate can have paid for the new one."""
    secret, _ = await token(mesh, "idt6", "cart")
    sidecar = mesh.proxy("cart", free_port(), namespace="idt6", extra=("--service-account", "cart", "--token", secret),
                         env={"ISTHMUS_SECRET_TTL": "60", "ISTHMUS_SECRET_GRACE_PERIOD_RATIO": "0.95"})
    first = await has_cert(sidecar)
    since = time.monotonic()
    renewed = await eventually(lambda: (lambda c: c if c and c["serial_number"] != first["serial_number"] else None)(
        leaf(certs(sidecar))), timeout=30)
    assert renewed["subject_alt_names"] == first["subject_alt_names"]
    assert renewed["expiration_time"] > first["expiration_time"]
    renewals = certs(sidecar)["workload"]["renewals"]
    assert 1 <= renewals <= (time.monotonic() - since) / 2 + 1  # every ~3 s, not in a loop
    assert "certificate renewed" in sidecar.process.log_tail()


async def test_a_restart_with_state_dir_reuses_the_certificate_and_needs_no_token(mesh: ControlPlane,
                                                                                 tmp_path: Path) -> None:
    state = tmp_path / "proxy-state"
    secret, _ = await token(mesh, "idt7", "cart")
    # on the workload's own host: a one-use token, no operator config
    first = mesh.proxy("cart", free_port(), namespace="idt7", operator_config=False,
                       extra=("--service-account", "cart", "--token", secret, "--state-dir", str(state)))
    issued = await has_cert(first)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert {name: stat.S_IMODE((state / name).stat().st_mode) for name in os.listdir(state)} == {
        "key.pem": 0o600, "cert-chain.pem": 0o600, "root-cert.pem": 0o600, "bus-client.yaml": 0o600}
    first.process.stop(5)
    # the token is spent: the restart joins the bus with the credentials its state dir kept
    again = mesh.proxy("cart", free_port(), namespace="idt7", operator_config=False,
                       extra=("--service-account", "cart", "--state-dir", str(state)))
    await again.ready()
    reused = await has_cert(again)
    assert reused["serial_number"] == issued["serial_number"]  # the stored certificate, not a new one
    assert reused["path"] == str(state / "cert-chain.pem")
    assert "no token given" not in again.process.log_tail() and "certificate loaded" in again.process.log_tail()
    assert f"saved in {state}" in again.process.log_tail()


async def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, expected: str) -> tuple[bool, str]:
    """A real mTLS handshake over loopback; (the SPIFFE check's answer, the identity the client found)."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_ctx)
    try:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=client_ctx), 5)
        result = check_peer_identity(writer.get_extra_info("peercert"), expected)
        writer.close()
        return result
    finally:
        server.close()


async def test_a_root_rotation_moves_workloads_to_the_new_root_while_both_are_trusted(mesh: ControlPlane) -> None:
    """Two identity agents on the real ca: after `rotate-root` both get the two-root bundle at once; one moves to
    the new root within its (shortened) spread, the other stays on the old one, and they still handshake both
    ways. Last in this module: the module's ca has rotated after it."""
    bus = await mesh.bus("test-rotation", "proxy:idt8")  # what the agents use: a sidecar's credentials
    operator = await mesh.bus("test-rotation-operator")
    agents = {}
    tasks = []
    try:
        for sa, spread in (("mover", 0.2), ("stayer", 3600.0)):
            secret, _ = await token(mesh, "idt8", sa)
            agents[sa] = IdentityAgent(IdentityConfig(TD, "idt8", sa, token=secret, rotation_spread=spread))
            tasks.append(asyncio.create_task(agents[sa].run(bus)))
        mover, stayer = agents["mover"], agents["stayer"]
        await eventually(lambda: mover.material and stayer.material and mover.bundle.held and stayer.bundle.held)
        before = mover.material
        version = mover.bundle.version
        reply = busmod.decode(await operator.request("isthmus.ca.rotate", b"{}", 10), RotateRootReply)
        assert reply.ok, reply.error
        await eventually(lambda: mover.material is not before and stayer.bundle.version > version, timeout=15)
        after = mover.material
        assert after is not None and len(mover.bundle.roots) == 2
        assert after.leaf.issuer != before.leaf.issuer  # signed by the new root
        assert mover.issuer != stayer.issuer and mover.bundle.holds(mover.issuer) and mover.bundle.holds(stayer.issuer)
        assert stayer.material is not None and stayer.material.leaf.issuer == before.leaf.issuer
        new_mover, old_stayer = mover.provider.current, stayer.provider.current
        assert new_mover is not None and old_stayer is not None and old_stayer.bundle_version > version
        assert await handshake(new_mover.server, old_stayer.client, mover.identity) == (True, mover.identity)
        assert await handshake(old_stayer.server, new_mover.client, stayer.identity) == (True, stayer.identity)
        assert await handshake(old_stayer.server, new_mover.client, mover.identity) == (False, stayer.identity)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        await operator.close()
