"""Header values the listener notes for authorization (core/request.py HeaderPicks, RequestHead.picked): the memo
key reads them instead of walking the headers again, and only when they are exactly what it asked for."""

from __future__ import annotations

import pytest

from tests.proxy.authz.helpers import policy, request
from tests.proxy.authz.test_inbound_stage import push
from tests.proxy.http_helpers import Upstream, keep_alive_echo, read_response
from proxy.control.config_state import ConfigState
from proxy.core.errors import AccessDenied
from proxy.core.request import HeaderPicks, PickedHead, RequestHead
from proxy.http.head import Mode
from proxy.http.listener_state import NOTED
from proxy.inbound.authz.engine import Authorization
from proxy.inbound.local_app import LocalAppRouter

pytestmark = pytest.mark.timeout(30)

# The bench's shape: rules on hosts and one header condition (the key reads Host and x-user-role)
ROLE = [policy("foo/deny-admin", "DENY", {"when": [{"key": "request.headers[X-User-Role]", "values": ["admin"]}]}),
        policy("foo/allow-app", "ALLOW", {"to": [{"operation": {"hosts": ["app", "app:*"]}}]})]


def _picked(head: RequestHead, by: frozenset[bytes] | None, values: dict[bytes, bytes] | None) -> PickedHead:
    """`head` as the listener makes it when it picks `by`, having noted `values`."""
    new = object.__new__(PickedHead)
    new.init(head.method, head.host, head.port, head.path, head.headers, head.client, head.downstream)
    new.picked, new.picked_by, new.authority = values, by, head.header(b"host")
    return new


def _allowed(check, head) -> bool:
    try:
        check(head)
    except AccessDenied:
        return False
    return True


async def test_the_listener_notes_the_header_a_rule_reads_and_each_request_is_decided_by_its_own(start_proxy,
                                                                                                 connect):
    async with Upstream(keep_alive_echo) as app:
        state = ConfigState(workload_id="w1")
        router = LocalAppRouter("127.0.0.1", app.port, "app", state, "foo")
        state.apply(push(1, *ROLE))
        seen = []
        check = router.pick
        router.pick = lambda head: (seen.append((head.picked_by, getattr(head, "picked", "-"))), check(head))[1]
        listener = await start_proxy(router, Mode.INBOUND)  # binds the listener's own names: then it picks
        assert router.picks.names == {b"x-user-role"} and router.authz.picks is router.picks.names
        reader, writer = await connect(listener.port)
        statuses = []
        # one connection, requests that differ only in the header the listener notes (memo hits in between)
        for extra in (b"", b"x-user-role: admin\r\n", b"", b"X-User-Role: admin\r\n", b"x-user-role: guest\r\n",
                      b"x-user-role: guest\r\nx-user-role: admin\r\n", b"x-user-role: admin \r\n", b"",
                      b"accept: a\r\naccept: b\r\nx-user-role: admin\r\n"):
            writer.write(b"GET / HTTP/1.1\r\nhost: app:80\r\n" + extra + b"\r\n")
            statuses.append((await read_response(reader)).status)
        writer.write(b"GET / HTTP/1.1\r\nhost: other\r\n\r\n")  # the Host the key reads with it
        statuses.append((await read_response(reader)).status)
        writer.close()
    # every value joined, as header_value reads it: `guest,admin` is not `admin` (Envoy's getAllOfHeaderAsString)
    assert statuses == [200, 403, 200, 403, 200, 200, 403, 200, 403, 403]
    assert all(by is router.picks.names for by, _ in seen)  # every head is a PickedHead
    assert [picked for _, picked in seen[:2]] == [None, {b"x-user-role": b"admin"}]
    assert seen[5][1] == {b"x-user-role": b"guest,admin"}


def test_a_head_noted_for_other_names_or_changed_by_a_stage_is_read_from_its_headers():
    authz = Authorization(ROLE)
    check = authz.http
    assert authz.picks == {b"x-user-role"}
    # the memo holds "allowed" for a head without the header: a stale or wrong reading of one with it would hit it
    assert _allowed(check, request("/", host="app"))
    admin = request("/", host="app", headers=[("x-user-role", "admin")])
    assert not _allowed(check, admin)
    # parsed before a push changed the names (another frozenset, even an equal one): its picked is not read
    stale = _picked(request("/", host="app", headers=[("x-user-role", "admin")]), frozenset({b"x-user-role"}), None)
    assert not _allowed(check, stale)
    # a stage (JWT) changed the headers after the listener noted them: the headers are read
    edited = _picked(request("/", host="app", headers=[("x-user-role", "admin")]), authz.picks, None)
    edited.edited = True
    assert not _allowed(check, edited)
    # noted as asked: the noted values decide (what the listener saw is what the rules read)
    noted = _picked(request("/", host="app", headers=[("x-user-role", "admin")]), authz.picks,
                    {b"x-user-role": b"admin"})
    assert not _allowed(check, noted)
    plain = _picked(request("/", host="app"), authz.picks, None)
    assert _allowed(check, plain)


def test_names_the_listener_notes_for_itself_are_never_picked():
    picks = HeaderPicks()
    picks.pick(frozenset({b"x-a"}))
    assert picks.names is None  # not bound to a listener yet
    picks.bind(NOTED)
    assert picks.names == {b"x-a"} and picks.noted == NOTED | {b"x-a"}
    picks.pick(frozenset({b"x-a", b"traceparent"}))  # one the listener keeps for tracing: none is picked
    assert picks.names is None and picks.noted is NOTED
    picks.pick(None)
    assert picks.names is None and picks.noted is NOTED


def _as_listener_picks(head: RequestHead, names: frozenset[bytes] | None) -> PickedHead:
    """`head` as the listener makes it when it picks `names`: each name's values joined with "," (None: none)."""
    found: dict[bytes, bytes] = {}
    for name, value in head.headers:
        if names is not None and name in names:
            found[name] = found[name] + b"," + value if name in found else value
    return _picked(head, names, found or None)


def test_picked_heads_get_the_decisions_fresh_rules_make_over_every_attribute():
    # test_memo.py's differential, on heads as the listener notes them: the memo fills from picked heads and from
    # walked ones (the same memo), and neither hands a request another's decision
    import itertools
    import random

    from tests.proxy.authz.test_memo import PATHS, POLICIES, PRINCIPALS, TENANTS, _head, _outcome

    memoised = Authorization(POLICIES)
    assert memoised.picks == {b"x-tenant"}
    combos = list(itertools.product(PRINCIPALS, ["10.0.0.1", "10.9.1.1"], ["10.0.0.2", "10.0.0.99"], [8080, 9090],
                                    ["", "bad.sni"], ["GET", "POST"], PATHS, ["app.foo", "evil.example:9090"],
                                    TENANTS))
    sample = random.Random(18).sample(combos, 1500)
    for n, args in enumerate(sample + sample[:400]):
        expected = _outcome(Authorization(POLICIES).http, _head(*args))
        head = _head(*args) if n % 3 == 0 else _as_listener_picks(_head(*args), memoised.picks)
        assert _outcome(memoised.http, head) == expected, args
