"""The request path as AuthorizationPolicy `paths` / `notPaths` read it, and the path matchers.

Istio normalizes the path before its RBAC filter sees it (istio.io/latest/docs/reference/config/security/
normalization/; the default, BASE, is Envoy's `normalize_path`): the query and fragment are never matched,
`%XX` of an unreserved character (ALPHA DIGIT - . _ ~) is decoded once, `\\` becomes `/`, and dot segments
are removed as RFC 3986 5.2.4 says; `%00` is refused (400). Matching is case-sensitive, whatever a
VirtualService's ignoreUriCase says (istio/istio#38139).

Envoy also rewrites the path it forwards; this sidecar forwards what the client sent, so the app may read it
another way than BASE does: path parameters (`/admin;x=1`, which Tomcat and Spring read as `/admin`, the
bypass of istio/istio#27409), repeated slashes (`//admin`), an encoded slash (`%2F`). So a path is read twice
when it has any of those: `istio` (BASE, exactly Istio's reading) and `strict` (also `%2F` / `%5C` decoded,
`;params` dropped from every segment, slashes merged: DECODE_AND_MERGE_SLASHES plus parameters), and a
request passes only if it passes under both (engine.py). The usual path (none of `% \\ ; // /.`) is one
reading, computed with a few `in` tests.

    readings(target) -> (istio, strict | None)       None: the same as istio
    path_matcher(values) -> (str -> bool)             Istio's `paths` values, path templates {*} / {**} included
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from proxy.core.errors import BadRequest
from proxy.core.request import path_without_query
from proxy.inbound.authz.strings import values_matcher

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = re.compile(r"%([0-9A-Fa-f]{2})")


def _decode(path: str, slashes: bool) -> str:
    """Decode %XX of unreserved characters (and of / and \\ when `slashes`), once; other escapes upper-cased."""
    if "%" not in path:
        return path

    def one(m: re.Match[str]) -> str:
        code = int(m.group(1), 16)
        if code == 0:
            raise BadRequest("%00 in the request path")
        if code in _UNRESERVED or (slashes and code in (0x2F, 0x5C)):
            return chr(code)
        return "%" + m.group(1).upper()

    return _HEX.sub(one, path)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path: `/a/./b/../c` -> `/a/c`; never above the root."""
    out: list[str] = []
    segments = path.split("/")
    last = len(segments) - 1
    for i, seg in enumerate(segments[1:], 1):
        if seg == ".":
            if i == last:
                out.append("")
        elif seg == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _strip_params(path: str) -> str:
    return "/".join(seg.split(";", 1)[0] for seg in path.split("/"))


def _merge_slashes(path: str) -> str:
    while "//" in path:
        path = path.replace("//", "/")
    return path


def readings(target: str) -> tuple[str, str | None]:
    """(Istio's BASE reading, the strict reading or None when it is the same) of an origin-form target.
    BadRequest for %00. Not origin-form (`*` of OPTIONS, an absolute URI): read as it is."""
    path = path_without_query(target)
    if not ("%" in path or "\\" in path or ";" in path or "//" in path or "/." in path):
        return path, None
    if not path.startswith(("/", "\\")):
        return path, None
    istio = remove_dot_segments(_decode(path, False).replace("\\", "/"))
    strict = remove_dot_segments(_merge_slashes(_strip_params(_decode(path, True).replace("\\", "/"))))
    return istio, (None if strict == istio else strict)


def _template(value: str) -> Callable[[str], bool]:
    """A path template (istio pilot/pkg/security/authz/matcher/template.go -> Envoy's uri_template):
    `{*}` one non-empty segment, `{**}` the rest of the path (zero or more segments, the last operator)."""
    parts = []
    for piece in re.split(r"(\{\*\*\}|\{\*\})", value):
        if piece == "{**}":
            parts.append(r"[^?#]*")
        elif piece == "{*}":
            parts.append(r"[^/?#]+")
        else:
            parts.append(re.escape(piece))
    pattern = re.compile("".join(parts))
    return lambda path: pattern.fullmatch(path) is not None


def path_matcher(values: Sequence[str]) -> Callable[[str], bool]:
    """`paths` values ORed: Istio's string syntax (`*` any non-empty path), or a path template."""
    templates = [_template(v) for v in values if "{*}" in v or "{**}" in v]
    plain = values_matcher([v for v in values if "{*}" not in v and "{**}" not in v])
    if not templates:
        return plain
    return lambda path: plain(path) or any(t(path) for t in templates)
