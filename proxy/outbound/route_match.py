"""Route matching, compiled once per RouteConfig: which rule of a host's routes a request takes.

Semantics follow Istio's translation to Envoy route matches:
- uri `exact` and `regex` match the path without its query string (Envoy `path` and `safe_regex`);
  uri `prefix` matches the beginning of the full `:path` (Envoy `prefix`), so `/a` matches `/a?x=1`;
- regexes match the whole value (RE2 full match in Envoy; `re.fullmatch` here), compiled once;
- header names are lower-case; several values of one header are joined with "," before matching
  (as Envoy does); a missing header never matches;
- `method` matches the request method, `port` the port the request was sent to, `scheme` "http" (the
  sidecar's outbound listener speaks plain HTTP), `authority` the Host header value as sent (Envoy's
  `:authority`, so it carries the port when the client wrote one);
- `ignoreUriCase` makes uri `exact` and `prefix` case-insensitive; `regex` stays case-sensitive (Istio);
- `queryParams` match the first value of each named parameter, undecoded; a StringMatch with no field
  (`key: {}`), like a header's, only requires the parameter (header) to be present;
- `withoutHeaders`: none of the listed header conditions may hold (a missing header holds none);
- `sourceLabels` must all be among the calling proxy's labels, `sourceNamespace` be its namespace;
- within a match every condition must hold; a rule with several matches needs any one of them; a rule
  without matches takes every request. The first rule that matches wins.
A rule picks one of its destinations by weight from a cumulative table (bisect), not per-request math.
"""

from __future__ import annotations

from proto.xds import RouteMatch, StringMatch
from proxy.core.request import NO_CALLER, Caller, RequestHead, header_value, query_value
from proxy.outbound.string_match import Matcher, string_matcher

SCHEME = "http"  # what a sidecar's outbound listener receives


def _headers(headers: dict[str, StringMatch]) -> tuple[tuple[bytes, Matcher], ...]:
    return tuple((name.lower().encode("latin-1"), string_matcher(sm, allow_presence=True))
                 for name, sm in headers.items())


class CompiledMatch:
    __slots__ = ("uri", "uri_full_path", "method", "headers", "port", "scheme", "authority", "query",
                 "without", "source_labels", "source_namespace")

    def __init__(self, match: RouteMatch) -> None:
        self.uri = string_matcher(match.uri, ignore_case=match.ignore_uri_case) if match.uri is not None else None
        self.uri_full_path = match.uri is not None and match.uri.prefix is not None
        self.method = string_matcher(match.method) if match.method is not None else None
        self.headers = _headers(match.headers)
        self.port = match.port
        self.scheme = string_matcher(match.scheme) if match.scheme is not None else None
        self.authority = string_matcher(match.authority) if match.authority is not None else None
        self.query = tuple((name, string_matcher(sm, allow_presence=True))
                           for name, sm in match.query_params.items())
        self.without = _headers(match.without_headers)
        self.source_labels = tuple(match.source_labels.items())
        self.source_namespace = match.source_namespace

    def matches(self, head: RequestHead, path: str, caller: Caller = NO_CALLER) -> bool:
        """`path`: head.path without its query string (computed once per request by the caller)."""
        if self.port is not None and head.port != self.port:
            return False
        if self.method is not None and not self.method(head.method):
            return False
        if self.uri is not None and not self.uri(head.path if self.uri_full_path else path):
            return False
        if self.scheme is not None and not self.scheme(SCHEME):
            return False
        if self.authority is not None:
            value = header_value(head, b"host")
            if value is None or not self.authority(value):
                return False
        for name, matcher in self.headers:
            value = header_value(head, name)
            if value is None or not matcher(value):
                return False
        for name, matcher in self.without:
            value = header_value(head, name)
            if value is not None and matcher(value):
                return False
        for qname, matcher in self.query:
            qvalue = query_value(head.path, qname)
            if qvalue is None or not matcher(qvalue):
                return False
        if self.source_labels:
            labels = caller.labels
            for key, want in self.source_labels:
                if labels.get(key) != want:
                    return False
        if self.source_namespace is not None and caller.namespace != self.source_namespace:
            return False
        return True
