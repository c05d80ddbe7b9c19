"""A proxy that forges another proxy's ACK naming its own bus credential: pilot records it, so `isthmus
proxy-config VICTIM` (and `proxy log VICTIM`, `bug-report`) asks the forger, who answers as the victim.

Found by attack14: the ACK subject (isthmus.xds.ack) is shared by every proxy and carries no proof of who sent
it, and pilot stored `bus_user` from the payload. Pilot now keeps an ACK's bus_user only when that credential's
record has the identity (namespace, service account) of the workload registered under the ACK's proxy_id
(services/pilot/proxy_status.py bus_user_for), so a proxy of another identity cannot take the victim's place."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import msgspec
import pytest

from proto.debug import ProxyDebugReply, ProxyDebugRequest
from proto.subjects import XDS_ACK, proxy_debug_subject
from proto.xds import Ack
from tests.integration.conftest import ControlPlane, eventually
from tests.integration.httpclient import Backend
from tests.integration.test_bus_lockdown import connect_as

pytestmark = pytest.mark.asyncio


async def test_a_forged_ack_does_not_redirect_the_operators_debug_requests(mesh: ControlPlane) -> None:
    backend = await Backend("sp").start()
    victim = await mesh.proxy("sp-app", backend.port, 9080, "sp").ready()
    victim_id = victim.config_dump()["proxy"]["id"]
    forger_creds = await mesh.issue_credentials("sp", "other")
    forger = await connect_as(mesh, forger_creds)
    forged = json.dumps({"proxy": {"id": victim_id}, "routes": [{"name": "FORGED"}], "pending": []})

    async def answer(msg: object) -> None:
        request = msgspec.json.decode(msg.data, type=ProxyDebugRequest)  # type: ignore[attr-defined]
        body = forged[request.offset:]
        await msg.respond(msgspec.json.encode(ProxyDebugReply(  # type: ignore[attr-defined]
            ok=True, proxy_id=victim_id, body=body, offset=request.offset, total=len(forged), digest="f")))

    await forger.subscribe(proxy_debug_subject(forger_creds.user.removeprefix("proxy.")), cb=answer)
    stop = asyncio.Event()

    async def forge() -> None:
        while not stop.is_set():
            await forger.publish(XDS_ACK, msgspec.json.encode(Ack(
                proxy_id=victim_id, epoch="e", seq=1, version=10**6, bus_user=forger_creds.user, service="sp-app",
                namespace="sp", proxy_version="0.1.0")))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(forge())
    try:
        async def redirected() -> bool:
            out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "isthmus.cli", "--nats",
                                          mesh.nats_url, "proxy-config", "routes", victim_id, "-o", "json"],
                                          capture_output=True, text=True, timeout=60)
            return "FORGED" in out.stdout

        with pytest.raises(AssertionError):  # the operator never reads the forger's answer as the victim's
            await eventually(redirected, timeout=10, interval=1)
    finally:
        stop.set()
        await task
        await forger.close()
        await backend.stop()
