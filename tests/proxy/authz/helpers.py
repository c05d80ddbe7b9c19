"""Build what the push contract carries (AuthzPolicy with Istio's rules as written) and requests to check."""

from __future__ import annotations

from typing import Any

import msgspec

from proto.security import AuthzRule
from proto.xds import AuthzPolicy
from proxy.core.downstream import Downstream, RequestAuth
from proxy.core.errors import AccessDenied
from proxy.core.request import RequestHead
from proxy.inbound.authz.engine import Authorization

SLEEP = "cluster.local/ns/foo/sa/sleep"
PLAINTEXT = Downstream(None, "10.0.0.9", "10.0.0.2", 8080)


def policy(name: str, action: str, *rules: dict[str, Any], no_rules: bool = False) -> AuthzPolicy:
    """`rules` as Istio's YAML has them (camelCase keys); no_rules: `spec: {}`."""
    return AuthzPolicy(name, action, [] if no_rules else [msgspec.convert(r, AuthzRule) for r in rules])


def caller(principal: str | None = SLEEP, ip: str = "10.0.0.1", dest_ip: str = "10.0.0.2", port: int = 8080,
           sni: str = "") -> Downstream:
    return Downstream(principal, ip, dest_ip, port, sni)


def request(path: str = "/", method: str = "GET", host: str = "app.foo.svc.cluster.local",
            headers: list[tuple[str, str]] | None = None, ds: Downstream | None = None,
            auth: RequestAuth | None = None) -> RequestHead:
    raw = [(b"host", host.encode())] + [(n.lower().encode(), v.encode()) for n, v in headers or ()]
    head = RequestHead(method, host.split(":")[0], 80, path, raw, downstream=ds or caller())
    head.auth = auth
    return head


def jwt(iss: str = "https://issuer.example", sub: str = "alice", **claims: Any) -> RequestAuth:
    aud = claims.get("aud", [])
    return RequestAuth(f"{iss}/{sub}", aud if isinstance(aud, list) else [aud], claims.get("azp", ""),
                       {"iss": iss, "sub": sub, **claims})


def decide(policies: list[AuthzPolicy], head: RequestHead) -> str | None:
    """None when allowed, else the policy the denial names (`none`: no ALLOW rule matched)."""
    check = Authorization(policies).http
    assert check is not None
    try:
        check(head)
    except AccessDenied as exc:
        assert exc.status == 403 and exc.detail == "RBAC: access denied"
        return exc.policy
    return None


def allows(rule: dict[str, Any], head: RequestHead) -> bool:
    """Whether one ALLOW rule admits `head` (the only policy on the workload)."""
    return decide([policy("foo/p", "ALLOW", rule)], head) is None
