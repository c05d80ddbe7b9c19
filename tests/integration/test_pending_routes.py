"""Make before break is bounded (proxy/control/config_state.py, services/pilot/compile/routes.py
mark_undefined): through real sidecars and the real control plane, a VirtualService with a rule to a
subset no DestinationRule defines applies at once, its other rules route, requests (and TCP
connections) on that rule get 503 with Envoy's flag NC, `apply` warns, and a later DestinationRule
makes the rule route."""

from __future__ import annotations

import asyncio

import pytest

from isthmus.launch import free_port
from tests.integration.conftest import Bookinfo, ControlPlane, apply_ok, eventually, reviews_doc

pytestmark = pytest.mark.asyncio


def rule(ns: str, subsets: str) -> str:
    return reviews_doc("DestinationRule", ns, f"  host: reviews\n  subsets: {subsets}\n")


def two_rules(ns: str, default: str = "v1") -> str:
    """/v3 to subset v3, /ghost to a host with no service at all, the rest to `default`; TCP port 9000 to v7."""
    return reviews_doc("VirtualService", ns, f"""\
  hosts: [reviews]
  http:
  - match: [{{uri: {{prefix: /v3}}}}]
    route: [{{destination: {{host: reviews, subset: v3}}}}]
  - match: [{{uri: {{prefix: /ghost}}}}]
    route: [{{destination: {{host: ghost}}}}]
  - route: [{{destination: {{host: reviews, subset: {default}}}}}]
  tcp:
  - match: [{{port: 9000}}]
    route: [{{destination: {{host: reviews, subset: v7}}}}]
""")


class App(Bookinfo):
    """reviews v1 and v2 and a frontend whose sidecar writes an access log and relays TCP port 9000 of
    reviews; `apply` waits until the frontend's sidecar holds what it applied."""

    def __init__(self, mesh: ControlPlane) -> None:
        self.tcp_port = free_port()
        super().__init__(mesh, ("v1", "v2"), "pend")
        self.access_log = mesh.state_dir / "logs" / f"access-{self.ns}.log"
        self.frontend_args = ("--access-log", str(self.access_log), "--tcp", f"reviews:9000={self.tcp_port}")

    async def apply(self, text: str) -> dict:
        return await apply_ok(self.mesh, text, self.frontend)

    async def get(self, path: str) -> tuple[int, str]:
        response = await self.client.request("GET", f"http://reviews:9080{path}")
        return response.status, response.text

    def log_lines(self, needle: str) -> list[str]:
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [line for line in lines if needle in line]


@pytest.fixture
async def app(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    application = await App(mesh).start()
    yield application
    await application.stop()


async def test_a_rule_to_an_undefined_subset_gets_503_nc_while_the_others_route_until_a_rule_defines_it(
        app: App) -> None:
    await app.apply(rule(app.ns, "[{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]"))
    reply = await app.apply(two_rules(app.ns))
    warned = {w["path"]: w["message"] for w in reply["warnings"]}
    assert set(warned) == {"spec.http[0].route[0].destination.subset", "spec.tcp[0].route[0].destination.subset"}
    assert "subset 'v3' of host reviews" in warned["spec.http[0].route[0].destination.subset"]

    dump = app.frontend.config_dump()
    assert dump["pending"] == []  # applied at once: pilot said v3 and v7 are not defined
    assert {r["host"]: r["version"] for r in dump["routes"]}[f"reviews.{app.ns}.svc.cluster.local"] == \
        reply["revision"]
    assert await app.get("/") == (200, "v1")
    status, body = await app.get("/v3/x")
    assert status == 503 and "subset 'v3'" in body, body
    # a host with no service: pilot gives it an empty cluster, so the rule answers 503 UH at once
    assert (await app.get("/ghost"))[0] == 503
    await eventually(lambda: app.log_lines('/v3/x HTTP/1.1"'))
    assert " 503 NC " in app.log_lines('/v3/x HTTP/1.1"')[0], app.log_lines('/v3/x HTTP/1.1"')
    assert " 503 UH " in (await eventually(lambda: app.log_lines('/ghost HTTP/1.1"')))[0]

    # the tcp rule to v7: the connection is closed with nothing relayed, flag NC
    reader, writer = await asyncio.open_connection("127.0.0.1", app.tcp_port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert " NC " in (await eventually(lambda: app.log_lines('"reviews:9000"')))[0]

    # a later edit of the same VirtualService takes effect too
    await app.apply(two_rules(app.ns, default="v2"))
    assert await app.get("/") == (200, "v2")

    # the DestinationRule that defines v3 arrives: the rule routes
    reply = await app.apply(rule(app.ns, "[{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, "
                                         "{name: v3, labels: {version: v1}}]"))
    assert [w["path"] for w in reply["warnings"]] == ["spec.subsets"]  # v7 of the stored route is still undefined
    assert await app.get("/v3/x") == (200, "v1")
    assert app.frontend.config_dump()["pending"] == []
