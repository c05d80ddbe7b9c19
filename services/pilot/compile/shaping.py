"""An HTTP route's directResponse, redirect and rewrite in compiled form (used by the route generator).

Inputs have passed validation (services/pilot/validate/shaping.py). The direct response body travels
as bytes (`body.string` encoded UTF-8, `body.bytes` base64-decoded); an unset redirectCode is 301.
Header names are lower-cased (the proxy compares lower-case names).
"""

from __future__ import annotations

from proto import xds
from proto.networking import HeaderOperations, Headers, HTTPRoute
from services.pilot.validate.durations import parse_duration
from services.pilot.validate.values import body_bytes


def _ops(ops: HeaderOperations | None) -> xds.HeaderOperations | None:
    if ops is None or not (ops.set or ops.add or ops.remove):
        return None
    return xds.HeaderOperations(set={k.lower(): v for k, v in (ops.set or {}).items()},
                                add={k.lower(): v for k, v in (ops.add or {}).items()},
                                remove=[k.lower() for k in ops.remove or []])


def headers(given: Headers | None) -> xds.Headers | None:
    """Lower-cased header operations, or None when there are none."""
    if given is None:
        return None
    out = xds.Headers(request=_ops(given.request), response=_ops(given.response))
    return out if out.request is not None or out.response is not None else None


def mirrors(route: HTTPRoute, namespace: str, suffix: str) -> list[xds.MirrorPolicy]:
    """`mirror` (with `mirrorPercentage`, default 100) or `mirrors`, hosts resolved as destinations are."""
    from runtime.hostnames import fqdn

    given = []
    if route.mirror is not None:
        percent = route.mirror_percentage.value if route.mirror_percentage is not None else 100.0
        given.append((route.mirror, percent))
    for policy in route.mirrors or []:
        given.append((policy.destination, policy.percentage.value if policy.percentage is not None else 100.0))
    return [xds.MirrorPolicy(host=fqdn(d.host, namespace, suffix), subset=d.subset,
                             port=d.port.number if d.port else None, percent=percent)
            for d, percent in given if percent > 0]


def shaping(route: HTTPRoute) -> dict[str, object]:
    """HttpRule keyword arguments: direct_response, redirect, rewrite, headers, cors."""
    out: dict[str, object] = {}
    if route.headers is not None:
        out["headers"] = headers(route.headers)
    cors = route.cors_policy
    if cors is not None:
        origins = [xds.StringMatch(exact=o.exact, prefix=o.prefix, regex=o.regex) for o in cors.allow_origins or []]
        origins += [xds.StringMatch(exact=o) for o in cors.allow_origin or []]
        out["cors"] = xds.CorsPolicy(
            allow_origins=origins, allow_methods=list(cors.allow_methods or []),
            allow_headers=list(cors.allow_headers or []), expose_headers=list(cors.expose_headers or []),
            max_age_s=parse_duration(cors.max_age) // 1_000_000_000 if cors.max_age is not None else None,
            allow_credentials=bool(cors.allow_credentials))
    direct = route.direct_response
    if direct is not None:
        out["direct_response"] = xds.DirectResponse(status=direct.status, body=body_bytes(direct))
    redirect = route.redirect
    if redirect is not None:
        out["redirect"] = xds.Redirect(uri=redirect.uri or None, authority=redirect.authority or None,
                                       port=redirect.port, derive_port=redirect.derive_port or "",
                                       scheme=redirect.scheme or None, code=redirect.redirect_code or 301)
    rewrite = route.rewrite
    if rewrite is not None:
        regex = rewrite.uri_regex_rewrite
        out["rewrite"] = xds.Rewrite(uri=rewrite.uri or None, authority=rewrite.authority or None,
                                     regex=regex.match if regex is not None else None,
                                     regex_rewrite=regex.rewrite or "" if regex is not None else "")
    return out
