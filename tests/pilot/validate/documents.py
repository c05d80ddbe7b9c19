"""Helpers of the validation tests: decode a dedented submission, find a problem by its path."""

from __future__ import annotations

import textwrap

from services.pilot.validate import decode_documents


def decode(text: str, **kwargs):
    return decode_documents(textwrap.dedent(text), **kwargs)


def paths(problems) -> list[str]:
    return [p.path for p in problems]


def by_path(problems, path: str):
    found = [p for p in problems if p.path == path]
    assert found, f"no problem at {path}; got {[(p.path, p.message) for p in problems]}"
    return found[0]


GOOD_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v3}
      weight: 20
"""
