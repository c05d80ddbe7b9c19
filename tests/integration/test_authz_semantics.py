"""AuthorizationPolicy's semantics end to end, one case per field, condition key and pitfall, on real sidecars
(mTLS identities from the ca), the real bus and etcd. The callers: sleep in foo (principal
cluster.local/ns/foo/sa/sleep), sleep in bar (cluster.local/ns/bar/sa/sleep), a plaintext client with no
sidecar straight to httpbin's inbound port, and either of them carrying a JWT of the test issuer.

Each field case is a DENY policy on httpbin: what it matches gets 403 (and an access-log line naming the
policy), what it does not match gets 200, so every case proves both sides. Reference:
istio.io/latest/docs/reference/config/security/authorization-policy/ (and conditions/)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from tests.integration.authz_mesh import AuthzMesh, Workload, denied_line
from tests.integration.authz_tokens import Issuer
from tests.integration.conftest import ControlPlane, apply

pytestmark = pytest.mark.asyncio(loop_scope="module")

ISSUER = Issuer("https://issuer.isthmus.test")
ALICE = ISSUER.token("alice", aud=["bookstore", "library"], azp="web-app", groups=["group1", "group2"],
                     org={"team": {"name": "blue"}})
BOB = ISSUER.token("bob", kid="ec-1", aud="other", azp="cli", groups=["group3"], org={"team": {"name": "red"}})
ALICE_P = f"{ISSUER.issuer}/alice"

REQUEST_AUTHN = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: test-issuer, namespace: foo}}
spec:
  selector:
    matchLabels: {{app: httpbin}}
  jwtRules:
  - issuer: "{ISSUER.issuer}"
    jwks: '{ISSUER.jwks()}'
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(plane: ControlPlane):  # type: ignore[no-untyped-def]
    mesh = await AuthzMesh(plane).start()
    reply = await apply(plane, REQUEST_AUTHN)  # kept for the module: requestPrincipals and request.auth.*
    assert reply["ok"], reply
    await mesh.converged(reply["revision"], mesh.httpbin)
    yield mesh
    await mesh.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def authz(world: AuthzMesh):  # type: ignore[no-untyped-def]
    yield world
    await world.clean()


@dataclass
class Req:
    """A request to httpbin: `caller` S (sleep.foo, mTLS), B (sleep.bar, mTLS) or P (plaintext, no sidecar)."""

    caller: str = "S"
    path: str = "/get"
    method: str = "GET"
    host: str = "httpbin.foo:8000"
    headers: dict[str, str] = field(default_factory=dict)
    token: str = ""

    def __str__(self) -> str:
        extra = f" {self.headers}" if self.headers else ""
        return f"{self.caller} {self.method} {self.host}{self.path}{extra}{' +jwt' if self.token else ''}"


async def send(authz: AuthzMesh, req: Req) -> int:
    caller: Workload | None = {"S": authz.sleep, "B": authz.sleep_bar, "P": None}[req.caller]
    headers = dict(req.headers)
    if req.token:
        headers["authorization"] = f"Bearer {req.token}"
    return await authz.status(caller, f"http://{req.host}{req.path}", req.method, headers, target=authz.httpbin)


def policy(name: str, rules: str, action: str = "DENY", ns: str = "foo", selector: str = "app: httpbin") -> str:
    """An AuthorizationPolicy; `rules`: the YAML of its rules list, indented two spaces."""
    select = f"  selector:\n    matchLabels: {{{selector}}}\n" if selector else ""
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{select}  action: {action}
  rules:
{rules}"""


def source(**fields: list[str]) -> str:
    return "  - from:\n    - source: {" + ", ".join(f"{k}: {v!r}" for k, v in fields.items()) + "}\n"


def operation(**fields: list[str]) -> str:
    return "  - to:\n    - operation: {" + ", ".join(f"{k}: {v!r}" for k, v in fields.items()) + "}\n"


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None, path: str = "") -> str:
    """A rule with one condition (and, with `path`, an operation on that path too)."""
    cond = f"{{key: '{key}'" + (f", values: {values!r}" if values is not None else "") \
        + (f", notValues: {not_values!r}" if not_values is not None else "") + "}"
    to = f"    to:\n    - operation: {{paths: ['{path}']}}\n" if path else ""
    return f"  - when:\n    - {cond}\n{to}"


def cidr_pair(build) -> str:  # type: ignore[no-untyped-def]
    """Two rules: the field matching 127.0.0.1 guards /a, one matching only 10.0.0.0/8 guards /b."""
    return build(["127.0.0.1/32"], "/a") + build(["10.0.0.0/8"], "/b")


S, B, P = Req("S"), Req("B"), Req("P")
CASES: dict[str, tuple[str, list[Req], list[Req]]] = {
    # from.source
    "principals-exact": (source(principals=["cluster.local/ns/foo/sa/sleep"]), [S], [B, P]),
    "principals-prefix": (source(principals=["cluster.local/ns/bar/*"]), [B], [S, P]),
    "principals-suffix": (source(principals=["*/sa/sleep"]), [S, B], [P]),
    "principals-presence": (source(principals=["*"]), [S, B], [P]),  # never a plaintext caller (#21259)
    "not-principals": (source(notPrincipals=["cluster.local/ns/foo/sa/sleep"]), [B, P], [S]),
    "namespaces": (source(namespaces=["bar"]), [B], [S, P]),
    "namespaces-presence": (source(namespaces=["*"]), [S, B], [P]),
    "not-namespaces": (source(notNamespaces=["foo"]), [B, P], [S]),
    "request-principals": (source(requestPrincipals=[ALICE_P]), [Req(token=ALICE), Req("P", token=ALICE)],
                           [S, Req(token=BOB)]),
    "request-principals-presence": (source(requestPrincipals=["*"]), [Req(token=ALICE), Req("B", token=BOB)],
                                    [S, P]),
    "not-request-principals": (source(notRequestPrincipals=["*"]), [S, P], [Req(token=ALICE), Req("P", token=BOB)]),
    "ip-blocks": (cidr_pair(lambda c, p: source(ipBlocks=c) + f"    to:\n    - operation: {{paths: ['{p}']}}\n"),
                  [Req(path="/a"), Req("P", path="/a")], [Req(path="/b")]),
    "not-ip-blocks": (cidr_pair(lambda c, p: source(notIpBlocks=c) + f"    to:\n    - operation: {{paths: ['{p}']}}\n"),
                      [Req(path="/b"), Req("P", path="/b")], [Req(path="/a")]),
    "remote-ip-blocks": (cidr_pair(lambda c, p: source(remoteIpBlocks=c)
                                   + f"    to:\n    - operation: {{paths: ['{p}']}}\n"),
                         [Req(path="/a"), Req("P", path="/a")], [Req(path="/b")]),
    "not-remote-ip-blocks": (cidr_pair(lambda c, p: source(notRemoteIpBlocks=c)
                                       + f"    to:\n    - operation: {{paths: ['{p}']}}\n"),
                             [Req(path="/b")], [Req(path="/a"), Req("P", path="/a")]),
    # to.operation
    "hosts": (operation(hosts=["httpbin.foo:8000"]), [S, Req("P", host="HTTPBIN.foo:8000")],
              [Req(host="httpbin.foo.svc.cluster.local:8000")]),
    "hosts-prefix": (operation(hosts=["httpbin.foo.*"]), [Req(host="httpbin.foo.svc.cluster.local:8000")],
                     [S]),
    "not-hosts": (operation(notHosts=["httpbin.foo:8000"]), [Req(host="httpbin.foo.svc.cluster.local:8000")], [S]),
    "methods": (operation(methods=["POST"]), [Req(method="POST")], [S, Req(method="PUT")]),
    "not-methods": (operation(notMethods=["GET"]), [Req(method="POST"), Req(method="DELETE")], [S]),
    "paths-exact": (operation(paths=["/headers"]), [Req(path="/headers"), Req(path="/headers?x=1")],
                    [Req(path="/headers/x"), Req(path="/ip"), Req(path="/Headers")]),
    "paths-prefix": (operation(paths=["/api/*"]), [Req(path="/api/"), Req(path="/api/v1/x")],
                     [Req(path="/apix"), Req(path="/ip")]),
    "paths-suffix": (operation(paths=["*/info"]), [Req(path="/info"), Req(path="/a/b/info")],
                     [Req(path="/info2"), Req(path="/ip")]),
    "paths-presence": (operation(paths=["*"]), [Req(path="/"), Req(path="/x")], []),
    "not-paths": (operation(notPaths=["/ip"]), [Req(path="/get")], [Req(path="/ip")]),
    # when: condition keys
    "when-header": (when("request.headers[x-token]", ["admin", "root*"]),
                    [Req(headers={"x-token": "admin"}), Req(headers={"x-token": "rooted"})],
                    [S, Req(headers={"x-token": "guest"})]),
    "when-header-name-any-case": (when("request.headers[X-Token]", ["admin"]), [Req(headers={"X-TOKEN": "admin"})],
                                  [Req(headers={"x-token": "Admin"})]),  # names case-insensitive, values not
    "remote-ip-ignores-forwarded-for": (source(remoteIpBlocks=["127.0.0.1/32"]),  # a client cannot spoof it away
                                        [Req(headers={"x-forwarded-for": "10.1.1.1"}),
                                         Req("P", headers={"x-forwarded-for": "10.1.1.1, 10.2.2.2"})], []),
    "when-header-not-values": (when("request.headers[x-token]", not_values=["admin"]),
                               [S, Req(headers={"x-token": "guest"})], [Req(headers={"x-token": "admin"})]),
    "when-source-ip": (when("source.ip", ["127.0.0.1"], path="/a") + when("source.ip", ["10.0.0.0/8"], path="/b"),
                       [Req(path="/a"), Req("P", path="/a")], [Req(path="/b")]),
    "when-remote-ip": (when("remote.ip", ["127.0.0.0/8"], path="/a") + when("remote.ip", ["10.0.0.0/8"], path="/b"),
                       [Req(path="/a")], [Req(path="/b")]),
    "when-source-namespace": (when("source.namespace", ["bar"]), [B], [S, P]),
    "when-source-namespace-not": (when("source.namespace", not_values=["foo"]), [B, P], [S]),
    "when-source-principal": (when("source.principal", ["cluster.local/ns/foo/sa/sleep"]), [S], [B, P]),
    "when-auth-principal": (when("request.auth.principal", [ALICE_P]), [Req(token=ALICE)], [S, Req(token=BOB)]),
    "when-auth-audiences": (when("request.auth.audiences", ["library"]), [Req(token=ALICE)], [S, Req(token=BOB)]),
    "when-auth-presenter": (when("request.auth.presenter", ["web-app"]), [Req(token=ALICE)], [S, Req(token=BOB)]),
    "when-auth-claims-list": (when("request.auth.claims[groups]", ["group2"]), [Req(token=ALICE)],
                              [S, Req(token=BOB)]),
    "when-auth-claims-nested": (when("request.auth.claims[org][team][name]", ["blue"]), [Req(token=ALICE)],
                                [S, Req(token=BOB)]),
    "when-destination-ip": (when("destination.ip", ["127.0.0.1"], path="/a")
                            + when("destination.ip", ["10.0.0.0/8"], path="/b"), [Req(path="/a")], [Req(path="/b")]),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_each_field_and_condition_denies_what_it_matches_and_nothing_else(authz: AuthzMesh, name: str) -> None:
    rules, denied, allowed = CASES[name]
    await authz.apply(policy(name, rules), authz.httpbin)
    before = len(authz.httpbin.lines())
    seen = {str(r): await send(authz, r) for r in denied + allowed}
    assert seen == {**{str(r): 403 for r in denied}, **{str(r): 200 for r in allowed}}
    if denied:
        await denied_line(authz.httpbin, "foo", name, after=before)


# --- actions and evaluation order ---------------------------------------------------------------------
async def test_allow_deny_and_the_evaluation_order(authz: AuthzMesh) -> None:
    httpbin = authz.httpbin
    # no ALLOW policy on the workload: allowed (a DENY policy alone denies only what it matches)
    await authz.apply(policy("deny-delete", operation(methods=["DELETE"])), httpbin)
    assert await send(authz, Req(method="DELETE")) == 403
    assert await send(authz, Req(method="POST")) == 200
    # an ALLOW policy: what no ALLOW policy matches is denied
    await authz.apply(policy("allow-get", operation(methods=["GET", "DELETE"]), "ALLOW"), httpbin)
    assert await send(authz, S) == 200
    assert await send(authz, Req(method="POST")) == 403
    # DENY first: an ALLOW that matches does not save a request a DENY matches
    assert await send(authz, Req(method="DELETE")) == 403
    # `rules: [{}]` matches everything: with it, the other ALLOW's misses are allowed
    await authz.apply(policy("allow-all", "  - {}\n", "ALLOW"), httpbin)
    assert await send(authz, Req(method="POST")) == 200
    assert await send(authz, Req(method="DELETE")) == 403  # DENY still first
    # an ALLOW policy without rules matches nothing (it adds no allowance; Istio's allow-nothing)
    await authz.delete([("AuthorizationPolicy", "foo", "allow-all"), ("AuthorizationPolicy", "foo", "allow-get")],
                       httpbin)
    await authz.apply("""
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec:
  selector:
    matchLabels: {app: httpbin}
  action: ALLOW
""", httpbin)
    assert await send(authz, S) == 403
    assert authz.httpbin.authorization() == ["foo/deny-delete", "foo/allow-nothing"]


async def test_audit_logs_the_match_and_never_blocks(authz: AuthzMesh) -> None:
    httpbin = authz.httpbin
    await authz.apply(policy("audit-admin", operation(paths=["/admin*"]), "AUDIT"), httpbin)
    before = len(httpbin.lines())
    response = await authz.call(authz.sleep, "http://httpbin.foo:8000/admin/users")
    assert (response.status, response.text) == (200, "httpbin")
    line = await httpbin.logged("ns[foo]-policy[audit-admin]", after=before)
    assert " 200 " in line and "/admin/users" in line
    assert await send(authz, Req(path="/ip")) == 200
    assert not any("audit-admin" in line and "/ip" in line for line in httpbin.lines()[before:])


async def test_custom_action_and_target_refs_are_rejected_at_apply_with_their_path(authz: AuthzMesh) -> None:
    custom = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  selector:
    matchLabels: {app: httpbin}
  action: CUSTOM
  provider:
    name: sample-ext-authz-grpc
  rules:
  - to:
    - operation:
        paths: ["/headers"]
"""
    target_ref = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-gateway, namespace: foo}
spec:
  targetRef:
    kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  action: DENY
  rules:
  - to:
    - operation: {methods: ["GET"]}
"""
    target_refs = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-gateways, namespace: foo}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
  action: DENY
"""
    ra_target_ref = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: on-gateway, namespace: foo}
spec:
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
  jwtRules:
  - issuer: "testing@secure.istio.io"
"""
    for text, path, words in ((custom, "spec.action", "CUSTOM"), (target_ref, "spec.targetRef", "targetRef"),
                              (target_refs, "spec.targetRefs", "targetRefs"),
                              (ra_target_ref, "spec.targetRef", "targetRef")):
        reply = await apply(authz.mesh, text)
        assert not reply["ok"], reply
        errors = reply.get("errors") or []
        assert any(e.get("path", "").startswith(path) and words in e.get("message", "") for e in errors), reply
    # nothing was stored: httpbin still serves GET
    assert await send(authz, S) == 200


# --- scope ----------------------------------------------------------------------------------------------
async def test_root_namespace_policies_apply_mesh_wide_and_by_selector_in_every_namespace(authz: AuthzMesh) -> None:
    await authz.apply(policy("mesh-deny", operation(paths=["/mesh-deny"]), ns="istio-system", selector=""))
    for workload in authz.workloads:
        assert "istio-system/mesh-deny" in workload.authorization(), workload.name
    assert await send(authz, Req(path="/mesh-deny")) == 403
    assert await authz.status(authz.productpage, "http://details.default:9080/mesh-deny") == 403
    await authz.apply(policy("httpbins", operation(paths=["/only-httpbin"]), ns="istio-system"))
    assert await send(authz, Req(path="/only-httpbin")) == 403
    assert await authz.status(authz.productpage, "http://details.default:9080/only-httpbin") == 200
    # a namespace's policy stays in its namespace
    await authz.apply(policy("foo-only", operation(paths=["/foo-only"]), ns="foo", selector=""))
    assert await send(authz, Req(path="/foo-only")) == 403
    assert await authz.status(authz.productpage, "http://details.default:9080/foo-only") == 200


# --- the pitfalls Istio users reported ------------------------------------------------------------------
async def test_from_and_to_written_as_two_rules_are_ored(authz: AuthzMesh) -> None:
    """istio/istio#24665 and Istio's "common problems": a `-` before `to:` makes a second rule, ORed."""
    two_rules = policy("two-rules", "  - from:\n    - source: {namespaces: [foo]}\n"
                                    "  - to:\n    - operation: {paths: [/public]}\n", "ALLOW")
    await authz.apply(two_rules, authz.httpbin)
    assert await send(authz, Req("B", path="/public")) == 200  # the second rule alone
    assert await send(authz, Req("S", path="/private")) == 200  # the first rule alone
    assert await send(authz, Req("B", path="/private")) == 403
    one_rule = policy("two-rules", "  - from:\n    - source: {namespaces: [foo]}\n"
                                   "    to:\n    - operation: {paths: [/public]}\n", "ALLOW")
    await authz.apply(one_rule, authz.httpbin)
    assert await send(authz, Req("B", path="/public")) == 403  # both must match now
    assert await send(authz, Req("S", path="/private")) == 403
    assert await send(authz, Req("S", path="/public")) == 200


async def test_principals_and_namespaces_never_match_a_plaintext_caller(authz: AuthzMesh) -> None:
    """istio/istio#21259: without mTLS there is no peer identity; an ALLOW on principals or namespaces does
    not let a plaintext caller in, whatever pattern it uses, and a DENY on them does not catch it."""
    allow = policy("identities", source(principals=["*"]) + source(namespaces=["*"])
                   + when("source.principal", ["*"]) + when("source.namespace", ["*"]), "ALLOW")
    await authz.apply(allow, authz.httpbin)
    assert await send(authz, S) == 200 and await send(authz, B) == 200
    response = await authz.call(None, "http://httpbin.foo:8000/get", target=authz.httpbin)
    assert (response.status, response.text) == (403, "RBAC: access denied")  # as Envoy: no newline


async def test_path_parameters_and_doubled_slashes_cannot_slip_past_paths(authz: AuthzMesh) -> None:
    """istio/istio#27409 (`;x` path parameters) and CVE-2021-31920 (`//`): a DENY on /admin catches every
    spelling the app might read as /admin, and an ALLOW on /public admits none that is not /public; what the
    sidecar does not deny it may refuse as malformed (400), but the app never serves it."""
    app = authz.httpbin.app
    await authz.apply(policy("deny-admin", operation(paths=["/admin", "/admin/*"])), authz.httpbin)
    for path in ("/admin;x", "/admin;x=1/", "//admin", "/admin//", "///admin/users", "/./admin", "/x/../admin",
                 "/%61dmin", "/admin/%2e%2e/admin"):
        seen = len(app.requests)
        status = await send(authz, Req(path=path))
        assert (status, app.requests[seen:]) in ((400, []), (403, [])), path
    assert await send(authz, Req(path="/administrator")) == 200
    await authz.clean()
    await authz.apply(policy("only-public", operation(paths=["/public"]), "ALLOW"), authz.httpbin)
    assert await send(authz, Req(path="/public")) == 200
    for path in ("/public;/../admin", "/public/../admin", "/public;x", "//public/../admin"):
        seen = len(app.requests)
        status = await send(authz, Req(path=path))
        assert status in (400, 403) or app.requests[seen:][0][1] in ("/public", "/public;x"), (path, status)
        assert all("admin" not in p for _, p, _ in app.requests[seen:]), (path, app.requests[seen:])
    # a DENY on everything but /public/*: a spelling that leaves /public is denied, whatever it looks like
    await authz.clean()
    await authz.apply(policy("outside-public", operation(notPaths=["/public/*"])), authz.httpbin)
    assert await send(authz, Req(path="/public/x")) == 200
    for path in ("/public/../admin", "/public/%2e%2e/admin", "/public/./../admin", "/public/..;/admin"):
        seen = len(app.requests)
        status = await send(authz, Req(path=path))
        assert (status, app.requests[seen:]) in ((400, []), (403, [])), path


async def test_paths_match_case_sensitively_even_where_a_virtual_service_ignores_uri_case(authz: AuthzMesh) -> None:
    """istio/istio#38139: ignoreUriCase changes routing, not authorization: paths stay case-sensitive, so an
    ALLOW list is the safe way to write path rules."""
    await authz.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: [httpbin.foo.svc.cluster.local]
  http:
  - match:
    - uri: {prefix: /public}
      ignoreUriCase: true
    route:
    - destination: {host: httpbin.foo.svc.cluster.local, port: {number: 8000}}
  - route:
    - destination: {host: httpbin.foo.svc.cluster.local, port: {number: 8000}}
    fault:
      abort: {httpStatus: 418, percentage: {value: 100}}
""", authz.sleep)
    assert await send(authz, Req(path="/PUBLIC/x")) == 200  # routed case-insensitively, no policy yet
    await authz.apply(policy("public-only", operation(paths=["/public/*"]), "ALLOW"), authz.httpbin)
    assert await send(authz, Req(path="/public/x")) == 200
    assert await send(authz, Req(path="/PUBLIC/x")) == 403  # the route matched, the policy did not
    await authz.apply(policy("deny-private", operation(paths=["/public/private"])), authz.httpbin)
    assert await send(authz, Req(path="/public/private")) == 403
    assert await send(authz, Req(path="/Public/Private")) == 403  # not allowed by public-only either


async def test_deleting_a_policy_stops_its_denials_at_once_on_every_proxy(authz: AuthzMesh) -> None:
    """istio/istio#53071: after a delete, no proxy keeps denying (no restart, no stale policy)."""
    uptimes = {w.side.admin_port: w.side.config_dump()["proxy"]["uptime_s"] for w in authz.workloads}
    await authz.apply(policy("mesh-deny", "  - {}\n", ns="istio-system", selector=""))

    async def statuses() -> dict[str, int]:
        return {f"{w.name}.{w.ns}": await authz.status(None, f"http://{w.name}.{w.ns}:{w.service_port}/x", target=w)
                for w in authz.workloads}

    assert set((await statuses()).values()) == {403}
    start = time.monotonic()
    reply = await authz.delete([("AuthorizationPolicy", "istio-system", "mesh-deny")])  # waits until all hold it
    assert set((await statuses()).values()) == {200}
    assert time.monotonic() - start < 10
    assert reply["results"][0]["action"] == "deleted"
    for workload in authz.workloads:
        assert "istio-system/mesh-deny" not in workload.authorization()
        assert workload.side.config_dump()["proxy"]["uptime_s"] >= uptimes[workload.side.admin_port]


async def test_ports_and_destination_port_name_the_workload_port(authz: AuthzMesh) -> None:
    """`ports`, `notPorts` and destination.port compare the workload's port (the one the app listens on,
    Istio's targetPort, as PeerAuthentication's portLevelMtls), not the service port clients dial."""
    app_port = str(authz.httpbin.app.port)
    cases = {
        "ports": (operation(ports=[app_port]), [S, B, P], []),
        "ports-service-port": (operation(ports=["8000"]), [], [S, P]),
        "not-ports": (operation(notPorts=[app_port]), [], [S, P]),
        "not-ports-other": (operation(notPorts=["8000"]), [S, P], []),
        "when-destination-port": (when("destination.port", [app_port], path="/a")
                                  + when("destination.port", ["8000"], path="/b"), [Req(path="/a")], [Req(path="/b")]),
    }
    for name, (rules, denied, allowed) in cases.items():
        await authz.apply(policy(name, rules), authz.httpbin)
        seen = {str(r): await send(authz, r) for r in denied + allowed}
        assert seen == {**{str(r): 403 for r in denied}, **{str(r): 200 for r in allowed}}, name
        await authz.delete([("AuthorizationPolicy", "foo", name)])


async def test_connection_sni_is_the_server_name_the_client_sidecar_sent(authz: AuthzMesh) -> None:
    """connection.sni: the TLS server name of the mTLS connection (here the one a DestinationRule's
    ISTIO_MUTUAL `sni` makes the clients' sidecars send); a plaintext caller has none."""
    await authz.apply("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin-sni, namespace: foo}
spec:
  host: httpbin.foo.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, sni: httpbin.sni.test}
""", authz.sleep)
    await authz.apply(policy("by-sni", when("connection.sni", ["*.sni.test"])), authz.httpbin)
    assert await send(authz, S) == 403
    assert await send(authz, B) == 403  # the DestinationRule applies to every client namespace (exportTo *)
    assert await send(authz, P) == 200
    await authz.apply(policy("by-sni", when("connection.sni", not_values=["httpbin.sni.test"])), authz.httpbin)
    assert await send(authz, S) == 200
    assert await send(authz, P) == 403  # no server name at all


async def test_istios_connection_sni_values_match_what_auto_mtls_sends(authz: AuthzMesh) -> None:
    """Auto mTLS sends Istio's server name, the cluster's name `outbound_.<port>_.<subset>_.<fqdn>`, so a
    connection.sni value written for an Istio mesh matches; a route to a subset sends that subset's name
    (its own cluster and connections, never a pooled connection made for another name)."""
    await authz.apply(policy("by-sni", when("connection.sni", ["outbound_.8000_._.httpbin.foo.svc.cluster.local"])),
                      authz.httpbin)
    before = len(authz.httpbin.lines())
    assert await send(authz, S) == 403
    await denied_line(authz.httpbin, "foo", "by-sni", after=before)
    assert await send(authz, B) == 403
    assert await send(authz, P) == 200  # plaintext: no server name
    await authz.apply("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin-subsets, namespace: foo}
spec:
  host: httpbin.foo.svc.cluster.local
  subsets:
  - name: all
    labels: {app: httpbin}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin-to-subset, namespace: foo}
spec:
  hosts: [httpbin.foo.svc.cluster.local]
  http:
  - route:
    - destination: {host: httpbin.foo.svc.cluster.local, subset: all}
""")
    assert await send(authz, S) == 200  # outbound_.8000_.all_.httpbin...: not the name the rule denies
    await authz.apply(policy("by-sni", when("connection.sni", ["*_.all_.httpbin.foo.svc.cluster.local"])),
                      authz.httpbin)
    assert await send(authz, S) == 403
    assert await send(authz, P) == 200
