"""AuthorizationPolicy and RequestAuthentication through the real pilot, bus and etcd to a running sidecar: the
entry appears, changes and goes (istio/istio#53071) without restarts, and pilot fetches a jwksUri from an issuer
on loopback, refreshing it so a changed key set reaches the sidecar (ISTHMUS_JWKS_REFRESH_INTERVAL short)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.integration.conftest import ControlPlane, apply_ok, eventually
from tests.integration.httpclient import Backend

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module", autouse=True)
def short_jwks_refresh() -> Iterator[None]:
    """Before the module's plane starts: its pilot refreshes key sets every 0.5 s."""
    saved = os.environ.get("ISTHMUS_JWKS_REFRESH_INTERVAL")
    os.environ["ISTHMUS_JWKS_REFRESH_INTERVAL"] = "0.5"
    yield
    if saved is None:
        os.environ.pop("ISTHMUS_JWKS_REFRESH_INTERVAL", None)
    else:
        os.environ["ISTHMUS_JWKS_REFRESH_INTERVAL"] = saved


def key_set() -> str:
    return json.dumps({"keys": [json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))]})


@pytest.fixture
def jwks_server() -> Iterator[dict]:
    served = {"body": key_set().encode(), "status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = served["body"]
            self.send_response(served["status"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # quiet: the test reads answers, not the server's log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    served["url"] = f"http://127.0.0.1:{server.server_address[1]}/jwks"
    yield served
    server.shutdown()
    server.server_close()


async def _delete(plane: ControlPlane, kind: str, namespace: str, name: str) -> int:
    nc = await plane.nats_client()
    try:
        payload = json.dumps({"resources": [{"kind": kind, "namespace": namespace, "name": name}]}).encode()
        reply = json.loads((await nc.request("isthmus.config.delete", payload, timeout=10)).data)
    finally:
        await nc.close()
    assert reply["ok"] and reply["results"][0]["action"] == "deleted", reply
    return reply["revision"]


async def test_policies_reach_the_sidecar_change_and_go_and_pilot_fetches_and_refreshes_the_jwks(
        mesh: ControlPlane, jwks_server: dict) -> None:
    ns = "authz-pilot"
    app = await Backend("fin").start()
    sidecar = await mesh.proxy("fin", app.port, 9080, ns, "app=fin").ready()

    def security() -> dict:
        return sidecar.config_dump()["security"]

    assert (security()["authorization"], security()["jwt"]) == ([], [])
    await apply_ok(mesh, f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-post, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: fin}}}}
  action: DENY
  rules: [{{to: [{{operation: {{methods: [POST], ports: ["9080"]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: {ns}}}
spec:
  jwtRules:
  - issuer: test-issuer
    jwksUri: {jwks_server["url"]}
    timeout: 2s
""", sidecar)
    assert security()["authorization"] == [{"name": f"{ns}/deny-post", "action": "DENY", "rules": 1}]
    # pilot fetches the keys in the background, then pushes them: no sidecar ever asks the issuer
    await eventually(lambda: security()["jwt"] and security()["jwt"][0]["keys"], timeout=15)
    assert security()["jwt"] == [{"source": f"{ns}/jwt", "issuer": "test-issuer", "jwks_uri": jwks_server["url"],
                                  "keys": True, "jwks_error": ""}]
    version = security()["version"]

    # a new key set at the issuer reaches the sidecar after a refresh, with a higher version
    jwks_server["body"] = key_set().encode()
    await eventually(lambda: security()["version"] > version, timeout=15)
    # the issuer fails: the last good keys stay, the reason shows
    jwks_server["status"] = 500
    await eventually(lambda: security()["jwt"][0]["jwks_error"], timeout=15)
    assert security()["jwt"][0]["keys"] is True
    assert "status 500, want 200" in security()["jwt"][0]["jwks_error"]

    await sidecar.holds(await _delete(mesh, "AuthorizationPolicy", ns, "deny-post"))
    assert security()["authorization"] == [] and len(security()["jwt"]) == 1
    deleted = await _delete(mesh, "RequestAuthentication", ns, "jwt")
    await sidecar.holds(deleted)
    # the last policy gone: the sidecar's entry is the default one at once (istio/istio#53071)
    assert security()["version"] >= deleted
    assert (security()["authorization"], security()["jwt"]) == ([], [])
    await app.stop()
