"""services/pilot/validate/destination_rule.py: subsets, load balancers and traffic policies."""

from __future__ import annotations

from tests.pilot.validate.documents import by_path, decode


def test_destination_rule_subsets_and_lb_are_checked():
    text = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      host: reviews
      trafficPolicy: {loadBalancer: {simple: RANDOM}}
      subsets:
      - name: v1
        labels: {version: v1}
        trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {httpHeaderName: x}}}
      - name: ""
      - name: v3
        trafficPolicy: {loadBalancer: {simple: FASTEST}}
    """
    _, errors, _ = decode(text)
    assert "only one of" in by_path(errors, "spec.subsets[0].trafficPolicy.loadBalancer").message
    assert "cannot be empty" in by_path(errors, "spec.subsets[1].name").message
    assert "unknown load balancer" in by_path(errors, "spec.subsets[2].trafficPolicy.loadBalancer.simple").message
