"""services/pilot/validate/authorization_policy.py: Istio's rules for AuthorizationPolicy, with paths."""

from __future__ import annotations

import pytest

from tests.pilot.validate.documents import by_path, decode

ISTIO_EXAMPLES = {
    "deny all (spec: {})": "spec: {}",
    "allow nothing but GET on a path for one principal": """
spec:
  selector: {matchLabels: {app: httpbin, version: v1}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/sleep"]}
    - source: {namespaces: ["dev"]}
    to:
    - operation: {methods: ["GET"], paths: ["/info*", "*/admin", "*", "/exact"]}
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: request.auth.claims[groups][admin]
      values: ["true"]
    - key: request.headers[version]
      notValues: ["v1"]""",
    "allow all ([{}])": "spec: {rules: [{}]}",
    "tcp: ports and namespaces": """
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: [foo], ipBlocks: ["10.0.0.0/8", "::1", "2001:db8::/32"]}}]
    to: [{operation: {ports: ["9000", 9001, "0", "65535"]}}]
    when:
    - key: destination.port
      values: ["9000"]
    - key: source.ip
      values: ["10.1.2.3", "10.0.0.0/16"]""",
    "audit": """
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [GET], notPaths: [/healthz]}}]}]""",
}


def _ap(spec: str, ns: str = "foo") -> str:
    return f"""
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: {ns}}}
{spec}
"""


@pytest.mark.parametrize("name", ISTIO_EXAMPLES)
def test_istio_style_policies_apply_unchanged(name):
    resources, errors, _ = decode(_ap(ISTIO_EXAMPLES[name]))
    assert errors == [] and len(resources) == 1, [(e.path, e.message) for e in errors]


def test_rules_are_kept_as_written():
    (resource,), _, _ = decode(_ap(ISTIO_EXAMPLES["tcp: ports and namespaces"]))
    rule = resource.spec.rules[0]
    assert rule.to[0].operation.ports == ["9000", 9001, "0", "65535"]
    assert rule.from_[0].source.not_namespaces == ["foo"] and rule.when[0].key == "destination.port"


@pytest.mark.parametrize("spec, path, message", [
    ("spec: {action: CUSTOM, provider: {name: x}, rules: [{}]}", "spec.action",
     "CUSTOM (external authorization) is not supported by Isthmus"),
    ("spec: {action: DENY, provider: {name: x}, rules: [{}]}", "spec.provider", "not supported by Isthmus"),
    ("spec: {action: allow}", "spec.action", "unknown action `allow`"),
    ("spec: {action: DENY}", "spec.rules", "DENY action without `rules` is meaningless"),
    ("spec: {action: DENY, rules: []}", "spec.rules", "DENY action without `rules` is meaningless"),
    ("spec: {targetRef: {kind: Gateway, name: gw}}", "spec.targetRef", "a `selector.matchLabels` picks"),
    ("spec: {targetRefs: [{kind: Gateway, name: gw}]}", "spec.targetRefs", "not supported by Isthmus"),
    ("spec: {selector: {matchLabels: {app: 'a*'}}}", "spec.selector.matchLabels[app]", "wildcard"),
    ("spec: {rules: [{from: []}]}", "spec.rules[0].from", "`from` must not be empty"),
    ("spec: {rules: [{to: []}]}", "spec.rules[0].to", "`to` must not be empty"),
    ("spec: {rules: [{from: [{}]}]}", "spec.rules[0].from[0].source", "must not be nil"),
    ("spec: {rules: [{from: [{source: {}}]}]}", "spec.rules[0].from[0].source", "must not be empty"),
    ("spec: {rules: [{from: [{source: {principals: []}}]}]}", "spec.rules[0].from[0].source", "must not be empty"),
    ("spec: {rules: [{to: [{}]}]}", "spec.rules[0].to[0].operation", "must not be nil"),
    ("spec: {rules: [{to: [{operation: {}}]}]}", "spec.rules[0].to[0].operation", "must not be empty"),
    ("spec: {rules: [{from: [{source: {namespaces: [a]}}, {source: {requestPrincipals: [a, '']}}]}]}",
     "spec.rules[0].from[1].source.requestPrincipals[1]", "empty value not allowed"),
    ("spec: {rules: [{from: [{source: {ipBlocks: [1.2.3.4, 10.0.0.0/8, 10.0.0.0/33]}}]}]}",
     "spec.rules[0].from[0].source.ipBlocks[2]", "bad CIDR range `10.0.0.0/33`"),
    ("spec: {rules: [{from: [{source: {notRemoteIpBlocks: [1.2.3.256]}}]}]}",
     "spec.rules[0].from[0].source.notRemoteIpBlocks[0]", "bad IP address `1.2.3.256`"),
    ("spec: {rules: [{to: [{operation: {ports: ['65536']}}]}]}", "spec.rules[0].to[0].operation.ports[0]",
     "bad port `65536`"),
    ("spec: {rules: [{to: [{operation: {notPorts: [-1]}}]}]}", "spec.rules[0].to[0].operation.notPorts[0]",
     "bad port `-1`"),
    ("spec: {rules: [{to: [{operation: {ports: ['8o']}}]}]}", "spec.rules[0].to[0].operation.ports[0]", "bad port"),
    ("spec: {rules: [{to: [{operation: {paths: ['/a*b']}}]}]}", "spec.rules[0].to[0].operation.paths[0]",
     "a `*` is allowed only at the start"),
    ("spec: {rules: [{to: [{operation: {paths: ['**']}}]}]}", "spec.rules[0].to[0].operation.paths[0]",
     "a `*` is allowed only at the start"),
    ("spec: {rules: [{to: [{operation: {notPaths: ['api/v1']}}]}]}", "spec.rules[0].to[0].operation.notPaths[0]",
     "does not start with `/`"),
    ("spec: {rules: [{to: [{operation: {paths: ['/api/{**}/x']}}]}]}", "spec.rules[0].to[0].operation.paths[0]",
     "`{**}` must be the last segment"),
    ("spec: {rules: [{to: [{operation: {paths: ['/api/v{*}']}}]}]}", "spec.rules[0].to[0].operation.paths[0]",
     "each operator is a whole segment"),
    ("spec: {rules: [{to: [{operation: {paths: ['/api/{*}/x*']}}]}]}", "spec.rules[0].to[0].operation.paths[0]",
     "each operator is a whole segment"),
    ("spec: {rules: [{to: [{operation: {notPaths: ['{*}/x']}}]}]}", "spec.rules[0].to[0].operation.notPaths[0]",
     "must start with `/`"),
    ("spec: {rules: [{to: [{operation: {methods: ['']}}]}]}", "spec.rules[0].to[0].operation.methods[0]",
     "empty value"),
    ("spec: {rules: [{when: [{key: '', values: [a]}]}]}", "spec.rules[0].when[0].key", "must not be empty"),
    ("spec: {rules: [{when: [{key: source.ip}]}]}", "spec.rules[0].when[0]",
     "at least one of `values` or `notValues`"),
    ("spec: {rules: [{when: [{key: source.ip, values: []}]}]}", "spec.rules[0].when[0]", "at least one of"),
    ("spec: {rules: [{when: [{key: request.path, values: [a]}]}]}", "spec.rules[0].when[0].key",
     "unknown attribute `request.path`; supported keys: request.headers[...], source.ip"),
    ("spec: {rules: [{when: [{key: 'request.headers[]', values: [a]}]}]}", "spec.rules[0].when[0].key",
     "should have format a[b]"),
    ("spec: {rules: [{when: [{key: 'request.headers', values: [a]}]}]}", "spec.rules[0].when[0].key",
     "should have format a[b]"),
    ("spec: {rules: [{when: [{key: 'request.headers[a][b]', values: [a]}]}]}", "spec.rules[0].when[0].key",
     "only request.auth.claims takes nested names"),
    # Envoy's pseudo-headers: an HTTP/1 head has none, so a DENY on one would let everything through (attack19)
    ("spec: {action: DENY, rules: [{when: [{key: 'request.headers[:authority]', values: [evil]}]}]}",
     "spec.rules[0].when[0].key", "pseudo-headers are not supported in request.headers"),
    ("spec: {rules: [{when: [{key: 'request.headers[:path]', values: [/a]}]}]}", "spec.rules[0].when[0].key",
     "pseudo-headers are not supported"),
    ("spec: {rules: [{when: [{key: 'request.auth.claims[a]]', values: [a]}]}]}", "spec.rules[0].when[0].key",
     "should have format a[b]"),
    ("spec: {rules: [{when: [{key: 'experimental.envoy.filters.a.b[c]', values: [a]}]}]}",
     "spec.rules[0].when[0].key", "the Isthmus sidecar does not have"),
    ("spec: {rules: [{when: [{key: source.serviceAccount, values: [a]}]}]}", "spec.rules[0].when[0].key",
     "not supported by Isthmus yet"),
    ("spec: {rules: [{when: [{key: destination.namespace, values: [a]}]}]}", "spec.rules[0].when[0].key",
     "replaced by the metadata.namespace"),
    ("spec: {rules: [{when: [{key: 'destination.labels[app]', values: [a]}]}]}", "spec.rules[0].when[0].key",
     "replaced by the workload selector"),
    ("spec: {rules: [{when: [{key: remote.ip, values: [1.2.3.4, x]}]}]}", "spec.rules[0].when[0].values[1]",
     "bad IP address `x`"),
    ("spec: {rules: [{when: [{key: destination.ip, notValues: [10.0.0.0/40]}]}]}",
     "spec.rules[0].when[0].notValues[0]", "bad CIDR range"),
    ("spec: {rules: [{when: [{key: destination.port, values: ['99999']}]}]}", "spec.rules[0].when[0].values[0]",
     "bad port `99999`"),
    ("spec: {rules: [{when: [{key: connection.sni, values: ['']}]}]}", "spec.rules[0].when[0].values[0]",
     "empty value"),
    ("spec: {rules: [{from: [{source: {serviceAccounts: [a]}}]}]}", "spec.rules[0].from[0].source.serviceAccounts",
     "not supported"),
])
def test_istios_refusals_and_ours_name_the_path(spec, path, message):
    resources, errors, _ = decode(_ap(spec))
    assert resources == []
    assert message in by_path(errors, path).message


def test_every_problem_of_a_policy_is_reported_at_once():
    _, errors, _ = decode(_ap("spec: {action: CUSTOM, rules: [{from: []}, {to: [{operation: {ports: [x]}}]}]}"))
    assert {e.path for e in errors} >= {"spec.action", "spec.rules[0].from", "spec.rules[1].to[0].operation.ports[0]"}


def test_a_deny_rule_of_http_attributes_only_warns_that_it_denies_tcp():
    _, errors, warnings = decode(_ap("spec: {action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}"))
    assert errors == [] and "deny all traffic to TCP ports" in by_path(warnings, "spec.rules[0]").message
    _, errors, warnings = decode(_ap("spec: {action: DENY, rules: [{to: [{operation: {ports: ['80']}}]}]}"))
    assert errors == [] and warnings == []


def test_rules_are_bounded_at_the_crds_512_and_so_is_from():
    rules = ", ".join(["{}"] * 512)
    assert decode(_ap(f"spec: {{rules: [{rules}]}}"))[1] == []
    _, errors, _ = decode(_ap(f"spec: {{rules: [{rules}, {{}}]}}"))
    assert "513 rules, more than 512" in by_path(errors, "spec.rules").message
    froms = ", ".join(["{source: {namespaces: [a]}}"] * 512)
    assert decode(_ap(f"spec: {{rules: [{{from: [{froms}]}}]}}"))[1] == []
    _, errors, _ = decode(_ap(f"spec: {{rules: [{{from: [{froms}, {{source: {{namespaces: [b]}}}}]}}]}}"))
    assert "513 entries, more than 512" in by_path(errors, "spec.rules[0].from").message


def test_the_alias_ap_names_the_kind():
    from proto.resources import kind_from_alias
    assert kind_from_alias("ap") == "AuthorizationPolicy" and kind_from_alias("ra") == "RequestAuthentication"


def test_path_templates_apply_and_the_sidecar_matches_them_by_segment():
    # Istio's paths templates: `{*}` one segment, `{**}` the rest of the path (as its last segment)
    resources, errors, _ = decode(_ap("spec: {rules: [{to: [{operation: {paths: ['/api/{*}/books', '/files/{**}'], "
                                      "notPaths: ['/{*}/admin']}}]}]}"))
    assert errors == [] and len(resources) == 1
    from proxy.inbound.authz.paths import path_matcher
    match = path_matcher(["/api/{*}/books", "/files/{**}"])
    assert match("/api/v1/books") and match("/files/a/b/c") and match("/files/")
    assert not match("/api/v1/v2/books") and not match("/api//books") and not match("/filesx/a")
