"""proxy/inbound/authz/paths.py: the path readings (Istio's BASE and the strict one) and path matching."""

from __future__ import annotations

import pytest

from proxy.core.errors import BadRequest
from proxy.inbound.authz.paths import path_matcher, readings, remove_dot_segments


@pytest.mark.parametrize("target, istio, strict", [
    ("/admin", "/admin", None),
    ("/admin?x=/public#frag", "/admin", None),  # query and fragment are never matched
    ("/a/../admin", "/admin", None),  # RFC 3986 dot segments
    ("/a/./b/.", "/a/b/", None),
    ("/../../admin", "/admin", None),  # never above the root
    ("/%2e%2e/admin", "/admin", None),  # unreserved characters decoded once, then dot segments
    ("/%61dmin", "/admin", None),
    ("/%2561dmin", "/%2561dmin", None),  # no double decoding
    ("\\admin", "/admin", None),  # backslash is a slash (BASE)
    ("/a%2fb", "/a%2Fb", "/a/b"),  # Istio keeps %2F (BASE); the strict reading decodes it
    ("/x%2F..%2Fadmin", "/x%2F..%2Fadmin", "/admin"),
    ("//admin", "//admin", "/admin"),  # BASE keeps repeated slashes; strict merges them
    ("/admin;x=1", "/admin;x=1", "/admin"),  # path parameters: dropped by the strict reading
    ("/public/..;/admin", "/public/..;/admin", "/admin"),  # Tomcat's ..; is .. once its parameter goes
    ("/ADMIN", "/ADMIN", None),  # never case-folded (istio/istio#38139)
])
def test_readings(target, istio, strict):
    assert readings(target) == (istio, strict)


def test_a_nul_byte_is_a_bad_request_as_in_istio():
    with pytest.raises(BadRequest):
        readings("/a%00b")


def test_remove_dot_segments_follows_rfc_3986():
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"
    assert remove_dot_segments("/mid/content=5/../6") == "/mid/6"
    assert remove_dot_segments("/a/b/..") == "/a/"


def test_path_values_and_templates():
    match = path_matcher(["/exact", "/api/*", "*.png", "/users/{*}/profile", "/files/{**}"])
    assert match("/exact") and match("/api/v1") and match("/img/x.png")
    assert match("/users/alice/profile") and not match("/users/a/b/profile") and not match("/users//profile")
    assert match("/files/") and match("/files/a/b/c") and not match("/filesx")
    assert not match("/Exact")
    assert path_matcher(["*"])("/")
