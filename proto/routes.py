"""Compiled routing pushed by pilot: the rules of one host's VirtualService (RouteConfig), as sidecars and
gateways (proto/gateway_xds.py) apply them. Re-exported by proto/xds.py, where the rest of a push lives."""

from __future__ import annotations

from proto.base import Message


class StringMatch(Message):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class RouteMatch(Message):
    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: dict[str, StringMatch] = {}  # lower-case header names; a match with no field: header present
    port: int | None = None
    scheme: StringMatch | None = None
    authority: StringMatch | None = None  # the Host header value, as sent
    query_params: dict[str, StringMatch] = {}  # a match with no field: parameter present
    without_headers: dict[str, StringMatch] = {}  # none of these may match
    ignore_uri_case: bool = False  # uri exact and prefix only, as Istio
    source_labels: dict[str, str] = {}  # the calling proxy's labels must include these
    source_namespace: str | None = None


class HeaderOperations(Message):
    """Istio's HeaderOperations with lower-case names: remove, then set (replaces), then add (appends)."""

    set: dict[str, str] = {}
    add: dict[str, str] = {}
    remove: list[str] = []


class Headers(Message):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class WeightedDestination(Message):
    host: str  # FQDN of the destination service
    subset: str | None = None
    port: int | None = None  # None: the port the request was sent to
    weight: int = 100
    headers: Headers | None = None  # applied before the rule's own
    # Pilot's word that no DestinationRule defines `subset` (or no cluster exists for `host`) at this route's
    # version: the proxy applies the route without waiting for it and answers what picks this destination
    # with 503 NC, as Envoy does for a route to a cluster CDS never sent (proxy/control/config_state.py).
    undefined: bool = False


class RetryPolicy(Message):
    attempts: int = 0  # retries after the first try; 0: retries disabled
    per_try_timeout_ms: int | None = None
    retry_on: list[str] = []  # Envoy retry_on conditions (validated by pilot)
    status_codes: list[int] = []  # for retriable-status-codes
    backoff_ms: int = 0  # base interval of the jittered exponential back-off; 0: Envoy's 25 ms
    ignore_previous_hosts: bool = True  # retries prefer endpoints not tried yet
    remote_localities: bool = False  # retries move on to the next locality priority (localityLbSetting)


# Istio's policy for a route whose VirtualService sets no `retries` (and for services without one):
# pilot/pkg/networking/core/route/retry DefaultPolicy.
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_RETRY = RetryPolicy(attempts=2, retry_on=list(DEFAULT_RETRY_ON), status_codes=[503])


class FaultPolicy(Message):
    delay_ms: int = 0
    delay_percent: float = 0.0  # 0..100
    abort_status: int = 0  # 0: no abort
    abort_percent: float = 0.0


class DirectResponse(Message):
    status: int
    body: bytes = b""


class Redirect(Message):
    uri: str | None = None  # replaces the path; the query is kept unless it carries its own
    authority: str | None = None
    port: int | None = None
    derive_port: str = ""  # "", FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT
    scheme: str | None = None
    code: int = 301


class Rewrite(Message):
    uri: str | None = None  # replaces the matched uri prefix (or the whole path for exact/regex matches)
    regex: str | None = None  # uriRegexRewrite.match, with:
    regex_rewrite: str = ""  # its replacement, RE2 style (\1 for group 1)
    authority: str | None = None


class CorsPolicy(Message):
    allow_origins: list[StringMatch] = []
    allow_methods: list[str] = []
    allow_headers: list[str] = []
    expose_headers: list[str] = []
    max_age_s: int | None = None
    allow_credentials: bool = False


class MirrorPolicy(Message):
    host: str  # FQDN of the mirror service
    subset: str | None = None
    port: int | None = None
    percent: float = 100.0


class HttpRule(Message):
    name: str = ""
    matches: list[RouteMatch] = []  # empty: matches every request
    destinations: list[WeightedDestination] = []
    timeout_ms: int | None = None  # None: no route timeout
    retry: RetryPolicy | None = None  # None: Istio's default policy (proxy/outbound/retry.py)
    fault: FaultPolicy | None = None
    direct_response: DirectResponse | None = None  # answered by the sidecar; no destinations
    redirect: Redirect | None = None  # answered by the sidecar; no destinations
    rewrite: Rewrite | None = None
    headers: Headers | None = None
    cors: CorsPolicy | None = None
    mirrors: list[MirrorPolicy] = []  # a copy of each request to these, its response dropped


class TcpMatch(Message):
    port: int | None = None  # the service port the connection was opened to
    source_labels: dict[str, str] = {}
    source_namespace: str | None = None


class TcpRule(Message):
    """A VirtualService tcp route: connections (not requests) are split by weight; no subset of the
    request is looked at, so only the port and the caller can be matched."""

    matches: list[TcpMatch] = []  # empty: every connection
    destinations: list[WeightedDestination] = []


class RouteConfig(Message):
    """Routing for one host (FQDN), compiled from the VirtualService that claims it."""

    host: str
    version: int
    source: str = ""  # "namespace/name" of the VirtualService
    rules: list[HttpRule] = []
    tcp: list[TcpRule] = []  # opaque TCP connections to the host (proxy/tcp)
