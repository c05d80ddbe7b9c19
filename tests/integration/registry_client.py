"""Registering and deregistering a workload over the bus as a proxy of its namespace does, with that identity's own
bus credentials (the registry's identity-scoped subjects), for the registry's integration tests."""

from __future__ import annotations

from proto import subjects
from proto.registry import DeregisterRequest, HeartbeatReply, RegisterReply, RegisterRequest, Workload
from runtime import bus as busmod
from tests.integration.conftest import ControlPlane


async def register(mesh: ControlPlane, namespace: str, service: str, workload_id: str, ttl: int = 60,
                   service_account: str = "default") -> RegisterReply:
    """Register as a proxy of that namespace and service account does, with its own bus credentials."""
    bus = await busmod.connect(mesh.nats_url, f"{namespace}-{service}",
                               auth=await mesh.proxy_auth(namespace, service_account))
    try:
        workload = Workload(id=workload_id, service=service, namespace=namespace, address="127.0.0.1",
                            service_account=service_account)
        return await bus.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, namespace, service_account),
                              RegisterRequest(workload=workload, ttl=ttl), RegisterReply)
    finally:
        await bus.close()


async def deregister(mesh: ControlPlane, namespace: str, service: str, workload_id: str,
                     lease_id: int = 0) -> HeartbeatReply:
    bus = await busmod.connect(mesh.nats_url, f"{namespace}-{service}", auth=await mesh.proxy_auth(namespace))
    try:
        request = DeregisterRequest(workload_id=workload_id, namespace=namespace, service=service, lease_id=lease_id)
        return await bus.call(subjects.identity_subject(subjects.REGISTRY_DEREGISTER, namespace, "default"),
                              request, HeartbeatReply)
    finally:
        await bus.close()

