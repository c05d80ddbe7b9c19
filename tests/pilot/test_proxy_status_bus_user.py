"""An ACK's bus_user (the debug subject the operator asks) is kept only when the credential's identity is the
registered workload's (services/pilot/proxy_status.py bus_user_for). The store here is a dict standing in for
etcd's one read: the integration test tests/integration/test_proxy_debug_spoof.py runs it against the real one."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from proto.busauth import BusCredsRecord
from proto.registry import Workload
from proto.xds import Ack
from runtime.bus import encode
from runtime.store import BUS_CREDS_PREFIX
from services.pilot.proxy_status import ProxyStatusRecorder


class Records:
    def __init__(self, records: dict[str, BusCredsRecord]) -> None:
        self.values = {BUS_CREDS_PREFIX + k: encode(v) for k, v in records.items()}
        self.reads = 0

    async def get(self, key: str) -> Any:
        self.reads += 1
        value = self.values.get(key)
        return SimpleNamespace(value=value) if value is not None else None


def record(cred_id: str, namespace: str, service_account: str, revoked: bool = False) -> BusCredsRecord:
    return BusCredsRecord(id=cred_id, namespace=namespace, service_account=service_account, secret_sha256="x",
                          created=0.0, revoked=revoked)


WORKLOADS = {"victim": Workload(id="victim", service="app", namespace="shop", service_account="cart")}


def bus_user(store: Records, proxy_id: str, user: str) -> str:
    recorder = ProxyStatusRecorder(store, workload=WORKLOADS.get)  # type: ignore[arg-type]
    ack = Ack(proxy_id=proxy_id, epoch="e", seq=1, version=1, bus_user=user)
    return asyncio.run(recorder.bus_user_for(ack))


def test_only_a_credential_of_the_workloads_own_identity_is_kept() -> None:
    store = Records({"own": record("own", "shop", "cart"), "other": record("other", "shop", "web"),
                     "elsewhere": record("elsewhere", "bank", "cart"), "gone": record("gone", "shop", "cart", True)})
    assert bus_user(store, "victim", "proxy.own") == "proxy.own"
    assert bus_user(store, "victim", "proxy.other") == ""  # another service account of the namespace
    assert bus_user(store, "victim", "proxy.elsewhere") == ""  # another namespace
    assert bus_user(store, "victim", "proxy.gone") == ""  # revoked
    assert bus_user(store, "victim", "proxy.unknown") == ""  # no such credential
    assert bus_user(store, "victim", "operator") == ""  # not a proxy's credential
    assert bus_user(store, "not-registered", "proxy.own") == ""  # no workload to compare with


def test_a_credentials_identity_is_read_once() -> None:
    store = Records({"own": record("own", "shop", "cart")})
    recorder = ProxyStatusRecorder(store, workload=WORKLOADS.get)  # type: ignore[arg-type]
    ack = Ack(proxy_id="victim", epoch="e", seq=1, version=1, bus_user="proxy.own")

    async def twice() -> None:
        assert await recorder.bus_user_for(ack) == "proxy.own"
        assert await recorder.bus_user_for(ack) == "proxy.own"
    asyncio.run(twice())
    assert store.reads == 1


def test_an_ack_from_another_namespace_or_service_under_a_registered_id_does_not_replace_its_row() -> None:
    """A proxy whose registration the registry refused (its id is another workload's) still gets pushes and ACKs
    them: its ACK took the registered proxy's row in `isthmus proxy-status` (shown SYNCED, under its own
    namespace; the registered one hidden). Only an ACK naming the registered namespace and service is kept."""
    store = Records({"own": record("own", "shop", "cart")})
    recorder = ProxyStatusRecorder(store, workload=WORKLOADS.get)  # type: ignore[arg-type]

    def ack(namespace: str, service: str) -> bytes:
        return encode(Ack(proxy_id="victim", epoch="e", seq=1, version=1, namespace=namespace, service=service,
                          bus_user="proxy.own"))

    for namespace, service in (("other", "app"), ("shop", "intruder")):
        asyncio.run(recorder.on_ack(ack(namespace, service)))
        assert recorder.dirty == {}, (namespace, service)
    asyncio.run(recorder.on_ack(ack("shop", "app")))
    assert recorder.dirty["victim"].namespace == "shop" and recorder.dirty["victim"].bus_user == "proxy.own"
