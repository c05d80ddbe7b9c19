"""etcd's own authentication, enabled by `isthmus up` (and the test fixtures) right after etcd starts:
a `root` user (etcd requires it before auth can be enabled; only `isthmus up` knows its password) and
the services' user `isthmus`, whose role may read and write keys under /isthmus/ and nothing else.
Proxies and the CLI never get etcd credentials: they talk NATS only.

Done over etcd's Auth gRPC API (aetcd's stubs), not etcdctl, so no password appears in a process's argv.
Idempotent: an etcd whose auth is already on (a restart over the same data) is left as it is.
"""

from __future__ import annotations

from urllib.parse import urlparse

import runtime.grpc_fork  # noqa: F401  (before aetcd: gRPC's fork handlers off)

import aetcd  # noqa: E402
from aetcd import rpc  # noqa: E402

SERVICE_ROLE = "isthmus"
KEY_PREFIX = b"/isthmus/"
_PREFIX_END = b"/isthmus0"  # etcd's range end for the prefix "/isthmus/" ('/' + 1 == '0')


async def enable_auth(etcd_url: str, root_password: str, service_user: str, service_password: str) -> bool:
    """Turn on authentication; False when it was already on (nothing changed)."""
    parsed = urlparse(etcd_url)
    client = aetcd.Client(host=parsed.hostname or "127.0.0.1", port=parsed.port or 2379, timeout=5)
    try:
        await client.connect()
        stub = rpc.AuthStub(client.channel)
        try:
            status = await stub.AuthStatus(rpc.AuthStatusRequest(), timeout=5)
        except rpc.AioRpcError as exc:
            if "user name is empty" in (exc.details() or ""):  # auth is on: unauthenticated calls are refused
                return False
            raise
        if status.enabled:
            return False
        await _ensure(stub.RoleAdd(rpc.AuthRoleAddRequest(name="root"), timeout=5))
        await _ensure(stub.UserAdd(rpc.AuthUserAddRequest(name="root", password=root_password), timeout=5))
        await stub.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5)
        await _ensure(stub.RoleAdd(rpc.AuthRoleAddRequest(name=SERVICE_ROLE), timeout=5))
        perm = rpc.Permission(permType=rpc.Permission.READWRITE, key=KEY_PREFIX, range_end=_PREFIX_END)
        await stub.RoleGrantPermission(rpc.AuthRoleGrantPermissionRequest(name=SERVICE_ROLE, perm=perm), timeout=5)
        await _ensure(stub.UserAdd(rpc.AuthUserAddRequest(name=service_user, password=service_password), timeout=5))
        await stub.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=service_user, role=SERVICE_ROLE), timeout=5)
        await stub.AuthEnable(rpc.AuthEnableRequest(), timeout=5)
        return True
    finally:
        await client.close()


async def _ensure(call: object) -> None:
    """Await an add; one that exists already (a start interrupted half-way) is fine."""
    try:
        await call  # type: ignore[misc]
    except rpc.AioRpcError as exc:
        if "already exists" not in (exc.details() or ""):
            raise
