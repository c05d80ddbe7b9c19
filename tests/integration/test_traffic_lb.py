"""Request matching and load balancing through real sidecars, configured with Istio YAML through the
real control plane: consistent hashing on a header, and queryParams / authority matches."""

from __future__ import annotations

import pytest

from tests.integration.conftest import ControlPlane
from tests.integration.test_mesh_routing import Bookinfo, destination_rule

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def bookinfo(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    app = await Bookinfo(mesh).start()
    yield app
    await app.stop()


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
