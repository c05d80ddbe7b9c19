"""Traffic through real sidecars, configured through the real control plane (nats + etcd + registry
+ pilot), with Istio-format YAML."""

from __future__ import annotations

import asyncio
import collections

import pytest

from tests.integration.conftest import Bookinfo, apply, destination_rule, reviews_doc, route_to
from tests.integration.httpclient import Client

pytestmark = pytest.mark.asyncio


def split(ns: str, w1: int, w2: int, w3: int) -> str:
    return reviews_doc("VirtualService", ns, f"""\
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {w1}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {w2}}}
    - {{destination: {{host: reviews, subset: v3}}, weight: {w3}}}
""")


async def test_weighted_split_80_10_10_lands_within_three_points(bookinfo: Bookinfo) -> None:
    await bookinfo.apply(destination_rule(bookinfo.ns))
    reply = await bookinfo.apply(split(bookinfo.ns, 80, 10, 10))
    await bookinfo.converged(reply["revision"])
    seen = await bookinfo.count(2000)
    assert sum(seen.values()) == 2000 and set(seen) <= {"v1", "v2", "v3"}, seen
    for version, expected in (("v1", 80), ("v2", 10), ("v3", 10)):
        assert abs(seen[version] / 20 - expected) <= 3, seen


async def test_without_a_virtual_service_traffic_spreads_over_all_endpoints(bookinfo: Bookinfo) -> None:
    seen = await bookinfo.count(300)
    assert set(seen) == {"v1", "v2", "v3"}, seen
    assert min(seen.values()) >= 60, seen  # round robin: ~100 each


async def test_header_match_routes_jason_to_v2_and_everyone_else_to_v1(bookinfo: Bookinfo) -> None:
    await bookinfo.apply(destination_rule(bookinfo.ns))
    reply = await bookinfo.apply(f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews, namespace: {bookinfo.ns}}}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
    route:
    - destination: {{host: reviews, subset: v2}}
  - route:
    - destination: {{host: reviews, subset: v1}}
""")
    await bookinfo.converged(reply["revision"])
    assert await bookinfo.count(50, {"end-user": "jason"}) == {"v2": 50}
    assert await bookinfo.count(50, {"end-user": "mallory"}) == {"v1": 50}
    assert await bookinfo.count(50) == {"v1": 50}


async def test_a_virtual_service_change_takes_effect_without_restarting_proxies(bookinfo: Bookinfo) -> None:
    await bookinfo.apply(destination_rule(bookinfo.ns))
    first = await bookinfo.apply(split(bookinfo.ns, 100, 0, 0))
    await bookinfo.converged(first["revision"])
    assert await bookinfo.count(30) == {"v1": 30}
    pid = bookinfo.frontend.process.pid
    second = await bookinfo.apply(split(bookinfo.ns, 0, 0, 100))
    await bookinfo.converged(second["revision"])
    assert await bookinfo.count(30) == {"v3": 30}
    assert bookinfo.frontend.process.pid == pid and bookinfo.frontend.process.is_running


async def test_host_header_to_the_outbound_port_routes_like_an_explicit_proxy(bookinfo: Bookinfo) -> None:
    response = await bookinfo.client.request("GET", "/reviews", {"Host": "reviews:9080"})
    assert response.status == 200 and response.text in {"v1", "v2", "v3"}
    backend = bookinfo.backends[response.text]
    method, path, headers = backend.requests[-1]
    assert (method, path) == ("GET", "/reviews")
    assert headers.get("x-request-id")


async def test_unknown_host_passes_through_and_a_service_with_no_healthy_endpoint_is_503(bookinfo: Bookinfo) -> None:
    # outside the mesh (ALLOW_ANY): sent where the client asked; a name nothing resolves is 503 (flag DF)
    response = await bookinfo.client.request("GET", "http://nosuchservice.invalid:9080/")
    assert response.status == 503
    assert "dns resolution failed for nosuchservice.invalid" in response.text
    # a subset that selects nothing: the cluster exists but has no endpoint for it
    await bookinfo.apply(destination_rule(bookinfo.ns, ("v9",)))
    reply = await bookinfo.apply(route_to(bookinfo.ns, "v9"))
    await bookinfo.converged(reply["revision"])
    response = await bookinfo.client.request("GET", "http://reviews:9080/")
    assert response.status == 503
    assert "v9" in response.text


async def test_killing_a_backend_sidecar_removes_its_endpoint_within_the_lease_ttl(bookinfo: Bookinfo) -> None:
    from tests.integration.conftest import LEASE_TTL

    victim = bookinfo.sidecars["v3"].process
    victim.popen.kill()  # type: ignore[union-attr]  # SIGKILL: no deregistration, only the lease ends it
    killed = asyncio.get_running_loop().time()
    await bookinfo.wait_endpoints(2, timeout=LEASE_TTL * 4 + 5)
    elapsed = asyncio.get_running_loop().time() - killed
    assert elapsed <= LEASE_TTL * 3 + 2, elapsed  # lease TTL, etcd's expiry sweep, the watch and push; never: broken
    seen = await bookinfo.count(100)
    assert set(seen) == {"v1", "v2"}, seen


async def test_invalid_document_is_rejected_with_its_path_and_the_previous_config_stays(bookinfo: Bookinfo) -> None:
    await bookinfo.apply(destination_rule(bookinfo.ns))
    good = await bookinfo.apply(split(bookinfo.ns, 100, 0, 0))
    await bookinfo.converged(good["revision"])
    bad = await apply(bookinfo.mesh, split(bookinfo.ns, 0, 0, 100).replace("weight: 100", 'weight: "all"'))
    assert not bad["ok"]
    assert bad["errors"][0]["path"] == "spec.http[0].route[2].weight", bad
    await asyncio.sleep(0.3)  # a push, had there been one, would land by now
    assert bookinfo.route_version() == good["revision"]
    assert await bookinfo.count(30) == {"v1": 30}


async def test_changing_subsets_under_load_loses_no_request(bookinfo: Bookinfo) -> None:
    """Make before break (istio/istio#12252): a DestinationRule and the VirtualService that moves to its new
    subset, applied together, travel in one push (clusters applied first), and a rollout in Istio's order
    (add the subset, move the route, drop the old subset) never costs a request either. A route to a subset
    no DestinationRule defines is not held: it gets 503 NC (tests/integration/test_pending_routes.py)."""
    await bookinfo.apply(destination_rule(bookinfo.ns, ("v1",)))
    first = await bookinfo.apply(route_to(bookinfo.ns, "v1"))
    await bookinfo.converged(first["revision"])
    statuses: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()

    async def load() -> None:
        client = Client("127.0.0.1", bookinfo.frontend.outbound_port)
        while not stop.is_set():
            response = await client.request("GET", "http://reviews:9080/")
            statuses[response.text if response.status == 200 else str(response.status)] += 1
        await client.close()

    loaders = [asyncio.create_task(load()) for _ in range(4)]
    previous = "v1"
    for version in ("v2", "v3", "v1"):
        # one submission: the subsets replaced wholesale (dropping the one the live route uses) and the route
        await bookinfo.apply(destination_rule(bookinfo.ns, (version,)) + "---\n" + route_to(bookinfo.ns, version))
        await asyncio.sleep(0.3)
        # Istio's order, one apply at a time
        await bookinfo.apply(destination_rule(bookinfo.ns, (version, previous)))
        await asyncio.sleep(0.2)
        await bookinfo.apply(route_to(bookinfo.ns, previous))
        await asyncio.sleep(0.2)
        await bookinfo.apply(destination_rule(bookinfo.ns, (previous,)))
        await asyncio.sleep(0.2)
        previous = version
    stop.set()
    await asyncio.gather(*loaders)
    assert set(statuses) <= {"v1", "v2", "v3"}, statuses
    assert {"v2", "v3"} <= set(statuses), statuses
