"""docs/security.md's "Authorization" section as a reader uses it: every YAML document its commands apply
decodes without errors, and the refusal it shows is the one pilot gives."""

from __future__ import annotations

import re
from pathlib import Path

from services.pilot.validate import decode_documents

DOC = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
SECTION = DOC[DOC.index("## Authorization: AuthorizationPolicy"):DOC.index("## Every credential")]


def test_every_applied_document_decodes() -> None:
    documents = re.findall(r"apply -f - <<EOF\n(.*?)\nEOF\n", SECTION, re.S)
    assert len(documents) >= 4
    for text in documents:
        resources, errors, _ = decode_documents(text)
        assert resources and not errors, (text, [e.message for e in errors])


def test_the_refusal_shown_is_pilots() -> None:
    [shown] = re.findall(r"error: document 1 \(AuthorizationPolicy foo/ext-authz\): (spec\.action): (.*)", SECTION)
    _, errors, _ = decode_documents("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules:
  - {}
""")
    assert (shown[0], shown[1]) in [(e.path, e.message) for e in errors]
