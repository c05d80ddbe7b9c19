"""RateLimit (isthmus.io/v1alpha1): decoding with paths, and compiling onto the selected services' clusters."""

from __future__ import annotations

from proto.registry import Workload
from proto.resources import KINDS, kind_from_alias
from services.pilot.compile.diff import compile_mesh
from services.pilot.compile.state import MeshState
from services.pilot.validate import decode_documents

RL = """apiVersion: isthmus.io/v1alpha1
kind: RateLimit
metadata: {name: reviews, namespace: ns}
spec:
  selector:
    matchLabels: {app: reviews}
  match:
  - uri: {prefix: /api}
    method: {exact: GET}
    headers: {x-user: {exact: jason}}
  tokenBucket: {maxTokens: 5, tokensPerFill: 2, fillInterval: 30s}
"""


def test_kind_and_aliases() -> None:
    assert KINDS["RateLimit"].group == "isthmus.io" and KINDS["RateLimit"].versions == ("v1alpha1",)
    assert {kind_from_alias(a) for a in ("rl", "ratelimit", "RateLimits")} == {"RateLimit"}


def test_errors_have_paths() -> None:
    bad = RL.replace("maxTokens: 5", "maxTokens: 0").replace("30s", "thirty").replace("x-user", "bad header")
    _, errors, _ = decode_documents(bad)
    assert {e.path for e in errors} == {"spec.tokenBucket.maxTokens", "spec.tokenBucket.fillInterval",
                                        "spec.match[0].headers[bad header]"}
    _, errors, _ = decode_documents(RL.replace("tokenBucket", "bucket"))
    assert errors and errors[0].path.startswith("spec.")


def test_compiles_onto_the_selected_workloads_service_only() -> None:
    resources, errors, _ = decode_documents(RL)
    assert not errors
    workloads = {
        "r1": (Workload(id="r1", service="reviews", namespace="ns", labels={"app": "reviews"}), 3),
        "f1": (Workload(id="f1", service="frontend", namespace="ns", labels={"app": "frontend"}), 4),
        "o1": (Workload(id="o1", service="reviews", namespace="other", labels={"app": "reviews"}), 5),
    }
    state = MeshState.build({("RateLimit", "ns", "reviews"): (resources[0], 7)}, workloads)
    clusters, _ = compile_mesh(state)
    reviews = clusters["reviews.ns.svc.cluster.local"]
    assert reviews.version == 7
    [rule] = reviews.ratelimits
    assert (rule.name, rule.selector, rule.max_tokens, rule.tokens_per_fill, rule.fill_interval_ms) == (
        "ns/reviews", {"app": "reviews"}, 5, 2, 30_000)
    assert rule.matches[0].uri.prefix == "/api" and rule.matches[0].headers["x-user"].exact == "jason"
    assert not clusters["frontend.ns.svc.cluster.local"].ratelimits
    assert not clusters["reviews.other.svc.cluster.local"].ratelimits
