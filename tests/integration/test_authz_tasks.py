"""Istio's authorization tasks with their YAML unchanged, on real sidecars (mTLS identities from the ca), the
real bus and etcd: "HTTP traffic" (allow-nothing, then GET for one service account's principal), "TCP
traffic" (allow on ports, the HTTP-only field, deny) and "Explicit deny"; each denial leaves an access-log
line naming the policy. The YAML is taken from istio.io's task pages (content/en/docs/tasks/security/
authorization/authz-{http,tcp,deny}); what Istio's pages show with `kubectl exec ... curl`/`nc` is sent
here from the caller's sidecar."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from tests.integration.authz_mesh import AuthzMesh, cli, denied_by_no_allow, denied_line
from tests.integration.conftest import ControlPlane, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(plane: ControlPlane):  # type: ignore[no-untyped-def]
    mesh = await AuthzMesh(plane, tcp=True).start()
    yield mesh
    await mesh.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def authz(world: AuthzMesh):  # type: ignore[no-untyped-def]
    """The module's workloads; what a test applied is deleted (and pushed) when it ends."""
    yield world
    await world.clean()


# --- "HTTP traffic" (istio.io/latest/docs/tasks/security/authorization/authz-http/) ------------------
ALLOW_NOTHING = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: default
spec:
  {}
"""

PRODUCTPAGE_VIEWER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "productpage-viewer"
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
"""

DETAILS_VIEWER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "details-viewer"
  namespace: default
spec:
  selector:
    matchLabels:
      app: details
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]
    to:
    - operation:
        methods: ["GET"]
"""

PRODUCTPAGE = "http://productpage.default:9080/productpage"
DETAILS = "http://details.default:9080/details/0"


async def test_http_task_allow_nothing_then_get_for_one_service_accounts_principal(authz: AuthzMesh) -> None:
    pp, details, sleep = authz.productpage, authz.details, authz.sleep
    assert await authz.status(pp, DETAILS) == 200  # no policy: everything is allowed
    assert await authz.status(sleep, PRODUCTPAGE) == 200

    # allow-nothing (`spec: {}`) in default, applied as a user does (`isthmus apply -f -`): every request to
    # its workloads is denied, from anyone
    code, out, err = await asyncio.to_thread(cli, authz.mesh, "apply", "-f", "-", stdin=ALLOW_NOTHING)
    assert code == 0 and "authorizationpolicy.security.istio.io/allow-nothing created" in out, (out, err)
    authz.applied[("AuthorizationPolicy", "default", "allow-nothing")] = [pp, details]
    for workload in (pp, details):
        await eventually(lambda: workload.authorization() == ["default/allow-nothing"])
    code, out, _ = await asyncio.to_thread(cli, authz.mesh, "get", "ap", "-n", "default")
    assert code == 0 and ["allow-nothing", "default", "ALLOW"] in [line.split()[:3] for line in out.splitlines()], out
    assert authz.httpbin.authorization() == []  # foo's workloads are not concerned
    before = len(details.lines())
    response = await authz.call(pp, DETAILS)
    assert (response.status, response.text) == (403, "RBAC: access denied")  # as Envoy: no newline
    assert await authz.status(sleep, PRODUCTPAGE) == 403
    assert await authz.status(None, DETAILS, target=details) == 403
    await denied_by_no_allow(details, after=before)
    seen = len(details.app.requests)

    # productpage-viewer: GET on productpage from anyone; other methods and the other workloads still denied
    await authz.apply(PRODUCTPAGE_VIEWER)
    assert await authz.status(sleep, PRODUCTPAGE) == 200
    assert await authz.status(authz.sleep_bar, PRODUCTPAGE) == 200
    assert await authz.status(sleep, PRODUCTPAGE, "POST") == 403
    assert await authz.status(pp, DETAILS) == 403

    # details-viewer: GET on details for productpage's principal only
    await authz.apply(DETAILS_VIEWER)
    response = await authz.call(pp, DETAILS)
    assert (response.status, response.text) == (200, "details")
    assert details.app.requests[-1][:2] == ("GET", "/details/0")
    assert await authz.status(pp, DETAILS, "POST") == 403
    before = len(details.lines())
    assert await authz.status(sleep, DETAILS) == 403  # another service account
    assert await authz.status(None, DETAILS, target=details) == 403  # plaintext: no principal (#21259)
    assert len(details.app.requests) == seen + 1  # only the allowed request reached the app
    await denied_by_no_allow(details, after=before)

    # the policies deleted: allowed again
    await authz.clean()
    assert await authz.status(sleep, DETAILS, "POST") == 200


# --- "Explicit deny" (istio.io/latest/docs/tasks/security/authorization/authz-deny/) -------------------
DENY_METHOD_GET = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-method-get
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["GET"]
"""

DENY_METHOD_GET_UNLESS_ADMIN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-method-get
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["GET"]
    when:
    - key: request.headers[x-token]
      notValues: ["admin"]
"""

ALLOW_PATH_IP = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-path-ip
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - to:
    - operation:
        paths: ["/ip"]
"""

HTTPBIN = "http://httpbin.foo:8000"


async def test_explicit_deny_task_deny_beats_allow(authz: AuthzMesh) -> None:
    sleep, httpbin = authz.sleep, authz.httpbin
    assert await authz.status(sleep, f"{HTTPBIN}/ip") == 200

    await authz.apply(DENY_METHOD_GET)
    before = len(httpbin.lines())
    response = await authz.call(sleep, f"{HTTPBIN}/get")
    assert (response.status, response.text) == (403, "RBAC: access denied")  # as Envoy: no newline
    await denied_line(httpbin, "foo", "deny-method-get", after=before)
    assert await authz.status(sleep, f"{HTTPBIN}/post", "POST") == 200

    await authz.apply(DENY_METHOD_GET_UNLESS_ADMIN)
    assert await authz.status(sleep, f"{HTTPBIN}/get", headers={"x-token": "admin"}) == 200
    assert await authz.status(sleep, f"{HTTPBIN}/get", headers={"x-token": "guest"}) == 403
    assert await authz.status(sleep, f"{HTTPBIN}/get") == 403  # no header: not "admin" either

    await authz.apply(ALLOW_PATH_IP)
    before = len(httpbin.lines())
    assert await authz.status(sleep, f"{HTTPBIN}/ip", headers={"x-token": "guest"}) == 403  # DENY first
    await denied_line(httpbin, "foo", "deny-method-get", after=before)
    assert await authz.status(sleep, f"{HTTPBIN}/ip", headers={"x-token": "admin"}) == 200
    assert await authz.status(sleep, f"{HTTPBIN}/get", headers={"x-token": "admin"}) == 403  # no ALLOW matched


# --- "TCP traffic" (istio.io/latest/docs/tasks/security/authorization/authz-tcp/) ----------------------
TCP_ALLOW_PORTS = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: tcp-policy
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: ALLOW
  rules:
  - to:
    - operation:
        ports: ["9000", "9001"]
"""

TCP_ALLOW_GET = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: tcp-policy
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
        ports: ["9000"]
"""

TCP_DENY_GET = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: tcp-policy
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["GET"]
"""

TCP_DENY_GET_9000 = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: tcp-policy
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["GET"]
        ports: ["9000"]
"""


async def test_tcp_task_ports_and_http_only_fields(authz: AuthzMesh) -> None:
    echo = authz.tcp_echo
    for port in (9000, 9001, 9002):
        assert await authz.tcp(port) == f"hello port {port}\n"

    # ALLOW on ports 9000 and 9001: 9002 is closed without an answer, and the echo app never sees it
    await authz.apply(TCP_ALLOW_PORTS)
    assert await authz.tcp(9000) == "hello port 9000\n"
    assert await authz.tcp(9001) == "hello port 9001\n"
    before, seen = len(echo.lines()), len(authz.echo[9002].lines)
    assert await authz.tcp(9002) == ""
    assert len(authz.echo[9002].lines) == seen
    await denied_by_no_allow(echo, after=before, tcp=True)

    # an ALLOW rule with an HTTP-only field (methods) never matches TCP: both ports rejected
    await authz.apply(TCP_ALLOW_GET)
    assert await authz.tcp(9000) == ""
    assert await authz.tcp(9001) == ""

    # a DENY rule with only an HTTP-only field: Istio drops the HTTP field, so the rule matches every connection
    await authz.apply(TCP_DENY_GET)
    assert await authz.tcp(9000) == ""
    assert await authz.tcp(9001) == ""

    # ... keeping its other fields: only port 9000 is denied
    await authz.apply(TCP_DENY_GET_9000)
    before = len(echo.lines())
    assert await authz.tcp(9000) == ""
    await denied_line(echo, "foo", "tcp-policy", after=before, tcp=True)
    assert await authz.tcp(9001) == "hello port 9001\n"


async def test_tcp_policies_on_the_callers_identity(authz: AuthzMesh) -> None:
    """The source fields a TCP connection carries (its mTLS peer): deny by namespace, allow one principal."""
    await authz.apply("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-foo
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["foo"]
""", authz.tcp_echo)
    before = len(authz.tcp_echo.lines())
    assert await authz.tcp(9000) == ""
    await denied_line(authz.tcp_echo, "foo", "deny-foo", after=before, tcp=True)
    await authz.apply("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-foo
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: DENY
  rules:
  - from:
    - source:
        notNamespaces: ["foo"]
""", authz.tcp_echo)
    assert await authz.tcp(9000) == "hello port 9000\n"
    await authz.apply("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: sleep-only
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/foo/sa/sleep"]
    to:
    - operation:
        ports: ["9001"]
""", authz.tcp_echo)
    assert await authz.tcp(9001) == "hello port 9001\n"
    assert await authz.tcp(9000) == ""


async def test_tcp_audit_logs_the_connection_and_lets_it_through(authz: AuthzMesh) -> None:
    await authz.apply("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: audit-9000
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: AUDIT
  rules:
  - to:
    - operation:
        ports: ["9000"]
""", authz.tcp_echo)
    before = len(authz.tcp_echo.lines())
    assert await authz.tcp(9000) == "hello port 9000\n"
    assert await authz.tcp(9001) == "hello port 9001\n"
    line = await authz.tcp_echo.logged("rbac_audit_matched_policy[ns[foo]-policy[audit-9000]-rule[0]]", after=before)
    assert ' inbound "- - -" 0 - - rbac_audit' in line  # a TCP connection's line
    assert not any("audit-9000" in line and "|9001|" in line for line in authz.tcp_echo.lines()[before:])


async def test_tcp_connection_sni_is_istios_cluster_name_per_service_port(authz: AuthzMesh) -> None:
    """The TCP relay's auto mTLS sends Istio's server name for the service port it dials (`outbound_.9000_._.
    tcp-echo.foo.svc.cluster.local`), so an ALLOW on one port's name lets only that port through."""
    await authz.apply("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: sni-9000
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: ALLOW
  rules:
  - when:
    - key: connection.sni
      values: ["outbound_.9000_._.tcp-echo.foo.svc.cluster.local"]
""", authz.tcp_echo)
    assert await authz.tcp(9000) == "hello port 9000\n"
    before = len(authz.tcp_echo.lines())
    assert await authz.tcp(9001) == ""  # outbound_.9001_._.tcp-echo...: no ALLOW rule matches
    await denied_by_no_allow(authz.tcp_echo, after=before, tcp=True)
