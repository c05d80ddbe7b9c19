"""services/pilot/validate/shaping.py and compile/shaping.py: HTTPRoute directResponse, redirect, rewrite."""

from __future__ import annotations

import textwrap

import pytest

from proto import xds
from services.pilot.compile.shaping import shaping
from services.pilot.validate import decode_documents


def vs(rule: str):
    text = textwrap.dedent("""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: r, namespace: prod}
        spec:
          hosts: [reviews]
          http:
        """) + textwrap.indent(textwrap.dedent(rule), "  ")
    return decode_documents(text)


def errors_of(rule: str) -> list[tuple[str, str]]:
    return [(e.path, e.message) for e in vs(rule)[1]]


def test_direct_response_and_redirect_are_accepted_without_route_and_compiled():
    resources, errors, warnings = vs("""
        - match: [{uri: {exact: /teapot}}]
          directResponse: {status: 418, body: {string: "short and stout"}}
        - match: [{uri: {prefix: /old}}]
          redirect: {uri: /new, authority: other:8080, scheme: https, redirectCode: 308}
        - directResponse: {status: 200, body: {bytes: aGk=}}
        """)
    assert errors == [] and warnings == []
    rules = resources[0].spec.http
    assert shaping(rules[0]) == {"direct_response": xds.DirectResponse(status=418, body=b"short and stout")}
    assert shaping(rules[1]) == {"redirect": xds.Redirect(uri="/new", authority="other:8080", scheme="https", code=308)}
    assert shaping(rules[2])["direct_response"].body == b"hi"


def test_a_redirect_code_defaults_to_301():
    resources, errors, _ = vs("- redirect: {uri: /x}\n")
    assert errors == [] and shaping(resources[0].spec.http[0])["redirect"].code == 301


def test_a_rule_needs_a_route_a_redirect_or_a_direct_response():
    assert ("spec.http[0].route", "HTTP route, redirect or direct_response is required") in errors_of(
        "- match: [{uri: {prefix: /a}}]\n")


@pytest.mark.parametrize("rule, path, message", [
    ("- route: [{destination: {host: reviews}}]\n  redirect: {uri: /x}\n", "spec.http[0]",
     "HTTP route cannot contain both route and redirect"),
    ("- route: [{destination: {host: reviews}}]\n  directResponse: {status: 200}\n", "spec.http[0]",
     "HTTP route cannot contain both route and direct response"),
    ("- redirect: {uri: /x}\n  directResponse: {status: 200}\n", "spec.http[0]",
     "HTTP route cannot contain both redirect and direct response"),
    ("- redirect: {uri: /x}\n  rewrite: {uri: /y}\n", "spec.http[0]",
     "HTTP route rule cannot contain both rewrite and redirect"),
    ("- redirect: {uri: /x}\n  fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n", "spec.http[0]",
     "HTTP route cannot contain both fault and redirect"),
    ("- directResponse: {status: 200}\n  fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n",
     "spec.http[0]", "HTTP route cannot contain both fault and direct response"),
    ("- redirect: {redirectCode: 301}\n", "spec.http[0].redirect",
     "redirect must specify URI, authority, scheme, or port"),
    ("- redirect: {uri: /x, redirectCode: 200}\n", "spec.http[0].redirect.redirectCode",
     "200 is not a supported redirect code (301, 302, 303, 307 or 308)"),
    ("- redirect: {scheme: ftp}\n", "spec.http[0].redirect.scheme", "scheme `ftp` must be http or https"),
    ("- redirect: {port: 70000}\n", "spec.http[0].redirect.port", "port number 70000 must be in the range 1..65535"),
    ("- redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}\n", "spec.http[0].redirect",
     "only one of `port` or `derivePort` may be set"),
    ("- directResponse: {status: 99}\n", "spec.http[0].directResponse.status",
     "directResponse status 99 is not within 200..599"),
    ("- directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n", "spec.http[0].directResponse.body",
     "only one of `string` or `bytes` may be set"),
    ("- directResponse: {status: 200, body: {bytes: '%%%'}}\n", "spec.http[0].directResponse.body.bytes",
     "`bytes` must be base64"),
    ("- route: [{destination: {host: reviews}}]\n  rewrite: {}\n", "spec.http[0].rewrite",
     "rewrite must specify URI, UriRegexRewrite, or authority"),
    ("- route: [{destination: {host: reviews}}]\n  rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n",
     "spec.http[0].rewrite", "rewrite may only contain one of URI or UriRegexRewrite"),
    ("- route: [{destination: {host: reviews}}]\n  rewrite: {uriRegexRewrite: {match: a}}\n",
     "spec.http[0].rewrite.uriRegexRewrite", "UriRegexRewrite requires both Rewrite and Match fields to be specified"),
    ("- route: [{destination: {host: reviews}}]\n  rewrite: {uriRegexRewrite: {match: '^/(a)', rewrite: '/\\2'}}\n",
     "spec.http[0].rewrite.uriRegexRewrite.rewrite", "rewrite uses group \\2, but the regex has only 1 groups"),
])
def test_what_istio_rejects_is_rejected_with_its_path(rule, path, message):
    assert (path, message) in errors_of(rule)


def test_a_large_direct_response_body_is_rejected():
    big = "x" * (1024 * 1024 + 1)
    assert ("spec.http[0].directResponse.body",
            "large direct responses may impact control plane performance, must be less than 1MB") in errors_of(
        f"- directResponse: {{status: 200, body: {{string: {big}}}}}\n")


def test_rewrite_compiles_uri_regex_and_authority():
    resources, errors, _ = vs("""
        - route: [{destination: {host: reviews}}]
          rewrite: {uri: /v2, authority: ratings}
        - route: [{destination: {host: reviews}}]
          rewrite: {uriRegexRewrite: {match: '^/svc/(\\w+)', rewrite: '/\\1/api'}}
        """)
    assert errors == []
    assert shaping(resources[0].spec.http[0])["rewrite"] == xds.Rewrite(uri="/v2", authority="ratings")
    assert shaping(resources[0].spec.http[1])["rewrite"] == xds.Rewrite(regex="^/svc/(\\w+)", regex_rewrite="/\\1/api")


@pytest.mark.parametrize("field", ["corsPolicy: {allowOrigins: [{exact: x}], unmatchedPreflights: IGNORE}",
                                   "mirrorPercent: 5", "mirrors: [{destination: {host: reviews}, weight: 5}]"])
def test_traffic_shaping_not_implemented_yet_is_still_rejected(field):
    assert errors_of(f"- route: [{{destination: {{host: reviews}}}}]\n  {field}\n")


def test_headers_at_rule_and_destination_level_compile_lower_cased():
    resources, errors, warnings = vs("""
        - headers:
            request: {set: {X-Env: prod}, add: {X-Trace: a}, remove: [X-Debug]}
            response: {remove: [Server]}
          route:
          - destination: {host: reviews}
            headers: {response: {set: {X-Version: v1}}}
        """)
    assert errors == [] and warnings == []
    rule = resources[0].spec.http[0]
    assert shaping(rule)["headers"] == xds.Headers(
        request=xds.HeaderOperations(set={"x-env": "prod"}, add={"x-trace": "a"}, remove=["x-debug"]),
        response=xds.HeaderOperations(remove=["server"]))
    routes = compile_routes(resources)
    assert routes.rules[0].destinations[0].headers == xds.Headers(response=xds.HeaderOperations(set={"x-version": "v1"}))


@pytest.mark.parametrize("ops, path, message", [
    ("request: {set: {Host: x}}", "spec.http[0].headers.request.set[Host]",
     "invalid header Host: header is not allowed to be modified"),
    ("response: {remove: [':status']}", "spec.http[0].headers.response.remove[0]",
     "invalid header :status: header is not allowed to be modified"),
    ("request: {add: {'bad name': x}}", "spec.http[0].headers.request.add[bad name]",
     "header name bad name is not a valid header name"),
    ("request: {set: {x-ip: '%DOWNSTREAM_REMOTE_ADDRESS%'}}", "spec.http[0].headers.request.set[x-ip]",
     "header value `%DOWNSTREAM_REMOTE_ADDRESS%`: %VARIABLE% substitution is not supported yet (write a literal % "
     "as %%)"),
])
def test_invalid_header_operations_are_rejected_with_their_path(ops, path, message):
    assert (path, message) in errors_of(f"- route: [{{destination: {{host: reviews}}}}]\n  headers: {{{ops}}}\n")


def test_destination_headers_are_checked_with_the_destinations_path():
    assert ("spec.http[0].route[0].headers.request.remove[0]", "invalid header host: header is not allowed to be modified"
            ) in errors_of("- route: [{destination: {host: reviews}, headers: {request: {remove: [host]}}}]\n")


def compile_routes(resources):
    from services.pilot.compile import MeshState, Stored
    from services.pilot.compile.routes import build_routes

    state = MeshState.build({(r.kind, r.metadata.namespace, r.metadata.name): Stored(r, 1, 0) for r in resources})
    return build_routes(state)["reviews.prod.svc.cluster.local"]


def test_cors_policy_compiles_with_max_age_in_seconds_and_deprecated_allow_origin_as_exact():
    resources, errors, warnings = vs("""
        - route: [{destination: {host: reviews}}]
          corsPolicy:
            allowOrigins: [{exact: "https://a.example"}, {regex: "https://.*\\\\.b\\\\.example"}]
            allowOrigin: ["https://old.example"]
            allowMethods: [GET, POST]
            allowHeaders: [X-Custom]
            exposeHeaders: [X-Exposed]
            maxAge: 24h
            allowCredentials: true
        """)
    assert errors == [] and warnings == []
    cors = shaping(resources[0].spec.http[0])["cors"]
    assert cors.allow_origins[0] == xds.StringMatch(exact="https://a.example")
    assert cors.allow_origins[2] == xds.StringMatch(exact="https://old.example")
    assert cors.max_age_s == 86400 and cors.allow_credentials and cors.allow_methods == ["GET", "POST"]


@pytest.mark.parametrize("cors, path, message", [
    ("{allowOrigins: [{}]}", "spec.http[0].corsPolicy.allowOrigins[0]", "one of `exact`, `prefix` or `regex` is required"),
    ("{allowOrigins: [{exact: x}], allowMethods: [FETCH]}", "spec.http[0].corsPolicy.allowMethods[0]",
     "FETCH is not a supported HTTP method"),
    ("{allowOrigins: [{exact: x}], allowHeaders: ['a b']}", "spec.http[0].corsPolicy.allowHeaders[0]",
     "header name a b is not a valid header name"),
    ("{allowOrigins: [{exact: x}], maxAge: 1500ms}", "spec.http[0].corsPolicy.maxAge",
     "max_age duration is accurate only to seconds precision"),
])
def test_invalid_cors_policies_are_rejected_with_their_path(cors, path, message):
    assert (path, message) in errors_of(f"- route: [{{destination: {{host: reviews}}}}]\n  corsPolicy: {cors}\n")


def test_mirror_and_mirrors_compile_with_istios_default_of_every_request():
    from services.pilot.compile.shaping import mirrors

    resources, errors, warnings = vs("""
        - match: [{uri: {prefix: /a}}]
          route: [{destination: {host: reviews}}]
          mirror: {host: reviews-shadow, subset: v2, port: {number: 9080}}
          mirrorPercentage: {value: 12.5}
        - route: [{destination: {host: reviews}}]
          mirrors:
          - destination: {host: a.other}
          - destination: {host: b}
            percentage: {value: 0}
        """)
    assert errors == [] and warnings == []
    one, two = resources[0].spec.http
    suffix = "svc.cluster.local"
    assert mirrors(one, "prod", suffix) == [xds.MirrorPolicy(host="reviews-shadow.prod.svc.cluster.local", subset="v2",
                                                             port=9080, percent=12.5)]
    assert mirrors(two, "prod", suffix) == [xds.MirrorPolicy(host="a.other")]  # dotted: as written; 0%: dropped
    routes = compile_routes(resources)
    assert routes.rules[0].mirrors[0].percent == 12.5


@pytest.mark.parametrize("rule, path, message", [
    ("mirror: {host: a}\n  mirrors: [{destination: {host: b}}]", "spec.http[0]",
     "HTTP route cannot contain both mirror and mirrors"),
    ("mirror: {host: a}\n  mirrorPercentage: {value: 101}", "spec.http[0].mirrorPercentage.value",
     "percentage 101 is not in range 0..100"),
    ("mirrors: [{destination: {host: '*'}}]", "spec.http[0].mirrors[0].destination.host", "invalid destination host *"),
    ("mirrors: [{destination: {host: a}, percentage: {value: -1}}]", "spec.http[0].mirrors[0].percentage.value",
     "percentage -1 is not in range 0..100"),
])
def test_invalid_mirrors_are_rejected_with_their_path(rule, path, message):
    assert (path, message) in errors_of(f"- route: [{{destination: {{host: reviews}}}}]\n  {rule}\n")
