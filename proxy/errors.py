"""Typed failures of the data plane, mapped to HTTP responses in one place (proxy/http/rescue.py).

    ProxyError
    ├── BadRequest            400  DPE  downstream sent something we cannot parse
    │   ├── HeadersTooLarge   431  DPE  request head over max_head_bytes or max_headers (proxy/http/limits.py)
    │   └── UriTooLong        414  DPE  request target over max_url_bytes
    ├── RequestTimeout        408  -    the request head or body did not arrive in time
    ├── StreamIdleTimeout     408  SI   no byte either way for stream_idle_timeout
    ├── UpstreamProtocolError 502  UPE  the upstream's response is malformed or over the response limits
    ├── NoRoute               404  NR   no route or service for the requested host
    ├── NoHealthyUpstream     503  UH   the cluster has no healthy endpoint
    ├── UpstreamConnectError  503  UF   connecting to the chosen endpoint failed
    ├── UpstreamReset         503  UC   the upstream closed or reset mid-exchange
    ├── UpstreamTimeout       504  UT   the upstream did not answer in time
    ├── Overflow              503  UO   the cluster's circuit breaker is full (connectionPool)
    ├── RateLimited           429  RL   a RateLimit's token bucket is empty (proxy/inbound/ratelimit.py)
    └── FaultAbort            any  FI   a configured fault injection aborted the request

The flag is Envoy's response flag, so access logs read the way Istio users expect.
"""

from __future__ import annotations


class ProxyError(Exception):
    status: int = 500
    flag: str = "-"
    headers: bytes = b""  # extra response header lines ("name: value\r\n" each), written by rescue

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


class UpstreamConnectError(ProxyError):
    status = 503
    flag = "UF"


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
