"""services/pilot/validate/client_tls.py: DestinationRule trafficPolicy.tls at top, subset and port level."""

from __future__ import annotations

import pytest

from services.pilot.validate import decode_documents
from tests.pilot.validate.documents import by_path, decode, paths
from tests.pilot.validate.istio_docs import DESTINATION_RULE_TLS


@pytest.mark.parametrize("name", DESTINATION_RULE_TLS)
def test_istios_own_destination_rule_tls_yaml_applies_unchanged(name):
    namespace, text = DESTINATION_RULE_TLS[name]
    resources, errors, warnings = decode_documents(text, default_namespace=namespace)
    assert errors == [] and warnings == [], name
    assert resources and all(r.spec.traffic_policy.tls is not None for r in resources)


def _dr(tls: str, where: str = "top") -> str:
    policy = {"top": f"trafficPolicy: {{tls: {tls}}}",
              "port": f"trafficPolicy: {{portLevelSettings: [{{port: {{number: 443}}, tls: {tls}}}]}}",
              "subset": f"subsets: [{{name: v1, labels: {{version: v1}}, trafficPolicy: {{tls: {tls}}}}}]",
              "subset port": "subsets: [{name: v1, labels: {version: v1}, trafficPolicy: "
                             f"{{portLevelSettings: [{{port: {{number: 443}}, tls: {tls}}}]}}}}]"}[where]
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: db, namespace: prod}}
    spec:
      host: db
      {policy}
    """


PREFIX = {"top": "spec.trafficPolicy.tls", "port": "spec.trafficPolicy.portLevelSettings[0].tls",
          "subset": "spec.subsets[0].trafficPolicy.tls",
          "subset port": "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls"}
FILES = "clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem"


@pytest.mark.parametrize("where", PREFIX)
@pytest.mark.parametrize("tls, field, message", [
    ("{mode: PERMISSIVE}", "mode", "unsupported TLS mode `PERMISSIVE`"),
    ("{mode: MUTUAL, privateKey: /k.pem, caCertificates: /ca.pem}", "clientCertificate",
     "client certificate required for mutual tls"),
    ("{mode: MUTUAL, clientCertificate: /c.pem}", "privateKey", "private key required for mutual tls"),
    ("{mode: MUTUAL, clientCertificate: '', privateKey: /k.pem}", "clientCertificate", "client certificate required"),
    ("{mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca.pem}", "insecureSkipVerify",
     "cannot specify caCertificates or subjectAltNames"),
    ("{mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [db.example.com]}", "insecureSkipVerify",
     "cannot specify caCertificates or subjectAltNames"),
    ("{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, insecureSkipVerify: true, caCertificates: /ca}",
     "insecureSkipVerify", "cannot specify caCertificates or subjectAltNames"),
    ("{mode: SIMPLE, credentialName: db-client}", "credentialName", "not supported yet: Isthmus has no secret store"),
    ("{mode: SIMPLE, caCertificates: /ca.pem, caCrl: /crl.pem}", "caCrl", "revocation lists are not checked"),
    ("{mode: SIMPLE, minProtocolVersion: TLSV1_3}", "minProtocolVersion", "not supported by Isthmus"),
    ("{mode: SIMPLE, insecureSkipVerify: yes-please}", "insecureSkipVerify", "expected a boolean"),
    ("{mode: SIMPLE, subjectAltNames: db.example.com}", "subjectAltNames", "expected a list"),
])
def test_invalid_tls_is_rejected_with_its_path_at_every_level(where, tls, field, message):
    resources, errors, _ = decode(_dr(tls, where))
    assert resources == []
    assert message in by_path(errors, f"{PREFIX[where]}.{field}").message


@pytest.mark.parametrize("where", PREFIX)
@pytest.mark.parametrize("tls", [
    "{mode: ISTIO_MUTUAL}",
    "{mode: ISTIO_MUTUAL, sni: db.prod, subjectAltNames: ['spiffe://cluster.local/ns/prod/sa/db']}",
    f"{{mode: MUTUAL, {FILES}, sni: db.example.com, subjectAltNames: [db.example.com]}}",
    "{mode: SIMPLE, caCertificates: /ca.pem}",
    "{mode: SIMPLE, insecureSkipVerify: true}",
    "{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, insecureSkipVerify: true}",
    "{mode: DISABLE}",
    "{}",  # an unset mode is DISABLE, as Istio's enum
])
def test_valid_tls_passes_without_warnings_at_every_level(where, tls):
    resources, errors, warnings = decode(_dr(tls, where))
    assert errors == [] and warnings == [] and len(resources) == 1


@pytest.mark.parametrize("tls, message", [
    ("{sni: db.example.com}", "mode is unset, which is DISABLE: plaintext, so sni is ignored"),
    (f"{{mode: DISABLE, {FILES}}}", "mode DISABLE: plaintext, so clientCertificate, privateKey, caCertificates are"),
    (f"{{mode: ISTIO_MUTUAL, {FILES}}}", "ignored with ISTIO_MUTUAL: the sidecar uses its workload certificate"),
    ("{mode: SIMPLE, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}",
     "ignored with SIMPLE"),
    ("{mode: SIMPLE}", "SIMPLE without caCertificates: the server's certificate is checked against the system"),
    ("{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}", "MUTUAL without caCertificates"),
])
def test_tls_fields_the_mode_ignores_are_accepted_with_a_warning(tls, message):
    resources, errors, warnings = decode(_dr(tls))
    assert errors == [] and len(resources) == 1
    assert message in by_path(warnings, "spec.trafficPolicy.tls").message


def test_insecure_skip_verify_with_istio_mutual_is_warned_about():
    _, errors, warnings = decode(_dr("{mode: ISTIO_MUTUAL, insecureSkipVerify: true}"))
    assert errors == [] and "identity is then not checked" in \
        by_path(warnings, "spec.trafficPolicy.tls.insecureSkipVerify").message


def test_a_port_level_setting_without_tls_under_a_level_with_tls_is_warned_about():
    text = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: db, namespace: prod}
    spec:
      host: db
      trafficPolicy:
        tls: {mode: ISTIO_MUTUAL}
        portLevelSettings:
        - port: {number: 80}
          loadBalancer: {simple: RANDOM}
      subsets:
      - name: v1
        trafficPolicy:
          portLevelSettings:
          - port: {number: 81}
            loadBalancer: {simple: RANDOM}
          - port: {number: 82}
            tls: {mode: DISABLE}
    """
    resources, errors, warnings = decode(text)
    assert errors == [] and len(resources) == 1
    assert paths(warnings) == ["spec.trafficPolicy.portLevelSettings[0]",
                               "spec.subsets[0].trafficPolicy.portLevelSettings[0]"]
    assert "does not apply to port 80" in warnings[0].message and "port 81" in warnings[1].message


def test_a_port_level_setting_with_only_tls_is_a_setting():
    resources, errors, _ = decode(_dr("{mode: ISTIO_MUTUAL}", "port"))
    assert errors == [] and resources[0].spec.traffic_policy.port_level_settings[0].tls.mode == "ISTIO_MUTUAL"


def test_a_traffic_policy_with_only_tls_is_a_traffic_policy():
    resources, errors, _ = decode(_dr("{mode: ISTIO_MUTUAL}", "subset"))
    assert errors == [] and resources[0].spec.subsets[0].traffic_policy.tls.mode == "ISTIO_MUTUAL"
