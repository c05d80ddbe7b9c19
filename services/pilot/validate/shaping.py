"""Checks of an HTTP route's `directResponse`, `redirect`, `rewrite`, `headers` (route and destination
level), `corsPolicy` and `mirror`/`mirrorPercentage`/`mirrors`, after Istio's validateHTTPRoute,
validateHTTPDirectResponse, validateHTTPRedirect,
validateHTTPRewrite, ValidateHTTPHeaderOperationName and validateCORSPolicy (pkg/config/validation).

A rule has `route`, `redirect` or `directResponse`, never two of them; a redirect excludes `fault` and
`rewrite`, a direct response excludes `fault`. Redirect codes are the five Envoy can send (301, 302, 303,
307, 308): Istio accepts another 3xx but silently sends 301, which Isthmus rejects instead.
Header names are RFC 7230 tokens; `host` and pseudo-headers may not be modified (Istio). Envoy's
`%VARIABLE%` substitutions in header values are not supported yet (a literal `%` is written `%%`).
"""

from __future__ import annotations

import binascii
import re

from proto.networking import (
    CorsPolicy, HeaderOperations, Headers, HTTPDirectResponse, HTTPRedirect, HTTPRewrite, HTTPRoute,
)
from services.pilot.validate.checks import (
    HEADER_NAME, check_destination, check_percent, check_regex, check_string_match,
)
from services.pilot.validate.durations import parse_duration
from services.pilot.validate.findings import Findings
from services.pilot.validate.values import body_bytes

REDIRECT_CODES = (301, 302, 303, 307, 308)
DERIVE_PORT = ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
MAX_BODY = 1024 * 1024  # Istio: direct response bodies must be under 1MB
_RE2_GROUP = re.compile(r"\\(.)", re.S)


def rewrite_groups(rewrite: str) -> tuple[int, str | None]:
    """(highest \\N group a RE2 rewrite string uses, problem or None)."""
    top = 0
    for m in _RE2_GROUP.finditer(rewrite):
        ch = m.group(1)
        if ch.isdigit():
            top = max(top, int(ch))
        elif ch != "\\":
            return top, f"invalid rewrite pattern: `\\{ch}` (use \\0..\\9 for groups, \\\\ for a backslash)"
    if rewrite.endswith("\\") and not rewrite.endswith("\\\\"):
        return top, "invalid rewrite pattern: a trailing backslash"
    return top, None


def _direct(direct: HTTPDirectResponse, path: str, f: Findings) -> None:
    if not 200 <= direct.status <= 599:
        f.error(f"{path}.status", f"directResponse status {direct.status} is not within 200..599")
    body = direct.body
    if body is None:
        return
    if body.string_ is not None and body.bytes_ is not None:
        f.error(f"{path}.body", "only one of `string` or `bytes` may be set")
        return
    try:
        size = len(body_bytes(direct))
    except (binascii.Error, ValueError):
        f.error(f"{path}.body.bytes", "`bytes` must be base64")
        return
    if size > MAX_BODY:
        f.error(f"{path}.body", "large direct responses may impact control plane performance, must be less than 1MB")


def _redirect(redirect: HTTPRedirect, path: str, f: Findings) -> None:
    if not (redirect.uri or redirect.authority or redirect.scheme or redirect.port is not None
            or redirect.derive_port is not None):
        f.error(path, "redirect must specify URI, authority, scheme, or port")
    if redirect.redirect_code is not None and redirect.redirect_code not in REDIRECT_CODES:
        f.error(f"{path}.redirectCode", f"{redirect.redirect_code} is not a supported redirect code "
                                        "(301, 302, 303, 307 or 308)")
    if redirect.scheme is not None and redirect.scheme not in ("http", "https"):
        f.error(f"{path}.scheme", f"scheme `{redirect.scheme}` must be http or https")
    if redirect.port is not None and redirect.derive_port is not None:
        f.error(path, "only one of `port` or `derivePort` may be set")
    if redirect.port is not None and not 1 <= redirect.port <= 65535:
        f.error(f"{path}.port", f"port number {redirect.port} must be in the range 1..65535")
    if redirect.derive_port is not None and redirect.derive_port not in DERIVE_PORT:
        f.error(f"{path}.derivePort", f"derivePort must be one of {', '.join(DERIVE_PORT)}")
    if redirect.uri is not None and redirect.uri and not redirect.uri.startswith("/"):
        f.error(f"{path}.uri", f"redirect uri `{redirect.uri}` must start with /")
    if redirect.authority is not None and (not redirect.authority or any(c in redirect.authority for c in "/ ?#")):
        f.error(f"{path}.authority", f"`{redirect.authority}` is not a valid authority")


def _rewrite(rewrite: HTTPRewrite, path: str, f: Findings) -> None:
    regex = rewrite.uri_regex_rewrite
    if rewrite.uri and regex is not None:
        f.error(path, "rewrite may only contain one of URI or UriRegexRewrite")
    if not rewrite.uri and regex is None and not rewrite.authority:
        f.error(path, "rewrite must specify URI, UriRegexRewrite, or authority")
    if rewrite.authority is not None and any(c in rewrite.authority for c in "/ ?#\r\n"):
        f.error(f"{path}.authority", f"`{rewrite.authority}` is not a valid authority")
    if regex is not None:
        rpath = f"{path}.uriRegexRewrite"
        if not regex.match or regex.rewrite is None:
            f.error(rpath, "UriRegexRewrite requires both Rewrite and Match fields to be specified")
            return
        errors = len(f.errors)
        check_regex(regex.match, f"{rpath}.match", f)
        top, problem = rewrite_groups(regex.rewrite)
        if problem:
            f.error(f"{rpath}.rewrite", problem)
        elif len(f.errors) == errors and top > re.compile(regex.match).groups:
            f.error(f"{rpath}.rewrite", f"rewrite uses group \\{top}, but the regex has only "
                                        f"{re.compile(regex.match).groups} groups")


def http_shaping(route: HTTPRoute, path: str, f: Findings) -> None:
    """Conflicts between route/redirect/directResponse, then each field's own checks."""
    if route.redirect is not None:
        if route.route:
            f.error(path, "HTTP route cannot contain both route and redirect")
        if route.fault is not None:
            f.error(path, "HTTP route cannot contain both fault and redirect")
        if route.rewrite is not None:
            f.error(path, "HTTP route rule cannot contain both rewrite and redirect")
        _redirect(route.redirect, f"{path}.redirect", f)
    elif not route.route and route.direct_response is None:
        f.error(f"{path}.route", "HTTP route, redirect or direct_response is required")
    if route.direct_response is not None:
        if route.route:
            f.error(path, "HTTP route cannot contain both route and direct response")
        if route.fault is not None:
            f.error(path, "HTTP route cannot contain both fault and direct response")
        if route.redirect is not None:
            f.error(path, "HTTP route cannot contain both redirect and direct response")
        _direct(route.direct_response, f"{path}.directResponse", f)
    if route.rewrite is not None:
        _rewrite(route.rewrite, f"{path}.rewrite", f)
    if route.headers is not None:
        check_headers(route.headers, f"{path}.headers", f)
    if route.cors_policy is not None:
        _cors(route.cors_policy, f"{path}.corsPolicy", f)
    _mirrors(route, path, f)
    for k, dest in enumerate(route.route or []):
        if dest.headers is not None:
            check_headers(dest.headers, f"{path}.route[{k}].headers", f)


def _header_name(name: str, path: str, f: Findings) -> None:
    if not name:
        f.error(path, "header name cannot be empty")
    elif name.startswith(":") or name.lower() == "host":
        f.error(path, f"invalid header {name}: header is not allowed to be modified")
    elif not HEADER_NAME.match(name):
        f.error(path, f"header name {name} is not a valid header name")


def _operations(ops: HeaderOperations, path: str, f: Findings) -> None:
    for field, values in (("set", ops.set), ("add", ops.add)):
        for name, value in (values or {}).items():
            _header_name(name, f"{path}.{field}[{name}]", f)
            if "%" in value.replace("%%", ""):
                f.error(f"{path}.{field}[{name}]", f"header value `{value}`: %VARIABLE% substitution is not "
                                                   "supported yet (write a literal % as %%)")
            elif any(c in value for c in "\r\n\0"):
                f.error(f"{path}.{field}[{name}]", "header value must not contain CR, LF or NUL")
    for k, name in enumerate(ops.remove or []):
        _header_name(name, f"{path}.remove[{k}]", f)


def check_headers(headers: Headers, path: str, f: Findings) -> None:
    if headers.request is not None:
        _operations(headers.request, f"{path}.request", f)
    if headers.response is not None:
        _operations(headers.response, f"{path}.response", f)


def _cors(cors: CorsPolicy, path: str, f: Findings) -> None:
    for k, origin in enumerate(cors.allow_origins or []):
        check_string_match(origin, f"{path}.allowOrigins[{k}]", f)
    for k, method in enumerate(cors.allow_methods or []):
        if method not in HTTP_METHODS:
            f.error(f"{path}.allowMethods[{k}]", f"{method} is not a supported HTTP method")
    for field, names in (("allowHeaders", cors.allow_headers), ("exposeHeaders", cors.expose_headers)):
        for k, name in enumerate(names or []):
            if not HEADER_NAME.match(name):
                f.error(f"{path}.{field}[{k}]", f"header name {name} is not a valid header name")
    if cors.max_age is not None:
        try:
            ns = parse_duration(cors.max_age)
        except ValueError as exc:
            f.error(f"{path}.maxAge", str(exc))
        else:
            if ns % 1_000_000_000:
                f.error(f"{path}.maxAge", "max_age duration is accurate only to seconds precision")
    if not cors.allow_origins and not cors.allow_origin:
        f.warn(path, "corsPolicy allows no origin: it has no effect")


def _mirrors(route: HTTPRoute, path: str, f: Findings) -> None:
    if route.mirror is not None and route.mirrors:
        f.error(path, "HTTP route cannot contain both mirror and mirrors")
    if route.mirror is not None:
        check_destination(route.mirror, f"{path}.mirror", f)
    if route.mirror_percentage is not None:
        check_percent(route.mirror_percentage.value, f"{path}.mirrorPercentage.value", f)
        if route.mirror is None:
            f.warn(f"{path}.mirrorPercentage", "mirrorPercentage without mirror has no effect")
    for k, policy in enumerate(route.mirrors or []):
        check_destination(policy.destination, f"{path}.mirrors[{k}].destination", f)
        if policy.percentage is not None:
            check_percent(policy.percentage.value, f"{path}.mirrors[{k}].percentage.value", f)
    if (route.mirror is not None or route.mirrors) and not route.route:
        f.warn(path, "mirroring has no effect on a redirect or directResponse rule")
