"""Request matching and load balancing through real sidecars, configured with Istio YAML through the
real control plane: consistent hashing on a header, queryParams / authority matches, endpoint weights."""

from __future__ import annotations

import collections
import itertools

import pytest

from tests.integration.conftest import Bookinfo, ControlPlane, apply_ok, destination_rule, eventually, fqdn
from tests.integration.httpclient import Backend, Client

pytestmark = pytest.mark.asyncio
_weighted = itertools.count(1)


async def versions_for(bookinfo: Bookinfo, url: str, n: int, headers: dict[str, str] | None = None) -> set[str]:
    seen = set()
    for _ in range(n):
        response = await bookinfo.client.request("GET", url, headers)
        seen.add(response.text if response.status == 200 else str(response.status))
    return seen


async def test_consistent_hash_on_a_header_keeps_each_user_on_one_endpoint(bookinfo: Bookinfo) -> None:
    reply = await bookinfo.apply(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {bookinfo.ns}}}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {{httpHeaderName: x-user}}
""")
    await bookinfo.converged(reply["revision"])
    url = "http://reviews:9080/reviews"
    chosen = {}
    for user in ("alice", "bob", "carol", "dave"):
        seen = await versions_for(bookinfo, url, 8, {"x-user": user})
        assert len(seen) == 1 and seen <= {"v1", "v2", "v3"}, (user, seen)
        chosen[user] = seen.pop()
    spread = set()
    for i in range(40):
        spread |= await versions_for(bookinfo, url, 1, {"x-user": f"user-{i}"})
    assert spread == {"v1", "v2", "v3"}, spread  # users are spread, not pinned to one endpoint
    for user, version in chosen.items():  # still where they were
        assert await versions_for(bookinfo, url, 3, {"x-user": user}) == {version}


async def test_query_params_and_authority_matches_route_to_their_subsets(bookinfo: Bookinfo) -> None:
    await bookinfo.apply(destination_rule(bookinfo.ns))
    reply = await bookinfo.apply(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {bookinfo.ns}}}
spec:
  hosts: [reviews]
  http:
  - match:
    - queryParams: {{version: {{exact: "2"}}}}
    route:
    - destination: {{host: reviews, subset: v2}}
  - match:
    - authority: {{prefix: "reviews.{bookinfo.ns}"}}
    route:
    - destination: {{host: reviews, subset: v3}}
  - route:
    - destination: {{host: reviews, subset: v1}}
""")
    await bookinfo.converged(reply["revision"])
    assert await versions_for(bookinfo, "http://reviews:9080/reviews?version=2", 10) == {"v2"}
    assert await versions_for(bookinfo, "http://reviews:9080/reviews?a=b&version=2&c", 5) == {"v2"}
    assert await versions_for(bookinfo, "http://reviews:9080/reviews?version=22", 10) == {"v1"}
    assert await versions_for(bookinfo, f"http://reviews.{bookinfo.ns}:9080/reviews", 10) == {"v3"}
    assert await versions_for(bookinfo, "http://reviews:9080/reviews", 10) == {"v1"}


RATINGS_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: {ns}}}
spec:
  hosts: [ratings.{ns}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http}}]
"""
WEIGHTED_ENDPOINTS = {  # the ratings entry's endpoints, weighted 1 (light) and 3 (heavy), two ways
    "workload entries": RATINGS_ENTRY + """  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: light, namespace: {ns}}}
spec: {{address: 127.0.0.1, ports: {{http: {light}}}, labels: {{app: ratings}}, weight: 1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: heavy, namespace: {ns}}}
spec: {{address: 127.0.0.1, ports: {{http: {heavy}}}, labels: {{app: ratings}}, weight: 3}}
""",
    "service entry endpoints": RATINGS_ENTRY + """  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {light}}}, weight: 1}}
  - {{address: 127.0.0.1, ports: {{http: {heavy}}}, weight: 3}}
""",
}


@pytest.mark.parametrize("source", WEIGHTED_ENDPOINTS)
async def test_endpoint_weights_1_and_3_split_requests_about_25_75(mesh: ControlPlane, source: str) -> None:
    ns = f"w{next(_weighted)}"
    light, heavy = await Backend("light").start(), await Backend("heavy").start()
    client = mesh.proxy("client", light.port, 9080, ns, "app=client")
    web = Client("127.0.0.1", client.outbound_port)
    try:
        await client.ready()
        await apply_ok(mesh, WEIGHTED_ENDPOINTS[source].format(ns=ns, light=light.port, heavy=heavy.port))
        host = fqdn("ratings", ns)
        await eventually(lambda: client.endpoints(host) == 2)
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(400):  # the default LEAST_REQUEST; one at a time, so it is weighted round robin
            response = await web.request("GET", f"http://{host}:9080/")
            seen[response.text if response.status == 200 else str(response.status)] += 1
        assert set(seen) == {"light", "heavy"}, seen
        assert 0.65 <= seen["heavy"] / 400 <= 0.85, seen  # 75% expected; unweighted would give 50%
    finally:
        await web.close()
        await light.stop()
        await heavy.stop()
