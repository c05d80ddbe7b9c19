"""Trailing whitespace (OWS) in header values, over loopback: llhttp keeps it (`Host: reviews ` parses as
b"reviews "), RFC 9110 5.5 says it is no part of the value, and Envoy strips it; the proxy's parsers strip it
(proxy/http/server.py on_header, proxy/http/response_head.py), so whatever evaluates a value sees it stripped."""

from __future__ import annotations

import asyncio

import pytest

from proto import xds
from proto.xds import ClusterConfig, Endpoint, HttpRule, Push, RouteConfig, RouteMatch, StringMatch, SubsetPolicy
from proto.xds import WeightedDestination, WorkloadSecurity
from proxy.control.config_state import ConfigState
from proxy.http.head import Mode
from proxy.inbound.local_app import LocalAppRouter
from proxy.outbound.router import MeshRouter
from tests.proxy.authz.helpers import policy
from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_request, read_response
from tests.proxy.jwt.issuers import claims, provider, sign
from tests.proxy.test_jwt_inbound import Inbound, soon

pytestmark = pytest.mark.timeout(30)

REVIEWS = "reviews.default.svc.cluster.local"


async def test_a_host_with_trailing_space_or_tab_routes_as_the_host(proxy_for):
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target})
        reader, writer = await proxy_for(router)
        for host in (b"reviews ", b"reviews\t", b"reviews:9080 \t "):
            writer.write(b"GET /x HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
            response = await read_response(reader)
            assert response.status == 200, (host, response.body)
    assert [(h.host, h.header(b"host")) for h in router.heads] == [
        ("reviews", b"reviews"), ("reviews", b"reviews"), ("reviews", b"reviews:9080")]
    assert len(up.requests) == 3


def _ep(port: int, version: str) -> Endpoint:
    return Endpoint(address="127.0.0.1", ports={9080: port}, labels={"version": version})


async def test_a_virtual_service_exact_header_match_takes_a_value_with_trailing_whitespace(proxy_for):
    async with Upstream(keep_alive_echo) as v1, Upstream(keep_alive_echo) as v2:
        cluster = ClusterConfig(host=REVIEWS, version=1, ports=[9080],
                                subsets=[SubsetPolicy(name="v1", labels={"version": "v1"}),
                                         SubsetPolicy(name="v2", labels={"version": "v2"})],
                                endpoints=[_ep(v1.port, "v1"), _ep(v2.port, "v2")])
        route = RouteConfig(host=REVIEWS, version=1, rules=[
            HttpRule(matches=[RouteMatch(headers={"end-user": StringMatch(exact="jason")})],
                     destinations=[WeightedDestination(host=REVIEWS, subset="v2")]),
            HttpRule(destinations=[WeightedDestination(host=REVIEWS, subset="v1")])])
        state = ConfigState()
        state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster], routes=[route]))
        reader, writer = await proxy_for(MeshRouter(state, namespace="default"))
        writer.write(b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nend-user: jason \t\r\n\r\n")
        assert (await read_response(reader)).status == 200
    assert (len(v1.requests), len(v2.requests)) == (0, 1)


async def test_an_authorization_policy_header_condition_matches_a_value_with_trailing_whitespace(start_proxy,
                                                                                                connect):
    async with Upstream(keep_alive_echo) as app:
        state = ConfigState(workload_id="w1")
        router = LocalAppRouter("127.0.0.1", app.port, "app", state, "foo")
        allow = policy("foo/allow-alice", "ALLOW",
                       {"when": [{"key": "request.headers[x-user]", "values": ["alice"]}]})
        state.apply(Push(epoch="e", seq=1, version=1, full=True,
                         security=[WorkloadSecurity(workload="w1", version=1, authorization=[allow])]))
        listener = await start_proxy(router, Mode.INBOUND)
        reader, writer = await connect(listener.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: app\r\nx-user: alice \r\n\r\n")
        allowed = await read_response(reader)
        writer.write(b"GET / HTTP/1.1\r\nhost: app\r\nx-user: bob\r\n\r\n")
        denied = await read_response(reader)
    assert (allowed.status, denied.status) == (200, 403)


async def test_a_bearer_token_followed_by_whitespace_verifies():
    side = Inbound()
    side.push(1, provider())
    token = sign(claims(exp=soon())).encode()
    head = side.send(b"GET /get HTTP/1.1\r\nHost: app:8000\r\nAuthorization: Bearer %s \t\r\nx-request-id: 1\r\n\r\n"
                     % token)
    assert head.startswith(b"GET /get HTTP/1.1\r\n"), b"".join(side.client.data)


async def test_expect_100_continue_with_trailing_whitespace_is_answered(proxy_for):
    async with Upstream(keep_alive_echo) as up:
        reader, writer = await proxy_for(StubRouter({"reviews": up.target}))
        writer.write(b"POST / HTTP/1.1\r\nHost: reviews\r\nContent-Length: 2\r\nExpect: 100-continue \r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ok")
        assert (await read_response(reader)).body == b"ok"


async def _spaced_reply(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        up.requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain \t\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


async def test_a_response_head_rebuilt_for_a_header_edit_carries_values_without_trailing_whitespace(proxy_for):
    async with Upstream(_spaced_reply) as up:
        cluster = ClusterConfig(host=REVIEWS, version=1, ports=[9080], endpoints=[_ep(up.port, "v1")])
        edit = xds.Headers(response=xds.HeaderOperations(set={"x-edited": "1"}))
        route = RouteConfig(host=REVIEWS, version=1, rules=[
            HttpRule(destinations=[WeightedDestination(host=REVIEWS)], headers=edit)])
        state = ConfigState()
        state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[cluster], routes=[route]))
        reader, writer = await proxy_for(MeshRouter(state, namespace="default"))
        writer.write(b"GET / HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        response = await read_response(reader)
    assert response.header(b"x-edited") == b"1"
    assert b"\r\ncontent-type: text/plain\r\n" in response.raw_head.lower()
