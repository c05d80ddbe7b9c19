"""The authorization stage in the inbound pipeline (proxy/inbound/local_app.py): built per push, swapped on a
policy change, absent without policies; over loopback: the 403, the access-log details, destination.port."""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.authz.helpers import policy
from tests.proxy.http_helpers import Upstream, keep_alive_echo, read_response
from proto.xds import ClusterConfig, Push, RateLimitRule, WorkloadSecurity
from proxy.access_log import AccessLog
from proxy.control.config_state import ConfigState
from proxy.core.access import AccessRecord
from proxy.core.errors import AccessDenied, RateLimited
from proxy.core.request import RequestHead
from proxy.http.head import Mode
from proxy.inbound.local_app import LocalAppRouter

pytestmark = pytest.mark.timeout(30)

DENY_ADMIN = policy("foo/deny-admin", "DENY", {"to": [{"operation": {"paths": ["/admin*"]}}]})
ALLOW_GET = policy("foo/allow-get", "ALLOW", {"to": [{"operation": {"methods": ["GET"]}}]})


def push(seq: int, *policies, ratelimits=()) -> Push:
    security = [WorkloadSecurity(workload="w1", version=seq, authorization=list(policies))]  # none: the default
    clusters = [ClusterConfig(host="app.foo.svc.cluster.local", version=seq, ratelimits=list(ratelimits))]
    return Push(epoch="e", seq=seq, version=seq, full=True, security=security, clusters=clusters)


def head(path: str = "/", method: str = "GET") -> RequestHead:
    return RequestHead(method, "app", 80, path, [(b"host", b"app")])


def test_no_policy_no_stage_and_policy_changes_swap_the_check_without_a_restart():
    state = ConfigState(workload_id="w1")
    router = LocalAppRouter("127.0.0.1", 8080, "app", state, "foo")
    state.apply(push(1))
    assert router.admit is None and router.authz is None
    state.apply(push(2, DENY_ADMIN))
    assert router.pick is router.admit  # the pipeline's entry is pick itself, no layer between
    with pytest.raises(AccessDenied):
        router.pick(head("/admin"))
    assert router.pick(head("/x")) is router.target
    compiled = router.authz
    state.apply(push(3, DENY_ADMIN))  # the same policies: not recompiled
    assert router.authz is compiled
    state.apply(push(4, ALLOW_GET))  # replaced: /admin allowed at once, POST denied
    assert router.pick(head("/admin")) is router.target
    with pytest.raises(AccessDenied):
        router.pick(head("/", "POST"))
    state.apply(push(5))  # deleted (the entry back to the default): its denials stop at once (istio/istio#53071)
    assert router.admit is None and router.pick(head("/", "POST")) is router.target


def test_authorization_runs_before_the_rate_limit():
    state = ConfigState(workload_id="w1")
    router = LocalAppRouter("127.0.0.1", 8080, "app", state, "foo")
    state.apply(push(1, DENY_ADMIN, ratelimits=[RateLimitRule(name="foo/rl", max_tokens=1)]))
    for _ in range(3):  # denied requests take no token
        with pytest.raises(AccessDenied):
            router.pick(head("/admin"))
    router.pick(head("/x"))
    with pytest.raises(RateLimited):
        router.pick(head("/x"))


async def test_a_denied_request_gets_403_rbac_access_denied_and_its_policy_in_the_access_log(start_proxy, connect,
                                                                                         tmp_path):
    records: list[AccessRecord] = []
    async with Upstream(keep_alive_echo) as app:
        state = ConfigState(workload_id="w1")
        router = LocalAppRouter("127.0.0.1", app.port, "app", state, "foo")
        allow_port = policy("foo/app-port", "ALLOW", {"to": [{"operation": {"ports": [str(app.port)]}}]})
        state.apply(push(1, DENY_ADMIN, allow_port))
        listener = await start_proxy(router, Mode.INBOUND, on_complete=records.append)
        assert listener.port != app.port
        reader, writer = await connect(listener.port)
        writer.write(b"GET /admin/x HTTP/1.1\r\nhost: app\r\n\r\n")
        denied = await read_response(reader)
        # destination.port is the app's port, not the listener's: the ALLOW on it admits this one
        writer.write(b"GET /ok HTTP/1.1\r\nhost: app\r\n\r\n")
        ok = await read_response(reader)
        writer.close()
    assert denied.status == 403 and denied.body == b"RBAC: access denied"
    assert ok.status == 200 and len(app.requests) == 1
    assert [(r.status, r.flag, r.details) for r in records] == [
        (403, "-", "rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-rule[0]]"), (200, "-", "")]
    log = AccessLog(str(tmp_path / "access.log"))
    log.for_listener("inbound")(records[0])
    log.for_listener("inbound")(records[1])
    log.close()
    first, second = (tmp_path / "access.log").read_text().splitlines()
    assert ('inbound "GET /admin/x HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-'
            'rule[0]] - 0 0 ') in first
    assert ' "GET /ok HTTP/1.1" 200 - via_upstream - 0 ' in second  # a response of the app's: Envoy's details
    assert " inbound|%d|| " % app.port in second


async def test_an_audited_request_passes_and_its_line_names_the_audit_policy(start_proxy, connect):
    records: list[AccessRecord] = []
    async with Upstream(keep_alive_echo) as app:
        state = ConfigState(workload_id="w1")
        router = LocalAppRouter("127.0.0.1", app.port, "app", state, "foo")
        state.apply(push(1, policy("foo/audit-get", "AUDIT", {"to": [{"operation": {"methods": ["GET"]}}]})))
        listener = await start_proxy(router, Mode.INBOUND, on_complete=records.append)
        reader, writer = await connect(listener.port)
        writer.write(b"GET /x HTTP/1.1\r\nhost: app\r\n\r\n")
        ok = await read_response(reader)
        writer.close()
    await asyncio.sleep(0)
    assert ok.status == 200
    assert records[0].details == "rbac_audit_matched_policy[ns[foo]-policy[audit-get]-rule[0]]"


def test_before_the_first_push_nothing_is_admitted_so_a_restart_without_pilot_does_not_fail_open():
    """A sidecar restarted while pilot was down served /admin past a DENY policy (200) until pilot answered:
    with no push yet it admits nothing (503), over HTTP and TCP, and the first push lifts that."""
    from proxy.inbound.local_app import NotConfigured
    state = ConfigState(workload_id="w1")
    router = LocalAppRouter("127.0.0.1", 8080, "app", state, "foo")
    assert not router.configured
    with pytest.raises(NotConfigured) as refused:
        router.pick(head("/admin"))
    assert refused.value.status == 503
    state.apply(push(1, DENY_ADMIN))
    assert router.configured and router.pick(head("/x")) is router.target
    with pytest.raises(AccessDenied):
        router.pick(head("/admin"))
    assert LocalAppRouter("127.0.0.1", 8080, "app").pick(head("/admin")).port == 8080  # no control plane: as before


def test_a_push_before_pilot_knows_the_registration_admits_nothing_and_a_lost_entry_stays_in_force():
    """A sidecar's first push can come before pilot has seen its registration (or while the registry is down):
    that push has no entry for it, which once meant "no policy" and admitted /admin past a DENY policy until
    the next push. Pilot sends every registered workload an entry, so none means "not known yet"; and once
    known, a removal (the lease lapsed while the registry was away) keeps the last policy in force."""
    from proxy.inbound.local_app import NotConfigured
    state = ConfigState(workload_id="w1")
    router = LocalAppRouter("127.0.0.1", 8080, "app", state, "foo")
    other = WorkloadSecurity(workload="w2", version=1)
    state.apply(Push(epoch="e", seq=1, version=1, full=True, security=[other],
                     clusters=[ClusterConfig(host="app.foo.svc.cluster.local", version=1)]))
    assert not router.configured
    with pytest.raises(NotConfigured):
        router.pick(head("/admin"))
    state.apply(Push(epoch="e", seq=2, version=2))  # a delta without it: still unknown
    with pytest.raises(NotConfigured):
        router.pick(head("/admin"))
    state.apply(push(3, DENY_ADMIN))
    assert router.configured and router.pick(head("/x")) is router.target
    state.apply(Push(epoch="e", seq=4, version=4, removed_security=["w1"]))
    with pytest.raises(AccessDenied):
        router.pick(head("/admin"))
    state.apply(Push(epoch="f", seq=1, version=5, full=True, security=[other]))  # a new pilot that lost it too
    with pytest.raises(AccessDenied):
        router.pick(head("/admin"))
    assert router.configured and state.security is not None and state.security.version == 3
