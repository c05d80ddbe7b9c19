"""Typed failures of the data plane, mapped to HTTP responses in one place (proxy/http/rescue.py).

    ProxyError
    ├── BadRequest            400  DPE  downstream sent something we cannot parse
    │   ├── HeadersTooLarge   431  DPE  request head over max_head_bytes or max_headers (proxy/http/limits.py)
    │   ├── UriTooLong        414  DPE  request target over max_url_bytes
    │   └── UnsupportedCoding 501  DPE  a Transfer-Encoding other than `chunked` (Envoy: 501)
    ├── RequestTimeout        408  -    the request head or body did not arrive in time
    ├── StreamIdleTimeout     408  SI   no byte either way for stream_idle_timeout
    ├── UpstreamProtocolError 502  UPE  the upstream's response is malformed or over the response limits
    ├── NoRoute               404  NR   no route or service for the requested host
    ├── NoHealthyUpstream     503  UH   the cluster has no healthy endpoint
    ├── NoCluster             503  NC   a route sends to a cluster or subset the proxy does not hold
    ├── UpstreamConnectError  503  UF   connecting to the chosen endpoint failed
    │   └── DnsFailure        503  DF   the name of a host outside the mesh did not resolve
    ├── BlackHole             502  -    REGISTRY_ONLY: a host the mesh does not know (BlackHoleCluster)
    ├── UpstreamReset         503  UC   the upstream closed or reset mid-exchange
    ├── UpstreamTimeout       504  UT   the upstream did not answer in time
    ├── Overflow              503  UO   the cluster's circuit breaker is full (connectionPool)
    ├── RateLimited           429  RL   a RateLimit's token bucket is empty (proxy/inbound/ratelimit.py)
    ├── Unauthenticated       401  -    a request's JWT failed verification (RequestAuthentication)
    │   └── AudienceNotAllowed 403 -    its audiences are not the rule's (Envoy's jwt_authn answers 403)
    ├── AccessDenied          403  -    an AuthorizationPolicy denied the request (body `RBAC: access denied`)
    ├── RetryBufferExceeded   507  -    body arriving during a retry back-off outgrew the retry buffer
    ├── ConnectRefused        403  -    CONNECT to a mesh host's HTTP port (proxy/outbound/connect_policy.py)
    ├── Overloaded            503  OM   incomplete request heads past the listener's budget (proxy/http/head_budget.py)
    ├── LoopDetected          508  LD   the upstream is this sidecar's own outbound listener (proxy/outbound/self_loop.py)
    └── FaultAbort            any  FI   a configured fault injection aborted the request

The flag is Envoy's response flag, so access logs read the way Istio users expect.
"""

from __future__ import annotations


# characters of a client-chosen name (Host, SNI) an error message quotes: a DNS name is at most 253, and a
# 60 KiB Host is not echoed back into the response body or the log line
HOST_SHOWN = 253


class ProxyError(Exception):
    status: int = 500
    flag: str = "-"
    headers: bytes = b""  # extra response header lines ("name: value\r\n" each), written by rescue
    # Our local replies end in a newline (curl's prompt stays on its line); Envoy's filters whose bodies users
    # compare byte for byte (RBAC, jwt_authn) send theirs without one, and so do we for those.
    newline: bool = True
    details: str = ""  # Envoy's response code details for the access log ("" when the flag says it all)

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ProxyError):
    status = 400
    flag = "DPE"


class HeadersTooLarge(BadRequest):
    status = 431


class UriTooLong(BadRequest):
    status = 414


class RequestTimeout(ProxyError):
    status = 408


class StreamIdleTimeout(ProxyError):
    status = 408
    flag = "SI"


class UpstreamProtocolError(ProxyError):
    status = 502
    flag = "UPE"


class NoRoute(ProxyError):
    status = 404
    flag = "NR"


class NoHealthyUpstream(ProxyError):
    status = 503
    flag = "UH"


class NoCluster(ProxyError):
    """Envoy's cluster_not_found (response flag NC, 503): the route names a cluster it never received, which
    is what Istio users see for a VirtualService subset no DestinationRule defines."""

    status = 503
    flag = "NC"


class UpstreamConnectError(ProxyError):
    status = 503
    flag = "UF"


class DnsFailure(UpstreamConnectError):
    """A passthrough host's name did not resolve (Envoy's dynamic forward proxy: flag DF)."""

    flag = "DF"


class BlackHole(ProxyError):
    """outboundTrafficPolicy REGISTRY_ONLY and a host the registry does not know. Istio answers such a request
    from its `block_all` route, a direct response 502, so Envoy sets no response flag (the access log's cluster
    says BlackHoleCluster); a CONNECT is TCP to Istio, whose BlackHoleCluster has no endpoint: UH."""

    status = 502

    def __init__(self, detail: str = "", flag: str = "-") -> None:
        super().__init__(detail)
        self.flag = flag


class UpstreamReset(ProxyError):
    status = 503
    flag = "UC"


class UpstreamTimeout(ProxyError):
    status = 504
    flag = "UT"


class FaultAbort(ProxyError):
    flag = "FI"

    def __init__(self, status: int) -> None:
        super().__init__("fault filter abort")
        self.status = status


class Overflow(ProxyError):
    """A circuit breaker (DestinationRule connectionPool) is full: no slot and no room to wait."""

    status = 503
    flag = "UO"


class RateLimited(ProxyError):
    """A RateLimit's token bucket is empty (Envoy's local rate limit); `headers`: the x-ratelimit-* lines."""

    status = 429
    flag = "RL"

    def __init__(self, headers: bytes = b"") -> None:
        super().__init__("local_rate_limited")
        self.headers = headers


class Unauthenticated(ProxyError):
    """A JWT was present and did not verify (RequestAuthentication; Envoy's jwt_authn filter answers 401);
    `detail` is the body (e.g. `Jwt verification fails`), `headers` the www-authenticate line, `details` Envoy's
    response code details (`jwt_authn_access_denied{Jwt_verification_fails}`) for the access log."""

    status = 401
    newline = False  # Envoy's jwt_authn body as it sends it: `Jwt verification fails`

    def __init__(self, detail: str, headers: bytes = b"", details: str = "") -> None:
        super().__init__(detail)
        self.headers = headers
        self.details = details


class AudienceNotAllowed(Unauthenticated):
    """The token verified but none of its audiences is the rule's: Envoy's jwt_authn answers 403 (filter.cc)."""

    status = 403


class AccessDenied(ProxyError):
    """An AuthorizationPolicy denied the request (Envoy's RBAC filter: 403 `RBAC: access denied`). `policy`
    names the deciding policy for the access log (`ns[<ns>]-policy[<name>]-rule[<i>]`, Envoy's
    rbac_access_denied_matched_policy[...] detail; `none` when no ALLOW policy matched)."""

    status = 403
    newline = False  # Envoy's body, byte for byte: `RBAC: access denied` (content-length 19)

    def __init__(self, policy: str = "none") -> None:
        super().__init__("RBAC: access denied")
        self.policy = policy


class RetryBufferExceeded(ProxyError):
    """While waiting to retry, the request body outgrew the retry buffer: nothing can be resent (Envoy answers
    507 with details request_payload_exceeded_retry_buffer_limit and no response flag)."""

    status = 507


class LoopDetected(ProxyError):
    """The upstream address:port is this sidecar's own outbound listener (proxy/outbound/self_loop.py): the
    request would come back and go out again. 508 Loop Detected, flag LD (Isthmus's own: Envoy has none)."""

    status = 508
    flag = "LD"


class ConnectRefused(ProxyError):
    """A CONNECT to a mesh host's HTTP port: tunnelling it would skip the mesh's HTTP routing
    (proxy/outbound/connect_policy.py). 403, no flag (Envoy's HTTP listener would not tunnel it either)."""

    status = 403


class UnsupportedCoding(BadRequest):
    """A request Transfer-Encoding other than `chunked` (gzip, "gzip, chunked"...): Envoy's HTTP/1 codec
    answers 501 Not Implemented rather than drop a coding it cannot undo."""

    status = 501


class Overloaded(ProxyError):
    """The listener holds max_pending_head_bytes of incomplete request heads: this one is refused (Envoy's
    overload manager stop_accepting_requests action: 503, response flag OM)."""

    status = 503
    flag = "OM"
