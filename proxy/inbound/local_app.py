"""The inbound listener's Router: every request that reaches it goes to the app beside the sidecar,
through the stages of the inbound pipeline (proxy/inbound/pipeline.py), composed once per config push.

RequestAuthentication (proxy/inbound/jwt/), AuthorizationPolicy (proxy/inbound/authz/) and RateLimits (isthmus.io, proxy/inbound/ratelimit.py) are its
configured stages: with none for this sidecar, `admit` is None and a request pays that one attribute check.
Until a push holds this workload's own security entry its policies are unknown, so nothing is admitted (503
NotConfigured): Envoy has no inbound listener before its first LDS, and a sidecar restarted while pilot is
down must not fail open past the AuthorizationPolicies and RequestAuthentications it was started to enforce.
A push without the entry is not enough: pilot compiles an entry (the default one when no policy applies) only
once it has seen the workload's registration, which may come after the sidecar's first push, or never while
the registry is unreachable (proxy/control/security_state.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.core.errors import ProxyError
from proxy.core.request import HeaderPicks, RequestHead
from proxy.core.target import Target
from proxy.inbound import pipeline
from proxy.inbound.authz.engine import Authorization
from proxy.inbound.jwt.authn import JwtStage
from proxy.inbound.ratelimit import RateLimiter

if TYPE_CHECKING:
    from proxy.control.config_state import ConfigState


class NotConfigured(ProxyError):
    """503 for a request that arrives before this sidecar's first config push (its policies are unknown)."""

    status = 503
    details = "inbound_config_not_received"


def _not_configured(head: RequestHead) -> Target:
    raise NotConfigured("no config received from pilot yet")


class LocalAppRouter:
    def __init__(self, host: str, port: int, service: str, state: ConfigState | None = None,
                 namespace: str = "default", domain_suffix: str = "svc.cluster.local",
                 labels: dict[str, str] | None = None) -> None:
        self.target = Target(host, port, f"inbound|{port}||")  # Istio's inbound cluster name (1.10+: no host)
        self.app_port = port  # the workload port callers reach (destination.port, ports: proxy/http/server_lifecycle.py)
        self.authz: Authorization | None = None  # AuthorizationPolicies compiled (proxy/inbound/authz/), None: none
        self.limiter: RateLimiter | None = None
        self.authn = JwtStage()  # RequestAuthentication (proxy/inbound/jwt/), recompiled when its rules change
        self.admit: pipeline.Admit | None = None  # the composed stages, None when none is configured
        self.picks = HeaderPicks()  # the header names authorization reads, noted by the listener (ServerState)
        self.host = f"{service}.{namespace}.{domain_suffix}".lower()  # this workload's service (ClusterConfig)
        self.labels = dict(labels or {})
        self.state = state
        self.configured = state is None  # False until this workload's entry is pushed: nothing is admitted
        if state is not None:
            self._admit_by(_not_configured)
            state.on_apply.append(self.refresh)

    def pick(self, head: RequestHead) -> Target:
        admit = self.admit
        if admit is None:
            return self.target
        return admit(head)

    def _admit_by(self, admit: pipeline.Admit | None) -> None:
        """With stages, their entry is this router's `pick` itself, an instance attribute over the method: the
        listener's call reaches the first stage with no layer between (without, the method returns target)."""
        self.admit = admit
        if admit is not None:
            self.pick = admit  # type: ignore[method-assign]
        else:
            self.__dict__.pop("pick", None)

    def refresh(self) -> None:
        """Rebuild the stages from the config state: JWT and authorization from this workload's security entry,
        the limiter from its service's cluster; without the entry, nothing is admitted (module docstring)."""
        assert self.state is not None
        if self.state.security is None:
            return
        if self.state.registered:  # else pilot forgot our registration: its RateLimits no longer select us, and
            # the security entry is kept (proxy/control/security_state.py): so are the limits and their buckets
            self._refresh_limiter()
        self._refresh_authz()
        authz = self.authz.http if self.authz is not None else None
        self.picks.pick(self.authz.picks if self.authz is not None else None)  # before the check that reads them
        # authentication (JWT) first, then authorization, then the rate limit (proxy/inbound/pipeline.py)
        authn = self.authn.update(self.state.security)
        self._admit_by(pipeline.build(tuple(c for c in (authn, authz) if c is not None),
                                      self.limiter.admit if self.limiter is not None else None, self.target))
        self.configured = True

    def _refresh_limiter(self) -> None:
        """The RateLimits on our service's cluster that select our labels (kept buckets for unchanged rules)."""
        assert self.state is not None
        cluster = self.state.clusters.get(self.host)
        labels = self.labels
        rules = [r for r in (cluster.ratelimits if cluster is not None else ())
                 if all(labels.get(k) == v for k, v in r.selector.items())]
        if not rules:
            self.limiter = None
        elif self.limiter is None or [lim.rule for lim in self.limiter.limits] != rules:
            self.limiter = RateLimiter(rules, self.target, self.limiter)

    def _refresh_authz(self) -> None:
        """Recompile the AuthorizationPolicies when a push changed them (TCP listeners read `authz` too)."""
        assert self.state is not None
        security = self.state.security
        policies = security.authorization if security is not None else []
        if not policies:
            self.authz = None
        elif self.authz is None or self.authz.policies != policies:
            self.authz = Authorization(policies)

    def dump(self) -> list[dict[str, object]]:
        """The rules in force and their buckets, for the admin /config_dump."""
        if self.limiter is None:
            return []
        return [{"name": lim.rule.name, "max_tokens": lim.bucket.max_tokens, "remaining": lim.bucket.remaining()}
                for lim in self.limiter.limits]
