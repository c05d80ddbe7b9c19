"""AuthorizationPolicy on the inbound side, as Envoy's RBAC filters enforce what istiod generates for them.

    strings.py     Istio's value syntax (exact, `abc*` prefix, `*abc` suffix, `*` presence) as one predicate
    paths.py       the request path as policies read it (normalized) and `paths` / path-template matching
    addresses.py   ipBlocks / source.ip / destination.ip: CIDR ranges against an address
    leaves.py      one predicate per Source / Operation field and `when` key (Istio's generators)
    rules.py       a Rule into Envoy's policy shape (OR of permissions AND OR of principals), per action and
                   per protocol (HTTP-only fields on TCP: istio pilot/pkg/security/authz/model)
    engine.py      a workload's policies compiled once per push: AUDIT, DENY, ALLOW for HTTP and TCP
"""
