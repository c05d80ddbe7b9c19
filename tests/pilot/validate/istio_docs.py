"""Istio's own YAML for PeerAuthentication and DestinationRule tls, as its docs give it: each must apply to
Isthmus unchanged. name -> (the namespace `kubectl apply -n` gives it, or default; the YAML, verbatim).

Sources: the PeerAuthentication reference (istio/api security/v1beta1/peer_authentication.proto), the
"Mutual TLS Migration" and "Authentication Policy" tasks (istio.io content/en/docs/tasks/security/
authentication/mtls-migration and authn-policy), the ClientTLSSettings reference (istio/api
networking/v1alpha3/destination_rule.proto) and Bookinfo's samples/bookinfo/networking/
destination-rule-all-mtls.yaml. Left out: the `tls-foo` example, whose host `*.foo.com` is a wildcard
(Isthmus refuses wildcard hosts for every kind), and the `credentialName` example (not supported yet).
"""

from __future__ import annotations

PEER_AUTHENTICATION = {
    "reference: namespace foo STRICT": ("default", """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  mtls:
    mode: STRICT
"""),
    "reference: PERMISSIVE namespace, STRICT finance": ("default", """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  mtls:
    mode: PERMISSIVE
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: finance
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: STRICT
"""),
    "reference: STRICT finance, port 8080 plaintext": ("default", """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: STRICT
  portLevelMtls:
    8080:
      mode: DISABLE
"""),
    "reference: UNSET finance, port 8080 plaintext": ("default", """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: UNSET
  portLevelMtls:
    8080:
      mode: DISABLE
"""),
    "migration: lock down namespace foo": ("foo", """\
apiVersion: "security.istio.io/v1beta1"
kind: "PeerAuthentication"
metadata:
  name: "default"
spec:
  mtls:
    mode: STRICT
"""),
    "migration: lock down the mesh": ("istio-system", """\
apiVersion: "security.istio.io/v1beta1"
kind: "PeerAuthentication"
metadata:
  name: "default"
spec:
  mtls:
    mode: STRICT
"""),
    "authn-policy: globally STRICT": ("default", """\
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: "default"
  namespace: "istio-system"
spec:
  mtls:
    mode: STRICT
"""),
    "authn-policy: httpbin in bar STRICT, port 80 plaintext": ("bar", """\
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: "httpbin"
  namespace: "bar"
spec:
  selector:
    matchLabels:
      app: httpbin
  mtls:
    mode: STRICT
  portLevelMtls:
    80:
      mode: DISABLE
"""),
    "authn-policy: overwrite-example DISABLE": ("foo", """\
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: "overwrite-example"
  namespace: "foo"
spec:
  selector:
    matchLabels:
      app: httpbin
  mtls:
    mode: DISABLE
"""),
}

DESTINATION_RULE_TLS = {
    "reference: db-mtls": ("default", """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: db-mtls
spec:
  host: mydbserver.prod.svc.cluster.local
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/myclientcert.pem
      privateKey: /etc/certs/client_private_key.pem
      caCertificates: /etc/certs/rootcacerts.pem
"""),
    "reference: ratings-istio-mtls": ("default", """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings-istio-mtls
spec:
  host: ratings.prod.svc.cluster.local
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
"""),
    "bookinfo: destination-rule-all-mtls": ("default", """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productpage
spec:
  host: productpage
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: v1
    labels:
      version: v1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v2-mysql
    labels:
      version: v2-mysql
  - name: v2-mysql-vm
    labels:
      version: v2-mysql-vm
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: details
spec:
  host: details
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
"""),
}
