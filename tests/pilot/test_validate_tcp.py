"""VirtualService `tcp` routes are not implemented yet: apply rejects them with their path."""

from __future__ import annotations

import textwrap

from services.pilot.validate import decode_documents


def test_tcp_routes_are_rejected_naming_spec_tcp():
    _, problems, _ = decode_documents(textwrap.dedent("""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: db, namespace: default}
        spec:
          hosts: [db]
          tcp:
          - match: [{port: 5432}]
            route: [{destination: {host: db}}]
        """))
    assert [(p.path, p.message) for p in problems] == [
        ("spec.tcp", "field `tcp` is not supported by Isthmus yet (or is misspelled)")]
