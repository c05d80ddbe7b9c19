"""The request as every stage sees it: its parsed head, the calling workload, and path helpers.

Neutral: imports nothing of the proxy, so every stage (outbound, inbound, http) can depend on it.
"""

from __future__ import annotations

from proxy.core.downstream import PLAINTEXT, Downstream, RequestAuth


class RequestHead:
    """The parts of a downstream request that routing looks at.

    `host` is the host as the client wrote it (absolute-form URL or Host header), without the port;
    `port` is the explicit port or 80; `path` is origin-form (`/x?y=1`). Header names are lower-case; values
    have neither leading nor trailing whitespace (RFC 9110 5.5): llhttp drops the leading, the listener the
    trailing (proxy/http/server.py on_header), so every reader sees `x: yes ` as `yes`, as Envoy and the app do.
    """

    __slots__ = ("method", "host", "port", "path", "headers", "client", "set_cookie", "downstream", "auth",
                 "details", "edited", "trace", "peer")

    # A head the listener noted header values in for an inbound stage is a PickedHead; any other reads as not
    # picked (a class attribute: no store, and no slot to free, on every head that is not).
    picked_by: frozenset[bytes] | None = None

    def __init__(self, method: str, host: str, port: int, path: str, headers: list[tuple[bytes, bytes]],
                 client: str = "", downstream: Downstream = PLAINTEXT) -> None:
        self.method = method
        self.host = host
        self.port = port
        self.path = path
        self.headers = headers
        self.client = client  # the downstream peer's IP address ("" if unknown): consistentHash useSourceIp
        self.set_cookie: bytes | None = None  # a hash cookie the balancer generated, for the response
        self.downstream = downstream  # the inbound connection's caller (one object per connection)
        self.auth: RequestAuth | None = None  # the verified JWT, set by the authentication stage
        # Envoy's %RESPONSE_CODE_DETAILS% for the access log when a stage has some to give ("" when none), e.g.
        # authorization's rbac_access_denied_matched_policy[...] (proxy/inbound/authz/engine.py)
        self.details = ""
        # An inbound stage changed `headers` or `path` (JWT: token removed, claims added): the exchange sends
        # them as changed, not the head as received (proxy/http/exchange_connect.py start).
        self.edited = False
        # The request's trace context once the tracing stage read or made it (proxy/telemetry/, None: not traced)
        self.trace: object = None
        # The calling sidecar's workload (proto.observations.PeerMetadata) when it said so (inbound), else None
        self.peer: object = None

    # The listener makes its heads as `object.__new__(RequestHead)` then `init(...)`: calling the class goes
    # through type_call and slot_tp_init, which pack the arguments into a tuple and a malloc'ed array (CPython 3.11).
    init = __init__

    def header(self, name: bytes) -> bytes | None:
        """First value of a lower-case header name, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class PickedHead(RequestHead):
    """A RequestHead with the values of the header names an inbound stage reads (HeaderPicks), noted by the
    listener in its own walk over the head: `picked`, each name's values joined with ",", as header_value reads
    them (None: none came); `picked_by`, the names they are of (the listener's HeaderPicks.names when it parsed
    the head). A reader wanting other names (a push changed them since) reads `headers`. `authority`: the Host
    header's value, the one a listener's head has (it refuses a second; an absolute-form target's replaces it)."""

    __slots__ = ("picked", "picked_by", "authority")


class Caller:
    """The workload whose proxy routes the request (sourceLabels, sourceNamespace)."""

    __slots__ = ("labels", "namespace")

    def __init__(self, labels: dict[str, str] | None = None, namespace: str = "") -> None:
        self.labels = labels or {}
        self.namespace = namespace


NO_CALLER = Caller()


class HeaderPicks:
    """Header names an inbound stage reads on every request (authorization's header conditions), which the
    listener notes in the walk it makes over every head anyway (proxy/http/server.py) into RequestHead.picked,
    so the stage does not walk the headers a second time. The stage sets the names (`pick`), the listener binds
    the names it notes for itself (`bind`): a name among those is not picked, and then none is (`names` None),
    so a reader finds every name it asked for in `picked` or reads `headers`."""

    __slots__ = ("base", "wanted", "names", "noted")

    def __init__(self) -> None:
        self.base: frozenset[bytes] = frozenset()  # what the listener notes for itself
        self.wanted: frozenset[bytes] | None = None  # what the stage asked for
        self.names: frozenset[bytes] | None = None  # what the listener picks now (the `wanted` object) or None
        self.noted = self.base  # every name the listener's walk stops at: base | names

    def bind(self, base: frozenset[bytes]) -> None:
        self.base = base
        self.pick(self.wanted)

    def pick(self, names: frozenset[bytes] | None) -> None:
        self.wanted = names
        if names and self.base and names.isdisjoint(self.base):
            self.names, self.noted = names, self.base | names
        else:
            self.names, self.noted = None, self.base


def header_value(head: RequestHead, name: bytes) -> str | None:
    """Every value of a lower-case header name joined with "," (Envoy's HeaderUtility::getAllOfHeaderAsString),
    or None: what VirtualService header matches and AuthorizationPolicy request.headers[...] read."""
    found: bytes | None = None
    for key, value in head.headers:
        if key == name:
            found = value if found is None else found + b"," + value
    return None if found is None else found.decode("latin-1")


def path_without_query(path: str) -> str:
    cut = path.find("?")
    if cut >= 0:
        path = path[:cut]
    cut = path.find("#")
    return path if cut < 0 else path[:cut]


def query_value(path: str, name: str) -> str | None:
    """First value of query parameter `name` in an origin-form path, undecoded; "" for a bare `?name`."""
    cut = path.find("?")
    if cut < 0:
        return None
    query = path[cut + 1:]
    frag = query.find("#")
    if frag >= 0:
        query = query[:frag]
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None
