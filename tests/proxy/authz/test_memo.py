"""proxy/inbound/authz/memo.py: a memoised decision is always the decision the rules make for that request.

Differential: one Authorization's memoised check against the same rules evaluated afresh (a new
Authorization per request), over requests that differ in one attribute at a time, in an order that fills the
memo first. A key that left out any attribute a rule reads would hand one request another's decision."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.proxy.authz.helpers import SLEEP, caller, decide, jwt, policy, request
from proxy.core.errors import AccessDenied, BadRequest
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.inbound.authz.engine import Authorization
from proxy.inbound.authz.memo import KEY_MAX_CHARS, MEMO_LIMIT, Memo, decision_key

# Rules that between them read every attribute a memo key can hold.
POLICIES = [
    policy("foo/audit", "AUDIT", {"to": [{"operation": {"paths": ["/audit*"]}}]}),
    policy("foo/deny", "DENY",
           {"from": [{"source": {"ipBlocks": ["10.9.0.0/16"]}}]},
           {"to": [{"operation": {"hosts": ["evil.example"], "ports": ["9090"]}}]},
           {"when": [{"key": "connection.sni", "values": ["bad.sni"]}]},
           {"when": [{"key": "destination.ip", "values": ["10.0.0.99"]}]}),
    policy("foo/allow", "ALLOW",
           {"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*", "/audit/x"]}}]},
           {"from": [{"source": {"namespaces": ["bar"]}}], "to": [{"operation": {"methods": ["POST"]}}]},
           {"when": [{"key": "request.headers[x-tenant]", "values": ["blue"]}]},
           {"to": [{"operation": {"hosts": ["*.open.example"]}}]},
           {"from": [{"source": {"remoteIpBlocks": ["192.168.0.0/24"]}}]}),
]

PRINCIPALS = ["cluster.local/ns/foo/sa/sleep", "cluster.local/ns/bar/sa/x", "cluster.local/ns/baz/sa/y", None]
IPS = ["10.0.0.1", "10.9.1.1", "192.168.0.7"]
DEST_IPS = ["10.0.0.2", "10.0.0.99"]
PORTS = [8080, 9090]
SNIS = ["", "bad.sni"]
METHODS = ["GET", "POST", "PUT"]
PATHS = ["/api/x", "/audit/x", "/audit/y", "/other", "/api/%2e%2e/admin", "/API/x"]
HOSTS = ["app.foo", "evil.example", "a.open.example", "evil.example:9090"]
TENANTS = [None, "blue", "red", "blue,red"]


def _head(p: str | None, ip: str, dip: str, port: int, sni: str, method: str, path: str, host: str,
          tenant: str | None) -> RequestHead:
    headers = [("x-tenant", v) for v in (tenant.split(",") if tenant else [])]
    return request(path, method, host, headers, caller(p, ip, dip, port, sni))


def _outcome(check, head: RequestHead) -> tuple[str | None, str]:
    try:
        check(head)
    except AccessDenied as exc:
        return exc.policy, head.details
    return None, head.details


def test_the_memo_never_hands_a_request_another_requests_decision():
    memoised = Authorization(POLICIES).http
    assert memoised is not None
    combos = list(itertools.product(PRINCIPALS, IPS, DEST_IPS, PORTS, SNIS, METHODS, PATHS, HOSTS, TENANTS))
    rng = random.Random(15)
    sample = rng.sample(combos, 3000)
    outcomes = set()
    app = Target("127.0.0.1", 8080, "inbound|8080||")
    entry = memoised.then(app)  # the pipeline's entry when authorization is the only stage: the same memo
    for n, args in enumerate(sample + sample[:500]):  # the repeats are memo hits
        fresh = Authorization(POLICIES).http
        expected = _outcome(fresh, _head(*args))
        got = _outcome(memoised if n % 2 else entry, _head(*args))
        assert got == expected, args
        if expected[0] is None:
            assert entry(_head(*args)) is app
        outcomes.add(expected[0])
    assert {None, "none", "ns[foo]-policy[deny]-rule[0]", "ns[foo]-policy[deny]-rule[1]",
            "ns[foo]-policy[deny]-rule[2]", "ns[foo]-policy[deny]-rule[3]"} <= outcomes


def test_rules_reading_a_jwt_are_never_memoised():
    rules = [policy("foo/a", "ALLOW", {"when": [{"key": "request.auth.claims[group]", "values": ["admin"]}]})]
    check = Authorization(rules).http
    assert check is not None
    assert _outcome(check, request(auth=jwt(group="admin")))[0] is None
    assert _outcome(check, request(auth=jwt(group="guest")))[0] == "none"  # same request, another token
    assert _outcome(check, request(auth=jwt(group="admin")))[0] is None
    assert decision_key({"request.auth.principal", ":method"}) is None
    assert decision_key({"request.auth.claims[group]"}) is None


def test_a_new_push_decides_afresh():
    head = request("/api/x")
    assert decide([policy("foo/a", "ALLOW", {"to": [{"operation": {"paths": ["/api/*"]}}]})], head) is None
    assert decide([policy("foo/a", "ALLOW", {"to": [{"operation": {"paths": ["/v2/*"]}}]})], head) == "none"


@pytest.mark.parametrize("limit", [1, 3])
def test_the_memo_is_bounded(limit: int):
    memo = Memo(limit)
    for i in range(50):
        memo.put(("/p", i), ("", None))
        assert len(memo.decisions) <= limit
    assert memo.decisions == {("/p", 49): ("", None)} if limit == 1 else len(memo.decisions) == 2


def test_the_key_holds_each_attribute_a_rule_reads_and_nothing_else():
    key = decision_key({":method", "request.headers[X-Tenant]"})
    assert key is not None
    head = request("/p", "GET", headers=[("x-tenant", "a"), ("x-tenant", "b")])
    assert key(head) == ("GET", "a,b")
    assert key(request("/other", "GET", headers=[("x-tenant", "a"), ("x-tenant", "b")])) == key(head)


def test_a_key_with_long_strings_is_decided_every_time_and_never_kept():
    memo = Memo(8)
    memo.put(("GET", "/" + "a" * (KEY_MAX_CHARS - 4)), ("", None))  # at the bound: kept
    memo.put((("GET", "/"), "x" * (KEY_MAX_CHARS - 3)), ("", None))  # one over: not kept
    assert len(memo.decisions) == 1
    check = Authorization([policy("foo/a", "ALLOW", {"to": [{"operation": {"paths": ["/ok*"]}}]})]).http
    assert _outcome(check, request("/ok" + "a" * 60_000))[0] is None
    assert _outcome(check, request("/no" + "a" * 60_000))[0] == "none"


def test_a_path_is_read_whenever_a_policy_has_paths_even_if_no_path_leaf_was_compiled():
    # The ALLOW rule with `paths` is dropped (its port is unusable), so no leaf reads the path; the path is still
    # read for the %00 check (paths.readings): a memoised "allowed" must not answer a %00 path.
    rules = [policy("foo/allow", "ALLOW", {"to": [{"operation": {"ports": ["http"], "paths": ["/x"]}}]},
                    {"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]})]
    memoised = Authorization(rules).http
    assert memoised is not None
    ok = caller(None, "10.0.0.1", "10.0.0.2", 80, "")
    memoised(request("/ok", "GET", "a", [], ok))
    with pytest.raises(BadRequest):
        memoised(request("/a%00", "GET", "a", [], ok))


# The not-forms, a header name in capitals, and paths the two readings (paths.py) tell apart.
NOT_POLICIES = [
    policy("foo/audit", "AUDIT", {"to": [{"operation": {"notPaths": ["/api/*"]}}]}),
    policy("foo/deny", "DENY",
           {"to": [{"operation": {"paths": ["/admin*"]}}]},
           {"from": [{"source": {"notNamespaces": ["foo"]}}], "to": [{"operation": {"notMethods": ["GET"]}}]},
           {"when": [{"key": "request.headers[X-Tenant]", "notValues": ["blue", "red"]}]}),
    policy("foo/allow", "ALLOW",
           {"from": [{"source": {"notPrincipals": ["cluster.local/ns/bar/sa/x"]}}],
            "to": [{"operation": {"notHosts": ["evil.example*"], "notPaths": ["/private/*"]}}]}),
]
NOT_PATHS = ["/api/x", "/api/x?a=/admin", "/admin", "/Admin", "/api/..%2Fadmin", "/api/../admin", "/api;x=1/../admin",
             "//admin", "/private/x", "/private%2Fx", "/x/../private/y", "/ok?/private/"]
NOT_HOSTS = ["app.foo", "evil.example", "evil.example:8080", "EVIL.example"]


def test_the_memo_agrees_on_not_forms_header_case_and_path_readings():
    memoised = Authorization(NOT_POLICIES).http
    assert memoised is not None
    combos = list(itertools.product(PRINCIPALS, ["10.0.0.1"], ["10.0.0.2"], [8080], [""], METHODS, NOT_PATHS,
                                    NOT_HOSTS, TENANTS))
    rng = random.Random(16)
    sample = rng.sample(combos, 1500)
    outcomes = set()
    for args in sample + sample[:300]:
        expected = _outcome(Authorization(NOT_POLICIES).http, _head(*args))
        assert _outcome(memoised, _head(*args)) == expected, args
        outcomes.add(expected)
    assert len({o[0] for o in outcomes}) >= 4 and any(o[1].startswith("rbac_audit") for o in outcomes)


def test_a_key_of_exactly_key_max_chars_is_kept_and_one_more_is_not():
    assert (KEY_MAX_CHARS, MEMO_LIMIT) == (512, 1024)
    memo = Memo()
    memo.put("/" * KEY_MAX_CHARS, ("", None))
    assert "/" * KEY_MAX_CHARS in memo.decisions
    memo.put("/" * (KEY_MAX_CHARS + 1), ("", None))
    memo.put(("GET", "x" * (KEY_MAX_CHARS - 3), 8080, None), ("", None))  # 3 + 509 chars: kept
    memo.put(("GET", "x" * (KEY_MAX_CHARS - 2), 8080, None), ("", None))  # 3 + 510 chars: not kept
    assert len(memo.decisions) == 2


def test_the_memo_holds_memo_limit_keys_and_the_next_one_clears_it():
    memo = Memo()
    for i in range(MEMO_LIMIT):
        memo.put(f"/p{i}", ("", None))
    assert len(memo.decisions) == MEMO_LIMIT and "/p0" in memo.decisions
    memo.put(f"/p{MEMO_LIMIT}", ("", None))
    assert memo.decisions == {f"/p{MEMO_LIMIT}": ("", None)}


def test_a_memoised_decision_is_not_reused_for_a_request_that_differs_in_one_attribute():
    rules = [policy("foo/allow", "ALLOW",
                    {"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}],
                     "to": [{"operation": {"paths": ["/api/*"]}}],
                     "when": [{"key": "request.headers[x-tenant]", "values": ["blue"]}]})]
    check = Authorization(rules).http
    sleep = caller("cluster.local/ns/foo/sa/sleep", "10.0.0.1", "10.0.0.2", 80, "")
    other = caller("cluster.local/ns/foo/sa/other", "10.0.0.1", "10.0.0.2", 80, "")
    blue = [("x-tenant", "blue")]
    assert _outcome(check, request("/api/x", "GET", "a", blue, sleep))[0] is None
    assert _outcome(check, request("/api/x", "GET", "a", [("x-tenant", "red")], sleep))[0] == "none"
    assert _outcome(check, request("/api/x", "GET", "a", blue + [("x-tenant", "red")], sleep))[0] == "none"
    assert _outcome(check, request("/api/x", "GET", "a", blue, other))[0] == "none"
    assert _outcome(check, request("/api/..%2Fadmin", "GET", "a", blue, sleep))[0] == "none"
    assert _outcome(check, request("/api/x", "GET", "a", blue, sleep))[0] is None


def test_a_key_reading_several_headers_holds_what_header_value_reads_of_each():
    # One walk over the headers for all the names a key reads (memo._headers_key) against header_value per name
    from proxy.core.request import header_value

    rng = random.Random(15)
    names = ["host", "x-tenant", "x-user-role", "x-other"]
    values = ["a", "b ", "a\t", " c", "", "é", "a,b"]
    for reads in ({":authority", "request.headers[x-user-role]"},
                  {":method", "request.headers[X-Tenant]", "request.headers[x-user-role]"},
                  {":authority", "request.headers[x-tenant]", "request.headers[x-user-role]", "path"}):
        key = decision_key(reads)
        assert key is not None
        wanted = sorted(({b"host"} if ":authority" in reads else set())
                        | {r[16:-1].lower().encode() for r in reads if r.startswith("request.headers[")})
        plain = sorted({"host" if r == ":authority" else "method" if r == ":method" else r
                        for r in reads if not r.startswith("request.headers[")})
        for _ in range(300):
            head = request(rng.choice(["/", "/p"]), rng.choice(["GET", "POST"]),
                           headers=[(rng.choice(names), rng.choice(values)) for _ in range(rng.randrange(5))])
            if rng.random() < 0.3:
                head.headers = [h for h in head.headers if h[0] != b"host"]  # no Host at all
            read = [header_value(head, n) for n in wanted]
            joined = (*(getattr(head, a) for a in plain), *[v if v is None else v.encode("latin-1") for v in read])
            if len({h[0] for h in head.headers}) < len(head.headers):  # a name twice: the first values too
                joined += (tuple(head.header(n) for n in wanted),)
            assert key(head) == joined


# Rules on hosts, with and without a header condition: the key holds what HostMatcher reads (the first Host
# header, else head.host), not only every Host value joined (memo._authority_key, memo._headers_key).
HOST_POLICIES = [
    policy("foo/deny", "DENY", {"to": [{"operation": {"hosts": ["evil.example", "*.bad"], "methods": ["POST"]}}]}),
    policy("foo/allow", "ALLOW",
           {"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}],
            "to": [{"operation": {"hosts": ["app.foo", "app.foo:*"], "paths": ["/api/*"]}}]},
           {"to": [{"operation": {"notHosts": ["evil.example*", "*.bad", "app.foo*"]}}]}),
]
HOST_HEADERS = [[], ["app.foo"], ["app.foo:8080"], ["evil.example"], ["Evil.Example"], ["x.bad"], ["other"],
                ["app.foo", "evil.example"], ["evil.example", "app.foo"], ["app.foo,evil.example"]]


def _host_head(p: str | None, method: str, path: str, head_host: str, host_headers: list[str]) -> RequestHead:
    head = request(path, method, "x", [], caller(p))
    head.host = head_host  # as the listener derives it (an absolute-form target's authority, say)
    head.headers = [(b"host", h.encode()) for h in host_headers] + [(b"accept", b"*/*"), (b"x-tenant", b"red")]
    return head


TENANT_RULE = policy("foo/tenant", "ALLOW", {"when": [{"key": "request.headers[x-tenant]", "values": ["blue"]}]})


@pytest.mark.parametrize("policies", [HOST_POLICIES, HOST_POLICIES[1:], HOST_POLICIES + [TENANT_RULE]])
def test_the_memo_agrees_with_fresh_rules_on_hosts_as_sent_and_as_derived(policies):
    # Heads with no Host header (head.host is read), two of them (the first is read: the listener refuses the
    # second, these are built by hand), a head.host that is not the header's, and a header that is another's host
    assert decision_key({":authority", ":method"}) is not None
    memoised = Authorization(policies).http
    assert memoised is not None
    combos = list(itertools.product(PRINCIPALS, METHODS, ["/api/x", "/other"], ["app.foo", "evil.example", "other"],
                                    HOST_HEADERS))
    random.Random(17).shuffle(combos)
    outcomes = set()
    for args in combos + combos[:300]:
        expected = _outcome(Authorization(policies).http, _host_head(*args))
        assert _outcome(memoised, _host_head(*args)) == expected, args
        outcomes.add(expected[0])
    assert len(outcomes) >= 2


def test_the_generated_check_holds_only_attribute_paths_and_keys_each_shape_flat():
    # keyed.py writes the key's attribute reads into source text: anything but a dotted identifier is refused;
    # header names are constants passed in, never source (a header condition on `x'); import os; '` is a name)
    from proxy.inbound.authz.keyed import KeySpec, key_function

    with pytest.raises(ValueError):
        KeySpec(("method; import os",), (), False)
    odd = b"x'); import os; ('"
    key = key_function(KeySpec(("method",), (b"host", odd), False))
    head = request("/p", "POST", "h:1", [(odd.decode(), "v")])
    assert key(head) == ("POST", b"h:1", b"v")
    assert key_function(KeySpec((), (), False))(head) == ()
    assert key_function(KeySpec(("downstream.principal", "path"), (), True))(head) == (SLEEP, "/p", b"h:1")
    head.headers = []
    assert key_function(KeySpec(("path",), (), True))(head) == ("/p", "h")  # no Host header: head.host
