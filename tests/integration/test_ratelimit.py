"""RateLimit (isthmus.io/v1alpha1) through real sidecars: the server's sidecar limits requests to its app."""

from __future__ import annotations

import itertools

import pytest

from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Client
from tests.integration.test_traffic_resilience import FlakyBackend

pytestmark = pytest.mark.asyncio
_namespaces = itertools.count(1)


def _limits(sidecar, host: str) -> list:  # type: ignore[no-untyped-def]
    for cluster in sidecar.config_dump()["clusters"]:
        if cluster["host"] == host:
            return cluster.get("ratelimits", [])
    return []


async def test_a_token_bucket_of_five_allows_five_then_answers_429(mesh: ControlPlane) -> None:
    ns = f"rl{next(_namespaces)}"
    backend = await FlakyBackend("reviews").start()
    front = await FlakyBackend("frontend").start()
    client = None
    try:
        reviews = mesh.proxy("reviews", backend.port, 9080, ns, "app=reviews")
        frontend = mesh.proxy("frontend", front.port, 9080, ns, "app=frontend")
        await reviews.ready()
        await frontend.ready()
        host = f"reviews.{ns}.svc.cluster.local"
        await eventually(lambda: any(c["host"] == host and c["endpoints"] for c in frontend.config_dump()["clusters"]))
        reply = await apply(mesh, f"""
apiVersion: isthmus.io/v1alpha1
kind: RateLimit
metadata: {{name: reviews, namespace: {ns}}}
spec:
  selector:
    matchLabels: {{app: reviews}}
  match:
  - uri: {{prefix: /r}}
  tokenBucket: {{maxTokens: 5, tokensPerFill: 5, fillInterval: 1h}}
""")
        assert reply["ok"], reply
        await eventually(lambda: _limits(reviews, host))
        assert not _limits(frontend, f"frontend.{ns}.svc.cluster.local")
        client = Client("127.0.0.1", frontend.outbound_port)
        responses = [await client.request("GET", "http://reviews:9080/r") for _ in range(10)]
        assert [r.status for r in responses] == [200] * 5 + [429] * 5
        assert backend.seen == 5
        assert [r.headers["x-ratelimit-remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
        for r in responses:
            assert r.headers["x-ratelimit-limit"] == "5"
            assert 3500 <= int(r.headers["x-ratelimit-reset"]) <= 3600
        assert all(r.headers["x-ratelimit-remaining"] == "0" for r in responses[5:])
        # A path the match leaves out is not counted.
        assert (await client.request("GET", "http://reviews:9080/other")).status == 200
    finally:
        if client is not None:
            await client.close()
        await backend.stop()
        await front.stop()
