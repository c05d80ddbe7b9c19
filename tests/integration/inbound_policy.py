"""What the tests of a sidecar's own security entry share (test_inbound_unregistered.py, test_nacked_security.py,
test_security_entry_owner.py, test_restarted_sidecar_entry.py): a DENY on /admin* for one workload's labels,
and a plaintext request straight to a sidecar's inbound listener, as a caller outside the mesh sends it
(PERMISSIVE takes it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.integration.httpclient import Client, Response

if TYPE_CHECKING:
    from tests.integration.conftest import Sidecar


def deny_admin(namespace: str, selector: str = "app: fin") -> str:
    """An AuthorizationPolicy `deny-admin` in `namespace`: DENY on paths /admin* for the workloads `selector`
    (one `key: value` of matchLabels) selects."""
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{{selector}}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
"""


async def inbound_get(port: int, path: str, host: str) -> Response:
    """GET `path` with `host` as Host on the inbound listener at `port`, on a connection of its own."""
    client = Client("127.0.0.1", port)
    try:
        return await client.request("GET", path, {"host": host})
    finally:
        await client.close()


def held_version(sidecar: Sidecar) -> int:
    """The version of the config the sidecar holds; -1 while its admin port is not up yet (a sidecar that is
    not ready cannot be waited for with Sidecar.ready)."""
    try:
        return int(sidecar.config_dump()["version"])
    except OSError:
        return -1
