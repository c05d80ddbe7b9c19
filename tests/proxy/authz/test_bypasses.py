"""Requests an attacker shapes to slip past an AuthorizationPolicy on a real inbound listener: each must be
decided as the app will read it, and a denied one must never reach the app (its recorded requests)."""

from __future__ import annotations

import pytest

from proto.xds import Push, WorkloadSecurity
from proxy.control.config_state import ConfigState
from proxy.http.head import Mode
from proxy.inbound.local_app import LocalAppRouter
from tests.proxy.authz.helpers import policy
from tests.proxy.http_helpers import Upstream, keep_alive_echo, read_response

pytestmark = pytest.mark.timeout(30)

DENY_EVIL = policy("foo/deny-evil", "DENY", {"when": [{"key": "request.headers[x-evil]", "values": ["yes"]}]})
DENY_ADMIN = policy("foo/deny-admin", "DENY", {"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]})


def router_for(port: int, *policies) -> LocalAppRouter:
    state = ConfigState(workload_id="w1")
    router = LocalAppRouter("127.0.0.1", port, "app", state, "foo")
    state.apply(Push(epoch="e", seq=1, version=1, full=True,
                     security=[WorkloadSecurity(workload="w1", version=1, authorization=list(policies))]))
    return router


@pytest.mark.parametrize("value", [b"yes ", b"yes\t", b"yes \t ", b" yes  "])
async def test_a_header_value_with_trailing_whitespace_is_the_value_a_policy_matches(start_proxy, connect, value):
    # llhttp keeps trailing whitespace; the app (and Envoy) drop it: `X-Evil: yes ` is `yes` to both
    async with Upstream(keep_alive_echo) as app:
        listener = await start_proxy(router_for(app.port, DENY_EVIL), Mode.INBOUND)
        reader, writer = await connect(listener.port)
        writer.write(b"GET /x HTTP/1.1\r\nhost: app\r\nx-evil: " + value + b"\r\n\r\n")
        denied = await read_response(reader)
        writer.write(b"GET /x HTTP/1.1\r\nhost: app\r\nx-evil: yesno \r\n\r\n")
        other = await read_response(reader)
        writer.close()
    assert (denied.status, other.status) == (403, 200)
    assert [r.header(b"x-evil") for r in app.requests] == [b"yesno"]


async def test_a_denied_request_pipelined_after_an_allowed_one_never_reaches_the_app(start_proxy, connect):
    async with Upstream(keep_alive_echo) as app:
        listener = await start_proxy(router_for(app.port, DENY_ADMIN), Mode.INBOUND)
        reader, writer = await connect(listener.port)
        writer.write(b"GET /ok HTTP/1.1\r\nhost: app\r\n\r\n"
                     b"GET /admin HTTP/1.1\r\nhost: app\r\n\r\n"
                     b"GET //admin/x HTTP/1.0\r\nhost: app\r\n\r\n")
        answers = [await read_response(reader) for _ in range(3)]
        writer.close()
    assert [a.status for a in answers] == [200, 403, 403]
    assert [r.line.split()[1] for r in app.requests] == [b"/ok"]


def test_a_namespace_glob_matches_as_istios_regex_in_linear_time():
    import itertools
    import re
    import time

    from proxy.inbound.authz.leaves import namespace_glob

    values = ["*", "foo*", "*foo", "f*o", "*-prod-*", "a*b*c", "ns/x*", "*/sa/*", "a**b", "/*"]
    names = ["foo", "xfoo", "foox", "fo", "f-o", "a-prod-b", "-prod-", "abc", "acb", "a/b/c", "ab", "", "ns/xy"]
    for value, ns, sa in itertools.product(values, names, ["sleep", "a/b", "foo"]):
        principal = f"cluster.local/ns/{ns}/sa/{sa}"
        regex = re.compile(".*/ns/" + ".*".join(re.escape(p) for p in value.split("*")) + "/.*")  # istio's
        assert namespace_glob(value)(principal) == (regex.fullmatch(principal) is not None), (value, principal)
    glob = namespace_glob("a*a*a*a*a*a*a*a*a*b")
    started = time.monotonic()
    for _ in range(100):
        assert not glob(f"cluster.local/ns/{'a' * 60}/sa/{'a' * 60}")
    assert time.monotonic() - started < 1.0  # backtracking: 0.2 s for ONE principal of 30 letters


@pytest.mark.parametrize("target", [b"/public/#/../admin", b"/public#x", b"http://app/public/#/../admin"])
async def test_a_fragment_in_the_request_target_is_refused_before_any_policy(start_proxy, connect, target):
    # an ALLOW on /public/* read `/public/#/../admin` as /public/ and forwarded it: an app that takes `#` as a
    # path character (Go's ParseRequestURI does) normalizes it to /admin. Envoy answers 400 (1.17.4 on)
    allow_public = policy("foo/allow-public", "ALLOW", {"to": [{"operation": {"paths": ["/public/*", "/public"]}}]})
    async with Upstream(keep_alive_echo) as app:
        listener = await start_proxy(router_for(app.port, allow_public), Mode.INBOUND)
        reader, writer = await connect(listener.port)
        writer.write(b"GET " + target + b" HTTP/1.1\r\nhost: app\r\n\r\n")
        refused = await read_response(reader)
        writer.close()
    assert refused.status == 400 and app.requests == []
